"""What a step test needs, built by the production code (so that its defaults and the train
state's fields cannot drift from what a run uses): an optimiser config, the optimiser, and the
initial ``TrainState``; the tiny run config the loop and job tests train."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np
import optax

from kd_jax import config as config_lib
from kd_jax import methods
from kd_jax.distill import host_inputs
from kd_jax.distill.state import TrainState
from kd_jax.training import build, sharding


def sgd(lr: float = 0.05, weight_decay: float = 0.0, **fields) -> ml_collections.ConfigDict:
  """``config.optimizer`` as a run's default, at a constant ``lr`` not scaled by batch size.
  No weight decay by default: a parameter that a step changes then had a non-zero gradient."""
  opt = config_lib.optimizer_config()
  opt.update(dict(lr=lr, lr_reference_batch=0, weight_decay=weight_decay, schedule="constant",
                  decay_epochs=()))
  opt.update(fields)
  return opt


def optimizer(opt: ml_collections.ConfigDict, objectives: Sequence[Any] = ()
              ) -> optax.GradientTransformation:
  """The main stage's optimiser of a run with these objectives (what an objective freezes
  is held fixed)."""
  return build.main_optimizer(ml_collections.ConfigDict({"optimizer": opt}), objectives, opt.lr)


def train_state(student, objectives, tx: optax.GradientTransformation, *,
                teachers: Mapping[str, tuple[Any, Any]] | None = None,
                input_shape: tuple[int, ...] = (8, 8, 1), index_size: int = 16,
                seed: int = 0, samplers: Mapping[str, Any] | None = None) -> TrainState:
  """A run's initial state: the student initialised from ``seed``, heads from the output
  shapes. teachers: ``{name: (module, variables)}``; samplers: ``samplers(...)``."""
  teachers = dict(teachers or {})
  repl = sharding.replicated(sharding.data_mesh())
  return build.create_train_state(student, {n: m for n, (m, _) in teachers.items()},
                                 {n: v for n, (_, v) in teachers.items()}, objectives, tx,
                                 input_shape, index_size, seed, repl, samplers)


def samplers(objectives, index_size: int, num_classes: int = 10) -> dict[str, Any]:
  """The objectives' host samplers (CRD's negatives) for a train split of ``index_size``
  examples where example ``i`` has label ``i % num_classes``."""
  labels = np.arange(index_size) % num_classes
  return host_inputs.build(objectives, methods.TrainSplit(index_size, True, lambda: labels))


def make_tiny_config(**overrides):
  """resnet8 on digits: 2 steps of 32 per epoch, 2 epochs: a run takes seconds."""
  cfg = config_lib.base_config()
  cfg.batch_size = 32
  cfg.eval_batch_size = 120
  cfg.num_epochs = 2
  cfg.data.num_train_examples = 64
  cfg.log_every_steps = 1
  cfg.optimizer.schedule = "constant"
  for key, value in overrides.items():
    target = cfg
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  return cfg


def count_primitive(jaxpr, primitive: str) -> int:
  """How many equations of ``jaxpr`` (and of the jaxprs nested in it) apply ``primitive``."""
  n = 0
  for eqn in jaxpr.eqns:
    n += eqn.primitive.name == primitive
    for sub in jax.core.jaxprs_in_params(eqn.params):
      n += count_primitive(sub, primitive)
  return n

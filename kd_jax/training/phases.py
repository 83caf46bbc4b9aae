"""The phases of a run: the objectives' initialisation phases (FT, AB, FSP, AMA), then the
main phase, trained one after the other by the one loop (``kd_jax.training.loop``).

An objective with ``init_epochs > 0`` first minimises its phase loss alone for that many
epochs (its method's ``phase`` says what the phase trains and at which learning rate); the
next phase starts from the parameters it produced. Every phase checkpoints into the run's
one checkpoint folder, with the phase and the step within it in the checkpoint's meta; a
checkpoint's number counts the steps of every phase so far (``RunPhase.offset + step``), so
the newest one says where the run stands and a resumed run skips the phases before it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import optax

from kd_jax import models
from kd_jax.distill.objectives import Objective
from kd_jax.distill.state import TrainState
from kd_jax.distill.step import make_phase_step
from kd_jax.methods import ALL_ADAPTERS, STUDENT_FEATURES
from kd_jax.training import optim
from kd_jax.training import seeds as seeds_lib

MAIN = "main"


@dataclasses.dataclass(frozen=True)
class RunPhase:
  """One phase of a run, as the loop trains it."""
  name: str  # MAIN, or "init_<objective>".
  num_steps: int
  offset: int  # The steps of the phases before it: checkpoint number = offset + step.
  step_fn: Callable  # Jitted: (state, batch, rng) -> (state, metrics).
  tx: optax.GradientTransformation
  rng: jax.Array  # The step's key (checkpointed with the state).
  stream: int  # Which order of the train data (0: the main phase's).
  checkpoint_every: int  # Steps; a phase also checkpoints at its end.
  log_every: int  # Steps; metrics are also logged at every epoch's end.
  fault: str  # Its point for ``faults.at``.
  objective: Objective | None = None  # Whose initialisation phase it is.
  lr: float = 0.0  # An initialisation phase's constant learning rate.

  @property
  def is_main(self) -> bool:
    return self.name == MAIN

  def enter(self, state: TrainState, sharding) -> TrainState:
    """The state this phase starts from, given the state the phase before it ended with:
    its step at 0 and its own optimiser's state (nothing else changes)."""
    init = jax.vmap(self.tx.init) if state.bad_step.ndim else self.tx.init  # (Seeds' axis.)
    return state.replace(step=jax.device_put(jax.numpy.zeros((), jax.numpy.int32), sharding),
                         opt_state=jax.jit(init, out_shardings=sharding)(state.params))


def _adapter_mask(params: Mapping[str, Any], value: Callable[[str, tuple[str, ...]], bool]):
  """A bool mask over ``params['adapters']``: ``value(objective, path of the sub-module)``."""
  return {obj: {k: jax.tree.map(lambda _, obj=obj, k=k: value(obj, (k,)), sub)
                for k, sub in tree.items()}
          for obj, tree in params["adapters"].items()}


def main_phase_trainable(objectives: Sequence[Objective], params: Mapping[str, Any]):
  """What the main phase optimises: the student and every adapter, except FT's paraphraser
  (frozen after its phase) and the adapters of objectives that act only in their phase."""
  by_name = {o.name: o for o in objectives}

  def trainable(obj_name, path):
    obj = by_name[obj_name]
    frozen = obj.method.frozen
    return obj.main_phase and ALL_ADAPTERS not in frozen and path[0] not in frozen

  return {"student": jax.tree.map(lambda _: True, params["student"]),
          "adapters": _adapter_mask(params, trainable)}


def phase_trainable(objective: Objective, params: Mapping[str, Any]):
  """What ``objective``'s phase optimises (``Phase.trains``): adapter sub-modules by name
  (every adapter parameter for ``ALL_ADAPTERS``) and/or every student parameter but the
  classifier (``STUDENT_FEATURES``)."""
  trains = objective.method.phase.trains
  student = {k: jax.tree.map(lambda _, k=k: STUDENT_FEATURES in trains
                             and not models.is_classifier(k), v)
             for k, v in params["student"].items()}

  def adapter(obj_name, path):
    if obj_name != objective.name:
      return False
    return ALL_ADAPTERS in trains or (path[0] in trains)

  return {"student": student, "adapters": _adapter_mask(params, adapter)}


def phase_learning_rate(objective: Objective, config) -> float:
  """The phase's learning rate for the global batch (linearly scaled like the main one)."""
  lr = objective.init_lr if objective.init_lr is not None else \
      objective.method.phase_lr(config.model, config.optimizer.lr)
  opt = ml_collections.ConfigDict({"lr": lr, "lr_reference_batch":
                                   config.optimizer.lr_reference_batch})
  return optim.learning_rate(opt, config.batch_size)


def phase_optimizer(obj: Objective, opt_cfg, lr: float) -> optax.GradientTransformation:
  """An initialisation phase's optimiser, as the references train their phases: SGD at the
  constant ``lr`` with the main optimiser's momentum and weight decay (no Nesterov), only
  the phase's parameters trained."""
  sgd = ml_collections.ConfigDict(dict(name="sgd", momentum=opt_cfg.momentum, nesterov=False,
                                       weight_decay=opt_cfg.weight_decay))
  return optim.make_optimizer(sgd, lr, trainable=lambda p: phase_trainable(obj, p))


def initialisation_phases(objectives: Sequence[Objective], student, teachers, config,
                          steps_per_epoch: int, repl, batch_sharding,
                          augment=None, seeded: Callable | None = None) -> list[RunPhase]:
  """The objectives' initialisation phases, in the objectives' order, each checkpointed and
  logged at every epoch's end. ``augment``: the data's ``device_augment``. ``seeded``: a
  run of ``config.seeds``: ``seeded(step_fn, 2)`` is its step over them
  (``seeds.seeded_step``; shared batches: the data key of ``PRNGKey(config.seed + 2)``, as
  the phases' key below), whose batches are placed by the loop (``batch_sharding`` not read)."""
  out: list[RunPhase] = []
  offset = 0
  seeds = tuple(config.get("seeds", ()))
  rng = jax.device_put(seeds_lib.keys(seeds, 2) if seeds else
                       jax.random.PRNGKey(config.seed + 2), repl)
  for index, obj in enumerate(o for o in objectives if o.init_epochs > 0):
    lr = phase_learning_rate(obj, config)
    tx = phase_optimizer(obj, config.optimizer, lr)
    step_fn = make_phase_step(student, teachers, obj, tx, augment)
    step_fn = jax.jit(step_fn, in_shardings=(repl, batch_sharding, repl),
                      out_shardings=(repl, repl), donate_argnums=(0,)) if seeded is None else \
        jax.jit(seeded(step_fn, 2), out_shardings=(repl, repl), donate_argnums=(0,))
    steps = obj.init_epochs * steps_per_epoch
    out.append(RunPhase(name=f"init_{obj.name}", num_steps=steps, offset=offset, step_fn=step_fn,
                     tx=tx, rng=rng, stream=index + 1, checkpoint_every=steps_per_epoch,
                     log_every=steps_per_epoch, fault="phase", objective=obj, lr=lr))
    offset += steps
  return out

"""What a run is built from, once, before its loop: the data, the teachers (loaded from
their checkpoints), the student, the objectives, the main stage's optimiser and the initial
train state."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from kd_jax import checkpoint as ckpt_lib
from kd_jax import methods, models
from kd_jax.data import pipelines
from kd_jax.data.dataset import Dataset
from kd_jax.distill import host_inputs
from kd_jax.distill import objectives as objectives_lib
from kd_jax.distill import student as student_lib
from kd_jax.distill import teachers as teachers_lib
from kd_jax.distill.objectives import Objective
from kd_jax.distill.state import TrainState
from kd_jax.errors import KdJaxError
from kd_jax.training import optim, sharding, stages


@dataclasses.dataclass(frozen=True)
class Parts:
  """The parts of one run that its config names."""
  data: Dataset
  num_classes: int
  heads: dict[str, int]  # {teacher: its number of classes}, one student head each.
  student: nn.Module
  teachers: dict[str, tuple[nn.Module, Any]]  # {name: (module, frozen variables)}
  teacher_metas: dict[str, Any]  # {name: where its variables came from}
  objectives: list[Objective]
  samplers: dict[str, methods.HostSampler]  # {objective: what it draws on the host per batch}

  @property
  def teacher_modules(self) -> dict[str, nn.Module]:
    return {n: m for n, (m, _) in self.teachers.items()}

  @property
  def teacher_variables(self) -> dict[str, Any]:
    return {n: v for n, (_, v) in self.teachers.items()}


def parts(config: ml_collections.ConfigDict, job_workdir: str | None) -> Parts:
  """Builds the data set, loads the teachers, creates the student and parses the objectives
  (refusing, in one line, what does not fit together)."""
  sharding.check_batch_size(config.batch_size)
  eval_batch = config.eval_batch_size if config.eval_batch_size > 0 else config.batch_size
  sharding.check_batch_size(eval_batch, "config.eval_batch_size")
  data = pipelines.create_dataset(config.data, config.batch_size, eval_batch)
  if 0 < config.num_classes < (data.num_classes or 0) and data.has_labels:
    raise KdJaxError(f"config.num_classes is {config.num_classes} but {data.name!r} has "
                     f"{data.num_classes} classes (labels 0..{data.num_classes - 1}); set -1 to "
                     f"take the data set's")
  num_classes = config.num_classes if config.num_classes > 0 else data.num_classes
  if not num_classes:
    raise KdJaxError("config.num_classes must be set: the data set has no labels")
  teacher_metas: dict[str, Any] = {}
  teachers = teachers_lib.load(config, data.input_shape, job_workdir, teacher_metas)
  heads = {t: int(teachers[t][0].num_classes) for t in config.student_heads}
  student = student_lib.create(config.model, num_classes, heads, dtype=jnp.dtype(config.dtype))
  methods.import_modules(config.method_modules)
  objectives = objectives_lib.parse(config.objectives, list(teachers), data.has_labels,
                                    all_labeled=data.labeled_fraction >= 1.0)
  if not data.has_labels and data.num_classes is None:
    raise KdJaxError("config.data: evaluation needs a labelled eval split")
  samplers = host_inputs.build(
      objectives, methods.TrainSplit(data.index_size, data.has_labels, data.train_labels))
  return Parts(data, int(num_classes), heads, student, teachers, teacher_metas, objectives,
               samplers)


def init_from(state: TrainState, config, heads, job_workdir, repl,
              log: Callable[[str], None]) -> TrainState:
  """The state with the student's weights (all but its classifier; heads stay new) taken
  from the run in ``config.init_from``."""
  path = config.init_from
  if not os.path.isabs(path) and job_workdir and not os.path.exists(path):
    path = os.path.join(job_workdir, path)
  pretrained, meta = student_lib.load_backbone_variables(path, "latest")
  if meta.get("model") not in (None, config.model):
    raise KdJaxError(f"config.init_from: {path} holds a {meta['model']!r}, this run trains a "
                     f"{config.model!r}")
  variables = {"params": state.params["student"], "batch_stats": state.batch_stats}
  own = student_lib.backbone_variables(variables, heads)
  merged = ckpt_lib.merge_pretrained(jax.device_get(own), pretrained, path)
  if heads:
    merged = {k: {**variables[k], student_lib.BACKBONE: v} for k, v in merged.items()}
  merged = jax.device_put(merged, repl)
  log(f"initialised from {path} (every layer but the classifier)")
  return state.replace(params={**state.params, "student": merged["params"]},
                       batch_stats=merged.get("batch_stats", state.batch_stats))


def main_optimizer(config, objectives, schedule):
  """The main stage's optimiser: ``config.optimizer``, with the parameters that an
  objective freezes (or trains only in its initialisation stage) held fixed."""
  frozen = any(o.method.frozen or not o.main_stage for o in objectives)
  return optim.make_optimizer(
      config.optimizer, schedule,
      trainable=(lambda p: stages.main_stage_trainable(objectives, p)) if frozen else None)


def create_train_state(student, teachers: dict, teacher_variables: dict, objectives, tx,
                       input_shape, index_size: int, seed: int, sharding,
                       samplers: dict | None = None) -> TrainState:
  """The initial ``TrainState`` (placed with ``sharding``): the student's variables, the
  objectives' heads and state built from the output shapes of the student and each teacher
  (no teacher forward is run), checked against one example batch (with what ``samplers``,
  ``Parts.samplers``, add to a batch)."""
  x_shape = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
  s_shapes = jax.eval_shape(
      lambda x: student.apply(student.init(jax.random.PRNGKey(0), x, train=False), x,
                              train=False), x_shape)
  t_shapes = teachers_lib.output_shapes(teachers, teacher_variables, x_shape)
  objectives_lib.check_teacher_heads(objectives, t_shapes, teachers)

  def init_state(rng):
    k_student, k_aux = jax.random.split(rng)
    x = jnp.zeros(x_shape.shape)
    variables = student.init(k_student, x, train=False)
    # Zeros of the outputs' shapes stand in for outputs.
    zeros = lambda tree: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), tree)
    s_out = objectives_lib.Outputs(*zeros(s_shapes))
    t_out = {n: objectives_lib.Outputs(*zeros(tuple(o))) for n, o in t_shapes.items()}
    aux_params, aux_state = objectives_lib.init_aux(objectives, s_out, t_out, k_aux, index_size)
    example = {"image": x, "label": jnp.zeros((2,), jnp.int32), "index": jnp.arange(2),
               **{k: jnp.zeros(v.shape, v.dtype)
                  for k, v in host_inputs.specs(samplers or {}, 2).items()}}
    objectives_lib.check_shapes(objectives, s_out, t_out, aux_params, aux_state, example,
                                teacher_variables, teachers)
    params = {"student": variables["params"], "aux": aux_params}
    return TrainState(step=jnp.array(0, jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                      bad_step=jnp.array(-1, jnp.int32), teachers=dict(teacher_variables),
                      aux_state=aux_state)

  return jax.jit(init_state, out_shardings=sharding,
                 compiler_options=models.run_once_options())(jax.random.PRNGKey(seed))

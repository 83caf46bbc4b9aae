"""What a run is built from, once, before its loop: the data, the teachers (loaded from
their checkpoints), the student, the objectives, the main phase's optimiser and the initial
train state."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from kd_jax import checkpoint as ckpt_lib
from kd_jax import methods, models
from kd_jax.data import pipelines
from kd_jax.data.dataset import Dataset
from kd_jax.distill import adapters
from kd_jax.distill import host_inputs
from kd_jax.distill import objectives as objectives_lib
from kd_jax.distill import student as student_lib
from kd_jax.distill import teachers as teachers_lib
from kd_jax.distill.objectives import Objective
from kd_jax.distill.state import TrainState
from kd_jax.errors import KdJaxError
from kd_jax.training import optim, phases
from kd_jax.training import seeds as seeds_lib


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
  output_shapes: Any = None  # The plan's (student Outputs, {teacher: Outputs}), batch of 2.

  @property
  def teacher_modules(self) -> dict[str, nn.Module]:
    return {n: m for n, (m, _) in self.teachers.items()}

  @property
  def teacher_variables(self) -> dict[str, Any]:
    return {n: v for n, (_, v) in self.teachers.items()}


def parts(plan) -> Parts:
  """The run's data set, its teachers (their variables loaded) and its student, as its plan
  (a ``kd_jax.plan.RunPlan``, where everything was checked) says."""
  config = plan.config
  eval_batch = config.eval_batch_size if config.eval_batch_size > 0 else config.batch_size
  data = pipelines.create_dataset(config.data, config.batch_size, eval_batch)
  teacher_metas: dict[str, Any] = {}
  # The plan's shapes were traced on the metadata's input shape: used where the data agrees.
  planned = tuple(data.input_shape) == tuple(plan.info.input_shape)
  teachers = teachers_lib.load(plan.teachers, data.input_shape, plan.dtype, teacher_metas,
                               plan.teacher_variable_shapes if planned else None)
  objectives = list(plan.objectives)
  samplers = plan.samplers(methods.TrainSplit(data.index_size, data.has_labels,
                                              data.train_labels))
  return Parts(data, plan.num_classes, dict(plan.heads), plan.student(), teachers,
               teacher_metas, objectives, samplers, plan.output_shapes if planned else None)


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
  """The main phase's optimiser: ``config.optimizer``, with the parameters that an
  objective freezes (or trains only in its initialisation phase) held fixed."""
  frozen = any(o.method.frozen or not o.main_phase for o in objectives)
  return optim.make_optimizer(
      config.optimizer, schedule,
      trainable=(lambda p: phases.main_phase_trainable(objectives, p)) if frozen else None)


def create_train_state(student, teachers: dict, teacher_variables: dict, objectives, tx,
                       input_shape, index_size: int, seed: int, sharding,
                       samplers: dict | None = None, output_shapes=None,
                       seeds: Sequence[int] = ()) -> TrainState:
  """The initial ``TrainState`` (placed with ``sharding``): the student's variables, the
  objectives' adapters and state built from the output shapes of the student and each teacher
  (no teacher forward is run), checked against one example batch (with what ``samplers``,
  ``Parts.samplers``, add to a batch). ``output_shapes``: ``(student Outputs, {teacher:
  Outputs})`` for a batch of 2, as the plan traced them (``RunPlan.output_shapes``), else
  traced here. ``seeds``: the state of those seeds side by side (``training/seeds.py``),
  seed ``k``'s arrays those of ``seed=k``; ``seed`` is then not read."""
  x_shape = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
  if output_shapes is None:
    s_shapes = objectives_lib.Outputs(*jax.eval_shape(
        lambda x: student.apply(student.init(jax.random.PRNGKey(0), x, train=False), x,
                                train=False), x_shape))
    t_shapes = teachers_lib.output_shapes(teachers, teacher_variables, x_shape)
  else:
    s_shapes, t_shapes = output_shapes[0], {n: output_shapes[1][n] for n in teachers}
  adapters.check_teacher_heads(objectives, t_shapes, teachers)

  def init_state(rng):
    k_student, k_adapters = jax.random.split(rng)
    x = jnp.zeros(x_shape.shape)
    variables = student.init(k_student, x, train=False)
    example = {"image": x, "label": jnp.zeros((2,), jnp.int32), "index": jnp.arange(2),
               **{k: jnp.zeros(v.shape, v.dtype)
                  for k, v in host_inputs.specs(samplers or {}, 2).items()}}
    adapter_params, objective_state = adapters.init(
        objectives, s_shapes, t_shapes, k_adapters, index_size,
        teacher_variables, teachers, example)
    params = {"student": variables["params"], "adapters": adapter_params}
    return TrainState(step=jnp.array(0, jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                      bad_step=jnp.array(-1, jnp.int32), teachers=None,
                      objective_state=objective_state)

  def init(rng):
    state = jax.vmap(init_state, out_axes=seeds_lib.state_axes())(rng) if seeds else \
        init_state(rng)
    return state.replace(teachers=dict(teacher_variables))

  rng = seeds_lib.keys(seeds) if seeds else jax.random.PRNGKey(seed)
  return jax.jit(init, out_shardings=sharding, compiler_options=models.run_once_options())(rng)

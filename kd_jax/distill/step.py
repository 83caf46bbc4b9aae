"""The one train step and the eval step, shared by every method.

``train_step(state, batch, rng, *, ...) -> (state, metrics)`` is a pure module-level
function (``step_inputs`` then ``step_update``); ``make_train_step`` binds its keyword
arguments (a ``Step``: ``functools.partial`` of each half, as the flax examples bind theirs)
and the loop jits the result once: each teacher runs once in inference
mode under ``stop_gradient``; the student runs once in training mode; every objective reads
those outputs; gradients reach the student (and the objectives' adapters) only.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping, NamedTuple, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

from kd_jax.data import device_augment
from kd_jax.distill import objectives as objectives_lib
from kd_jax.distill import teachers as teachers_lib
from kd_jax.distill.features import head_feature
from kd_jax.distill.objectives import Objective, Outputs
from kd_jax.distill.state import TrainState


def metric_name(objective: str) -> str:
  return f"loss_{objective}"


@flax.struct.dataclass
class Count(clu_metrics.Metric):
  """The number of steps whose ``skipped`` output is 1, summed over the merged steps."""
  total: jax.Array

  @classmethod
  def from_model_output(cls, skipped: jax.Array, **_) -> "Count":
    return cls(total=jnp.sum(skipped).astype(jnp.int32))

  def merge(self, other: "Count") -> "Count":
    return type(self)(total=self.total + other.total)

  def compute(self) -> jax.Array:
    return self.total


def _finite_steps_of(name: str):
  """A loss output averaged over the steps that were applied (``skipped == 0``)."""
  def fn(skipped, **outputs):
    return {"values": jnp.reshape(outputs[name], (1,)), "mask": jnp.reshape(skipped == 0, (1,))}
  return fn


def train_metrics_class(objectives: Sequence[Objective], has_labels: bool,
                        skip_nonfinite: bool = False):
  """A clu Collection: the weighted total ``loss``, ``loss_<objective>`` each, ``accuracy``;
  with ``skip_nonfinite``, losses averaged over the applied steps and ``skipped_steps``."""
  names = ["loss"] + [metric_name(obj.name) for obj in objectives]
  if skip_nonfinite:
    fields = {n: clu_metrics.Average.from_fun(_finite_steps_of(n)) for n in names}
    fields["skipped_steps"] = Count
  else:
    fields = {n: clu_metrics.Average.from_output(n) for n in names}
  if has_labels:
    fields["accuracy"] = clu_metrics.Average.from_fun(_accuracy)
  return clu_metrics.Collection.create(**fields)


def _accuracy(logits, labels, label_mask=None, **_):
  """Per-example correctness; only over labelled examples when ``label_mask`` is given."""
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return {"values": correct, "mask": label_mask}


def _top5(logits, labels, **_):
  top = jax.lax.top_k(logits, 5)[1]
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def _task_accuracy(classes: Sequence[int]):
  """Accuracy on one task inside the label space: over the examples whose label is one of
  ``classes``, the argmax of the logits restricted to ``classes``."""
  ids = jnp.asarray(classes, jnp.int32)

  def fn(logits, labels, mask, **_):
    pred = ids[jnp.argmax(logits[:, ids], axis=-1)]
    in_task = jnp.any(labels[:, None] == ids[None, :], axis=-1)
    return {"values": (pred == labels).astype(jnp.float32),
            "mask": mask * in_task.astype(mask.dtype)}

  return fn


def eval_metrics_class(num_classes: int, tasks: Mapping[str, Sequence[int]] | None = None):
  """A clu Collection over masked examples: ``loss`` (CE), ``accuracy``, ``top5`` (C > 5),
  and ``accuracy_<task>`` for each of ``tasks`` (see ``_task_accuracy``)."""
  fields = {"loss": clu_metrics.Average.from_output("loss"), "accuracy": clu_metrics.Accuracy}
  if num_classes > 5:
    fields["top5"] = clu_metrics.Average.from_fun(_top5)
  for name, classes in (tasks or {}).items():
    fields[f"accuracy_{name}"] = clu_metrics.Average.from_fun(_task_accuracy(classes))
  return clu_metrics.Collection.create(**fields)


def _update_if_finite(state: TrainState, tx: optax.GradientTransformation, loss: jax.Array,
                      grads, skip_nonfinite: bool = False, **new_fields
                      ) -> tuple[TrainState, jax.Array]:
  """``(state, finite)``: the state after one optimiser update (and ``new_fields``), or, if
  the loss or the gradients are not finite (or an earlier step's were), the unchanged state
  with ``bad_step`` recording the first bad step. ``skip_nonfinite``: a non-finite step is
  skipped (state unchanged) and ``bad_step`` stays -1. Either way ``step`` advances."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(grads))
  if skip_nonfinite:
    ok = finite
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
    updated = {"params": params, "opt_state": opt_state, **new_fields}
    return state.replace(step=state.step + 1,
                         **{k: keep(v, getattr(state, k)) for k, v in updated.items()}), finite
  ok = finite & (state.bad_step < 0)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
  updated = {"params": params, "opt_state": opt_state, **new_fields}
  return state.replace(
      step=state.step + 1,
      **{k: keep(v, getattr(state, k)) for k, v in updated.items()},
      bad_step=jnp.where(~finite & (state.bad_step < 0), state.step, state.bad_step)), finite


def _per_seed(tree, key: jax.Array):
  """``tree`` unchanged in value but varying with ``key``'s seed under ``vmap``: each seed's
  student and adapters then compute on their own copy, as a run of that seed alone does (a
  layer whose weights vary by seed on an input that does not is one wider matmul under
  ``vmap``, which rounds differently). Adds an exact zero made from the key."""
  zero = (key[0] & 0).astype(jnp.int32)
  return jax.tree.map(lambda a: a + zero.astype(a.dtype), tree)


class StepInputs(NamedTuple):
  """What a train step computes before the student runs (``step_inputs``): its key (folded
  with the step), the batch as every network reads it, the teachers' outputs on it, the
  other views and the teachers' outputs on each."""
  rng: jax.Array
  batch: dict
  teacher_out: dict
  views: dict
  view_teachers: dict


def step_inputs(state: TrainState, batch, rng, *, teachers: Mapping[str, nn.Module],
                objectives: Sequence[Objective],
                cached_teachers: Mapping[str, Outputs] | None = None, phase: bool = False,
                augment: device_augment.Spec | None = None) -> StepInputs:
  """The first half of ``train_step``: the batch's views and the teachers' outputs (no
  student parameter is read)."""
  shared_seeds = isinstance(rng, tuple)
  rng, data_rng = rng if shared_seeds else (rng, rng)
  rng, data_rng = jax.random.fold_in(rng, state.step), jax.random.fold_in(data_rng, state.step)
  loader_batch = batch
  if augment is not None:  # uint8 images from the host (data.augment_on = "device").
    batch = device_augment.apply(augment, batch, jax.random.fold_in(data_rng, 2**31 - 2))
  # One view for every network (function matching's mixup), drawn once.
  batch = objectives_lib.transform_batch(objectives, batch, jax.random.fold_in(rng, 2**31 - 1))
  # Other views (MLKD's strong augmentation), each made once from the loader's batch.
  views = {} if phase else objectives_lib.make_views(
      objectives, loader_batch, jax.random.fold_in(rng, 2**31 - 3), augment)
  teacher_out = teachers_lib.run(
      teachers, state.teachers, teachers_lib.used(objectives, main_phase_only=not phase), batch,
      cached_teachers or {})
  view_readers = [o for o in objectives if o.method.views or o.view]
  view_teachers = {v: teachers_lib.run(teachers, state.teachers, teachers_lib.used(view_readers),
                                       vb) for v, vb in views.items()}
  if shared_seeds:  # Computed once for the seeds; from here on each seed computes on its own.
    batch, teacher_out, views, view_teachers = _per_seed((batch, teacher_out, views,
                                                          view_teachers), rng)
  return StepInputs(rng, batch, teacher_out, views, view_teachers)


def step_update(state: TrainState, inputs: StepInputs, *, student: nn.Module,
                teachers: Mapping[str, nn.Module], objectives: Sequence[Objective],
                tx: optax.GradientTransformation, metrics_cls, has_labels: bool,
                steps_per_epoch: int = 1, skip_nonfinite: bool = False, phase: bool = False):
  """The second half of ``train_step``: the student on ``inputs``, the objectives, one
  optimiser update: ``(state, metrics)``."""
  rng, batch, teacher_out, views, view_teachers = inputs

  def loss_fn(params):
    variables = {"params": params["student"], "batch_stats": state.batch_stats}
    if phase:
      logits, feats = student.apply(variables, batch["image"], train=False)
      batch_stats = state.batch_stats
    else:
      (logits, feats), new_vars = student.apply(variables, batch["image"], train=True,
                                                mutable=["batch_stats"], rngs={"dropout": rng})
      batch_stats = new_vars["batch_stats"]
    out = Outputs(logits, feats)
    view_out = {}
    for k, (v, vb) in enumerate(views.items()):  # BatchNorm statistics: updated per view.
      (v_logits, v_feats), new_vars = student.apply(
          {"params": params["student"], "batch_stats": batch_stats}, vb["image"], train=True,
          mutable=["batch_stats"], rngs={"dropout": jax.random.fold_in(rng, 2**31 - 4 - k)})
      batch_stats = new_vars["batch_stats"]
      view_out[v] = (Outputs(v_logits, v_feats), view_teachers[v])
    epoch = (state.step // steps_per_epoch + 1).astype(jnp.float32)
    values, objective_state = {}, dict(state.objective_state)
    for i, o in enumerate(objectives):
      s_out, t_out, o_batch = (view_out[o.view] + (views[o.view],) if o.view
                               else (out, teacher_out, batch))
      values[o.name], new = o(s_out, t_out, o_batch, epoch=epoch,
                              rng=jax.random.fold_in(rng, i + 1),
                              adapter_params=params["adapters"].get(o.name),
                              state=state.objective_state.get(o.name), phase=phase,
                              teacher_variables=state.teachers, teacher_modules=teachers,
                              views=view_out)
      if new is not None:
        objective_state[o.name] = new
    total = sum((1.0 if phase else o.weight) * values[o.name] for o in objectives)
    return total, (values, logits, batch_stats, objective_state)

  (total, (values, logits, batch_stats, objective_state)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  new_state, finite = _update_if_finite(state, tx, total, grads, skip_nonfinite,
                                        batch_stats=batch_stats, objective_state=objective_state)
  outputs = {"loss": total, **{metric_name(k): v for k, v in values.items()}}
  if skip_nonfinite:
    outputs["skipped"] = (~finite).astype(jnp.int32)
  if has_labels:
    outputs.update(logits=logits, labels=batch["label"], label_mask=batch.get("label_mask"))
  return new_state, metrics_cls.single_from_model_output(**outputs)


def train_step(state: TrainState, batch, rng, *, student: nn.Module,
               teachers: Mapping[str, nn.Module], objectives: Sequence[Objective],
               tx: optax.GradientTransformation, metrics_cls, has_labels: bool,
               steps_per_epoch: int = 1, cached_teachers: Mapping[str, Outputs] | None = None,
               skip_nonfinite: bool = False, phase: bool = False,
               augment: device_augment.Spec | None = None):
  """One optimiser step on ``batch``: ``(state, metrics)``. Pure; ``make_train_step`` binds
  everything after ``rng``.

  The batch is first changed by the objective that changes it, if one does (function
  matching's mixup: ``Method.transform_batch``), so every network reads that one view.
  Other views that objectives' methods make (``Method.views``, from the loader's batch) are
  read by the teachers (once each per view) and by the student in training mode after the
  batch (its BatchNorm statistics updated by each in turn); an objective reads them in
  ``ctx.views``, or as its batch with ``view=<name>``.
  Each teacher the objectives read runs once in inference mode under ``stop_gradient`` (or
  is read from the batch: ``cached_teachers``); the student runs once in training mode;
  every objective reads those outputs; ``sum(weight * loss)`` is minimised over the student
  and the objectives' adapters. ``epoch`` (from 1) reaches DKD's warm-up.

  ``phase``: a step of the one objective's initialisation phase instead: its phase loss
  alone (unweighted) is minimised and, as in the references, the student runs in inference
  mode (BatchNorm running statistics, neither used from the batch nor updated); ``tx``
  decides which parameters move.

  ``augment``: the batch's images are uint8, cropped, flipped and normalised here first
  (``kd_jax.data.device_augment``), with a key of their own drawn from the step's.

  ``rng``: the step's key, or ``(key, data key)`` in a step of seeds side by side whose
  batch is shared (``training/seeds.py``): the device augmentation's key is drawn from the
  data key, and what was computed once for all seeds (the batch, the teachers' outputs) is
  given each seed its own copy before the student and the objectives read it (``_per_seed``)."""
  inputs = step_inputs(state, batch, rng, teachers=teachers, objectives=objectives,
                       cached_teachers=cached_teachers, phase=phase, augment=augment)
  return step_update(state, inputs, student=student, teachers=teachers, objectives=objectives,
                     tx=tx, metrics_cls=metrics_cls, has_labels=has_labels,
                     steps_per_epoch=steps_per_epoch, skip_nonfinite=skip_nonfinite,
                     phase=phase)


@dataclasses.dataclass(frozen=True)
class Step:
  """``train_step`` with everything after ``rng`` bound (``make_train_step``):
  ``(state, batch, rng) -> (state, metrics)``. ``inputs`` and ``update`` are its two halves
  (``step_inputs``, ``step_update``), which seeds side by side may run apart (``loop``)."""
  inputs: Callable  # (state, batch, rng) -> StepInputs
  update: Callable  # (state, StepInputs) -> (state, metrics)

  def __call__(self, state: TrainState, batch, rng):
    return self.update(state, self.inputs(state, batch, rng))


def make_train_step(student: nn.Module, teachers: Mapping[str, nn.Module],
                    objectives: Sequence[Objective], tx: optax.GradientTransformation,
                    has_labels: bool, steps_per_epoch: int = 1,
                    cached_teachers: Mapping[str, Outputs] | None = None,
                    skip_nonfinite: bool = False,
                    augment: device_augment.Spec | None = None) -> Callable:
  """``train_step`` with this student, teachers and objectives bound: ``(state, batch, rng)
  -> (state, metrics)``, to jit. ``augment``: the data's ``device_augment`` (uint8 images).

  Objectives that act only through their initialisation phase (``main_phase=False``) are
  not evaluated here. ``cached_teachers``: ``{teacher: its Outputs' shapes}`` for teachers
  whose outputs come in the batch (``teachers.cached_key``) instead of being computed.
  ``skip_nonfinite``: a step with a non-finite loss or gradient is skipped (no update) and
  counted (metric ``skipped_steps``) instead of stopping the run (``bad_step``)."""
  objectives = [o for o in objectives if o.main_phase]
  return Step(
      functools.partial(step_inputs, teachers=teachers, objectives=objectives,
                        cached_teachers=dict(cached_teachers or {}), augment=augment),
      functools.partial(step_update, student=student, teachers=teachers, objectives=objectives,
                        tx=tx, metrics_cls=train_metrics_class(objectives, has_labels,
                                                               skip_nonfinite),
                        has_labels=has_labels, steps_per_epoch=steps_per_epoch,
                        skip_nonfinite=skip_nonfinite))


def make_phase_step(student: nn.Module, teachers: Mapping[str, nn.Module], objective: Objective,
                    tx: optax.GradientTransformation,
                    augment: device_augment.Spec | None = None) -> Callable:
  """``train_step`` of ``objective``'s initialisation phase (``phase=True``): ``(state,
  batch, rng) -> (state, metrics)`` with metrics ``loss`` (its phase loss), to jit."""
  return Step(
      functools.partial(step_inputs, teachers=teachers, objectives=[objective], phase=True,
                        augment=augment),
      functools.partial(step_update, student=student, teachers=teachers,
                        objectives=[objective], tx=tx,
                        metrics_cls=train_metrics_class([objective], has_labels=False),
                        has_labels=False, phase=True))


def make_eval_step(student: nn.Module, num_classes: int, head: str | None = None,
                   tasks: Mapping[str, Sequence[int]] | None = None) -> Callable:
  """``eval_step(state, batch) -> metrics`` on masked (padded) batches; inference-mode BN.
  head: evaluate the student's head for this teacher instead of its classifier; tasks:
  ``{name: class ids}``, an accuracy per task (``eval_metrics_class``)."""
  metrics_cls = eval_metrics_class(num_classes, tasks)

  def eval_step(state: TrainState, batch):
    logits, features = student.apply(
        {"params": state.params["student"], "batch_stats": state.batch_stats},
        batch["image"], train=False)
    if head is not None:
      logits = features[head_feature(head)]
    logits = logits.astype(jnp.float32)
    labels = batch["label"]
    loss = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1)[:, 0]
    return metrics_cls.single_from_model_output(
        loss=loss, logits=logits, labels=labels, mask=batch["mask"])

  return eval_step

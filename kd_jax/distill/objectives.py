"""Objectives as data: a config entry -> the loss it computes and what it reads.

``config.objectives`` maps a name to ``dict(weight=..., loss=<name, default the key>,
teacher=<teacher name, for losses that read one>, **hyperparameters)``. The step
evaluates every objective on the one student forward pass and the one forward pass
of each teacher, and minimises ``sum(weight * loss)``.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Mapping, NamedTuple

import jax

from kd_jax import losses
from kd_jax.errors import KdJaxError


class Outputs(NamedTuple):
  """One network's outputs for a batch: logits [B, C] and named features."""
  logits: jax.Array
  features: Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """How a loss reads the outputs: ``fn(objective, student, teachers, batch) -> scalar``."""
  fn: Callable[..., jax.Array]
  hparams_of: Callable[..., Any]  # The loss function whose keyword arguments are the hparams.
  needs_labels: bool = False
  needs_teacher: bool = False


def _ce(obj, student, teachers, batch):
  del teachers
  return losses.cross_entropy(student.logits, batch["label"], **obj.hparams)


def _kd(obj, student, teachers, batch):
  del batch
  return losses.kd(student.logits, teachers[obj.teacher].logits, **obj.hparams)


LOSSES: dict[str, LossSpec] = {
    "ce": LossSpec(_ce, losses.cross_entropy, needs_labels=True),
    "kd": LossSpec(_kd, losses.kd, needs_teacher=True),
}
_NOT_HPARAMS = {"logits", "labels", "mask", "student_logits", "teacher_logits"}


@dataclasses.dataclass(frozen=True)
class Objective:
  name: str
  loss: str
  weight: float
  teacher: str | None
  hparams: Mapping[str, Any]

  @property
  def spec(self) -> LossSpec:
    return LOSSES[self.loss]

  def __call__(self, student: Outputs, teachers: Mapping[str, Outputs], batch) -> jax.Array:
    return self.spec.fn(self, student, teachers, batch)


def parse(objectives_cfg: Mapping[str, Mapping[str, Any]], teacher_names,
          has_labels: bool) -> list[Objective]:
  """Builds the objectives of a config, with one-line errors naming the field."""
  out = []
  for name, entry in objectives_cfg.items():
    entry = dict(entry)
    where = f"config.objectives.{name}"
    loss = entry.pop("loss", name)
    if loss not in LOSSES:
      raise KdJaxError(f"{where}: unknown loss {loss!r}; valid: {', '.join(sorted(LOSSES))}")
    spec = LOSSES[loss]
    weight = entry.pop("weight", 1.0)
    if not isinstance(weight, (int, float)) or weight < 0:
      raise KdJaxError(f"{where}.weight must be a number >= 0, got {weight!r}")
    teacher = entry.pop("teacher", None)
    if spec.needs_teacher:
      if teacher is None and len(teacher_names) == 1:
        teacher = next(iter(teacher_names))
      if teacher not in teacher_names:
        raise KdJaxError(f"{where}.teacher: {teacher!r} is not a configured teacher "
                         f"(config.teachers: {', '.join(teacher_names) or 'none'})")
    elif teacher is not None:
      raise KdJaxError(f"{where}.teacher: loss {loss!r} reads no teacher")
    if spec.needs_labels and not has_labels:
      raise KdJaxError(f"{where}: loss {loss!r} needs labels, but the training data is "
                       f"unlabelled (config.data.unlabeled); set its weight to 0 or remove it")
    allowed = set(inspect.signature(spec.hparams_of).parameters) - _NOT_HPARAMS
    unknown = set(entry) - allowed
    if unknown:
      raise KdJaxError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} for loss "
                       f"{loss!r}; valid: weight, loss{', teacher' if spec.needs_teacher else ''}"
                       f"{', ' if allowed else ''}{', '.join(sorted(allowed))}")
    if float(weight) > 0:
      out.append(Objective(name, loss, float(weight), teacher, dict(entry)))
  if not out:
    raise KdJaxError("config.objectives: no objective with a weight > 0")
  return out

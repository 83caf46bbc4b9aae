"""Objectives as data: a config entry -> the loss it computes and what it reads.

``config.objectives`` maps a name to ``dict(weight=..., loss=<name, default the key>,
teacher=<teacher name, for losses that read one>, student_feature=..., teacher_feature=...,
**hyperparameters)``. The step evaluates every objective on the one student forward pass
and the one forward pass of each teacher, and minimises ``sum(weight * loss)``.

Features are named as the models name them (``stem``, ``stage1``.., ``preact/stage1``..,
``pooled``; see the README's model table) or by a token that follows RepDistiller's
``feat`` list for any family: ``stages`` (``feat[1:-1]``: every ``stage<k>``),
``preact_stages``, ``last_stage`` (``feat[-2]``), ``stem_and_stages`` (``feat[:-1]``).
A list of names reads several maps. Each loss has RepDistiller's default.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax

from kd_jax import losses
from kd_jax.errors import KdJaxError


class Outputs(NamedTuple):
  """One network's outputs for a batch: logits [B, C] and named features."""
  logits: jax.Array
  features: Mapping[str, jax.Array]


_TOKENS = ("stages", "preact_stages", "last_stage", "stem_and_stages")


def _stage_names(features: Mapping[str, Any], prefix: str = "") -> list[str]:
  names = [k for k in features if re.fullmatch(prefix + r"stage\d+", k)]
  return sorted(names, key=lambda k: int(re.findall(r"\d+$", k)[0]))


def select_features(features: Mapping[str, jax.Array], spec: str | Sequence[str],
                    where: str) -> list[jax.Array]:
  """The maps ``spec`` names (a feature name, a token, or a list of names), in order."""
  if isinstance(spec, str):
    if spec == "stages":
      names = _stage_names(features)
    elif spec == "preact_stages":
      names = _stage_names(features, "preact/")
    elif spec == "last_stage":
      names = _stage_names(features)[-1:]
    elif spec == "stem_and_stages":
      names = ["stem"] + _stage_names(features)
    else:
      names = [spec]
  else:
    names = list(spec)
  missing = [n for n in names if n not in features]
  if missing or not names:
    raise KdJaxError(f"{where}: the model has no feature {', '.join(missing) or spec!r}; it has "
                     f"{', '.join(sorted(features))} (or a token: {', '.join(_TOKENS)})")
  return [features[n] for n in names]


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """How a loss reads the outputs.

  fn(objective, student_maps, teacher_maps, student, teacher, batch, epoch) -> scalar;
  ``*_maps`` are the selected feature maps (lists), ``student``/``teacher`` the Outputs.
  reads: the default feature selection (None: logits only).
  """
  fn: Callable[..., jax.Array]
  hparams_of: Callable[..., Any]  # The loss function whose keyword arguments are the hparams.
  needs_labels: bool = False
  needs_teacher: bool = False
  reads: str | None = None
  per_layer: bool = False  # Sums over layers: student and teacher lists are zipped.


def _ce(obj, s_maps, t_maps, student, teacher, batch, epoch):
  return losses.cross_entropy(student.logits, batch["label"], **obj.hparams)


def _kd(obj, s_maps, t_maps, student, teacher, batch, epoch):
  return losses.kd(student.logits, teacher.logits, **obj.hparams)


def _dkd(obj, s_maps, t_maps, student, teacher, batch, epoch):
  return losses.dkd(student.logits, teacher.logits, batch["label"], epoch=epoch, **obj.hparams)


def _on_maps(loss_fn):
  """A loss of (student map(s), teacher map(s)): single maps, or lists summed over layers."""
  def fn(obj, s_maps, t_maps, student, teacher, batch, epoch):
    pairs = list(zip(s_maps, t_maps))  # RepDistiller zips: the shorter list decides.
    return sum(loss_fn(s, t, **obj.hparams) for s, t in pairs)
  return fn


LOSSES: dict[str, LossSpec] = {
    "ce": LossSpec(_ce, losses.cross_entropy, needs_labels=True),
    "kd": LossSpec(_kd, losses.kd, needs_teacher=True),
    "dkd": LossSpec(_dkd, losses.dkd, needs_labels=True, needs_teacher=True),
    "at": LossSpec(_on_maps(losses.attention_transfer), losses.attention_transfer,
                   needs_teacher=True, reads="stages", per_layer=True),
    "nst": LossSpec(_on_maps(losses.neuron_selectivity_transfer),
                    losses.neuron_selectivity_transfer, needs_teacher=True, reads="stages",
                    per_layer=True),
    "sp": LossSpec(_on_maps(losses.similarity_preserving), losses.similarity_preserving,
                   needs_teacher=True, reads="last_stage"),
    "rkd": LossSpec(_on_maps(losses.rkd), losses.rkd, needs_teacher=True, reads="pooled"),
    "pkt": LossSpec(_on_maps(losses.pkt), losses.pkt, needs_teacher=True, reads="pooled"),
}
# Losses of kd_jax.losses whose auxiliary modules, memory or stages the step does not
# hold yet (the distillation issue): named here so that a config gets a clear message.
_NOT_YET = ("fitnet", "vid", "cc", "crd", "ab", "ft", "fsp", "mean_matching", "stat_matching",
            "adain", "teacher_head")
_NOT_HPARAMS = {"logits", "labels", "mask", "student_logits", "teacher_logits", "f_s", "f_t",
                "epoch"}
_FIELDS = ("weight", "loss", "teacher", "student_feature", "teacher_feature")


@dataclasses.dataclass(frozen=True)
class Objective:
  name: str
  loss: str
  weight: float
  teacher: str | None
  hparams: Mapping[str, Any]
  student_feature: str | tuple[str, ...] | None = None
  teacher_feature: str | tuple[str, ...] | None = None

  @property
  def spec(self) -> LossSpec:
    return LOSSES[self.loss]

  def __call__(self, student: Outputs, teachers: Mapping[str, Outputs], batch,
               epoch: jax.Array | None = None) -> jax.Array:
    """The loss on this batch; ``epoch`` is the current epoch counted from 1 (DKD's warm-up)."""
    teacher = teachers[self.teacher] if self.teacher is not None else None
    s_maps = t_maps = None
    if self.spec.reads is not None:
      where = f"config.objectives.{self.name}"
      s_maps = select_features(student.features, self.student_feature,
                               f"{where}.student_feature")
      t_maps = select_features(teacher.features, self.teacher_feature,
                               f"{where}.teacher_feature")
    return self.spec.fn(self, s_maps, t_maps, student, teacher, batch, epoch)


def parse(objectives_cfg: Mapping[str, Mapping[str, Any]], teacher_names,
          has_labels: bool) -> list[Objective]:
  """Builds the objectives of a config, with one-line errors naming the field."""
  out = []
  for name, entry in objectives_cfg.items():
    entry = dict(entry)
    where = f"config.objectives.{name}"
    loss = entry.pop("loss", name)
    if loss in _NOT_YET:
      raise KdJaxError(f"{where}: loss {loss!r} exists as kd_jax.losses but is not yet "
                       f"available as a config objective (its learnable modules, memory or "
                       f"stages are not in the train step yet); available: "
                       f"{', '.join(sorted(LOSSES))}")
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
    features = {}
    for side in ("student_feature", "teacher_feature"):
      value = entry.pop(side, None)
      if spec.reads is None and value is not None:
        raise KdJaxError(f"{where}.{side}: loss {loss!r} reads logits, not features")
      if isinstance(value, (list, tuple)):
        value = tuple(value)
      elif value is not None and not isinstance(value, str):
        raise KdJaxError(f"{where}.{side} must be a feature name, a token or a list of names, "
                         f"got {value!r}")
      features[side] = value if value is not None else spec.reads
    allowed = set(inspect.signature(spec.hparams_of).parameters) - _NOT_HPARAMS
    unknown = set(entry) - allowed
    if unknown:
      fields = [f for f in _FIELDS if spec.reads or not f.endswith("_feature")]
      if not spec.needs_teacher:
        fields.remove("teacher")
      raise KdJaxError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} for loss "
                       f"{loss!r}; valid: {', '.join(fields + sorted(allowed))}")
    if float(weight) > 0:
      out.append(Objective(name, loss, float(weight), teacher, dict(entry), **features))
  if not out:
    raise KdJaxError("config.objectives: no objective with a weight > 0")
  return out

"""Objectives as data: a config entry -> the method it configures and what it reads.

``config.objectives`` maps a name to ``dict(weight=..., loss=<method name, default the key>,
teacher=<teacher name, for methods that read one; a list of names for methods that read
several (kd, soft_ce over the concatenated logits; cfl)>, student_feature=...,
teacher_feature=..., init_epochs=..., init_lr=..., main_stage=..., **hyperparameters)``.
The method (``kd_jax/methods/``, any registered name) defines the hyperparameters, their
defaults and what the loss reads. The step evaluates every objective on the one student
forward pass and the one forward pass of each teacher, and minimises ``sum(weight * loss)``.

Features are named as the models name them (``stem``, ``stage1``.., ``preact/stage1``..,
``pooled``; see the README's model table) or by a token that follows RepDistiller's
``feat`` list for any family: ``stages`` (``feat[1:-1]``: every ``stage<k>``),
``preact_stages``, ``last_stage`` (``feat[-2]``), ``before_last_stage``,
``stem_and_stages`` (``feat[:-1]``), and ``logits``. A list of names reads several maps.

Head routing: a student with a head named after a teacher (``config.student_heads``)
exposes that head's logits as ``features['logits/<teacher>']``; a logit loss reading that
one teacher reads that head instead of the student's classifier, so each teacher's loss
reaches its own head (and the shared backbone) only.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from kd_jax import methods, models
from kd_jax.distill import host_inputs
from kd_jax.errors import KdJaxError
from kd_jax.methods import Context, Method, Outputs


def head_feature(teacher: str) -> str:
  """The student's feature holding the logits of its head for ``teacher``."""
  return f"logits/{teacher}"


_TOKENS = ("stages", "preact_stages", "last_stage", "before_last_stage", "stem_and_stages",
           "logits")


def _stage_names(features: Mapping[str, Any], prefix: str = "") -> list[str]:
  names = [k for k in features if re.fullmatch(prefix + r"stage\d+", k)]
  return sorted(names, key=lambda k: int(re.findall(r"\d+$", k)[0]))


def feature_names(features: Mapping[str, Any], spec: str | Sequence[str],
                  where: str) -> list[str]:
  """The names of the maps ``spec`` names (a feature name, a token, or a list of them)."""
  def expand(name):
    if name == "stages":
      return _stage_names(features)
    if name == "preact_stages":
      return _stage_names(features, "preact/")
    if name == "last_stage":
      return _stage_names(features)[-1:]
    if name == "before_last_stage":
      return _stage_names(features)[-2:-1]
    if name == "stem_and_stages":
      return ["stem"] + _stage_names(features)
    return [name]

  names = [n for part in ([spec] if isinstance(spec, str) else spec) for n in expand(part)]
  missing = [n for n in names if n not in features]
  if missing or not names:
    raise KdJaxError(f"{where}: the model has no feature {', '.join(missing) or spec!r}; it has "
                     f"{', '.join(sorted(features))} (or a token: {', '.join(_TOKENS)})")
  return names


def select_features(features: Mapping[str, jax.Array], spec: str | Sequence[str],
                    where: str) -> list[jax.Array]:
  """The maps ``spec`` names (a feature name, a token, or a list of them), in order."""
  return [features[n] for n in feature_names(features, spec, where)]


_FIELDS = ("weight", "loss", "teacher", "student_feature", "teacher_feature")
_STAGE_FIELDS = ("init_epochs", "init_lr", "main_stage")


@dataclasses.dataclass(frozen=True)
class Objective:
  """One configured objective: its method (the hyperparameters, defaults filled in), weight,
  teacher(s), feature selection and initialisation stage."""
  name: str
  method: Method
  weight: float
  teacher: str | tuple[str, ...] | None
  given: frozenset = frozenset()   # The hyperparameters the config set.
  student_feature: str | tuple[str, ...] | None = None
  teacher_feature: str | tuple[str, ...] | None = None
  init_epochs: int = 0             # Epochs of its initialisation stage (0: none).
  init_lr: float | None = None     # The stage's learning rate (None: the reference's).
  main_stage: bool = True          # False: it acts only through its stage (AB, FSP).

  @property
  def loss(self) -> str:
    """The method's registered name."""
    return self.method.name

  @property
  def reads(self):
    return self.method.reads

  @property
  def teachers(self) -> tuple[str, ...]:
    """The teachers it reads, in order."""
    if self.teacher is None:
      return ()
    return (self.teacher,) if isinstance(self.teacher, str) else tuple(self.teacher)

  def teacher_outputs(self, teachers: Mapping[str, Outputs]) -> Outputs | None:
    """Its teacher's outputs; for several teachers their logits concatenated in order and
    their features as ``<teacher>/<feature>``."""
    if self.teacher is None:
      return None
    if isinstance(self.teacher, str):
      return teachers[self.teacher]
    outs = [teachers[n] for n in self.teacher]
    return Outputs(jnp.concatenate([o.logits for o in outs], axis=-1),
                   {f"{n}/{k}": v for n, o in zip(self.teacher, outs)
                    for k, v in o.features.items()})

  def route(self, student: Outputs) -> Outputs:
    """The student's outputs as this objective sees them: a logit loss of one teacher for
    which the student has a head reads that head's logits."""
    if self.reads in (None, "logits") and isinstance(self.teacher, str):
      head = student.features.get(head_feature(self.teacher))
      if head is not None:
        return Outputs(head, student.features)
    return student

  def select(self, student: Outputs, teachers: Mapping[str, Outputs]):
    """The student's and the teachers' maps this objective reads (lists; with several
    teachers, each teacher's maps in turn), or (None, None)."""
    if self.reads is None:
      return None, None
    where = f"config.objectives.{self.name}"
    with_logits = lambda out: {**out.features, "logits": out.logits}
    t_maps = [m for n in self.teachers
              for m in select_features(with_logits(teachers[n]), self.teacher_feature,
                                       f"{where}.teacher_feature")]
    return (select_features(with_logits(student), self.student_feature,
                            f"{where}.student_feature"), t_maps)

  def __call__(self, student: Outputs, teachers: Mapping[str, Outputs], batch,
               epoch: jax.Array | None = None, rng: jax.Array | None = None,
               aux_params: Any = None, aux_state: Mapping[str, Any] | None = None,
               train: bool = True, stage: bool = False, teacher_params: Any = None,
               teacher_modules: Mapping[str, Any] | None = None
               ) -> tuple[jax.Array, Mapping[str, Any] | None]:
    """``(loss, new aux_state)`` on this batch. epoch: the current epoch counted from 1
    (DKD's warm-up); aux_params/aux_state: this objective's (``init_aux``); stage: the
    loss of its initialisation stage instead of the main one; teacher_params and
    teacher_modules: ``{teacher: variables / module}`` (the frozen teachers, for methods
    that read their variables or their head)."""
    teacher = self.teacher_outputs(teachers)
    student = self.route(student)
    s_maps, t_maps = self.select(student, teachers)
    new_state = dict(aux_state) if aux_state is not None else None
    adapter = self.method.adapter()
    if adapter is not None:
      variables = {"params": aux_params or {}}
      if aux_state and "batch_stats" in aux_state:
        variables["batch_stats"] = aux_state["batch_stats"]
      kwargs = {"phase": stage} if _takes_phase(adapter) else {}
      (s_maps, t_maps), updates = adapter.apply(variables, s_maps, t_maps, train,
                                                mutable=["batch_stats"], **kwargs)
      if "batch_stats" in updates:
        new_state["batch_stats"] = updates["batch_stats"]
    own_teachers = {n: teacher_params[n] for n in self.teachers} if teacher_params else None
    head = None
    if self.method.uses_teacher_head:
      if not (teacher_modules and own_teachers):
        raise KdJaxError(f"config.objectives.{self.name}: loss {self.loss!r} reads its "
                         f"teacher's head: the call needs teacher_params and teacher_modules")
      head = functools.partial(models.apply_head, teacher_modules[self.teacher],
                               own_teachers[self.teacher])
    ctx = Context(s_maps, t_maps, student, teacher, batch, epoch, rng, aux_state, own_teachers,
                  host_inputs.of(self.name, batch), head)
    out = self.method.phase_loss(ctx) if stage else self.method.loss(ctx)
    if isinstance(out, tuple):
      out, extra = out
      new_state = {**(new_state or {}), **extra}
    return out, new_state


def _takes_phase(adapter) -> bool:
  return "phase" in inspect.signature(type(adapter).__call__).parameters


def _parse_stage(method: type[Method], entry: dict, where: str) -> dict[str, Any]:
  """Pops the stage fields of an entry: the method's phase unless the config says otherwise."""
  phase = method.phase
  if phase is None:
    return {}
  epochs = entry.pop("init_epochs", phase.epochs)
  if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
    raise KdJaxError(f"{where}.init_epochs must be an integer >= 0, got {epochs!r}")
  lr = entry.pop("init_lr", None)
  if lr is not None and (not isinstance(lr, (int, float)) or lr <= 0):
    raise KdJaxError(f"{where}.init_lr must be a number > 0, got {lr!r}")
  main = entry.pop("main_stage", phase.in_main)
  if not isinstance(main, bool):
    raise KdJaxError(f"{where}.main_stage must be True or False, got {main!r}")
  if not main and not epochs:
    raise KdJaxError(f"{where}: main_stage=False and init_epochs=0 leave the loss nothing to do")
  if phase.frozen_after and main and not epochs:
    raise KdJaxError(f"{where}: init_epochs=0 would train against a randomly initialised, "
                     f"frozen {' and '.join(phase.trains)} (the initialisation stage trains "
                     f"it, {phase.epochs} epochs by default); set init_epochs >= 1")
  return dict(init_epochs=epochs, init_lr=lr, main_stage=main)


def _hparams(method: type[Method], entry: dict, where: str) -> Method:
  """The method with the entry's hyperparameters (each checked against its default's type)."""
  defaults = method.hparams()
  for name, value in entry.items():
    default = defaults[name]
    if isinstance(default, bool):
      ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
      ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
          isinstance(value, int) or not isinstance(default, int))
    elif isinstance(default, (tuple, list)):
      ok = isinstance(value, (tuple, list))
    else:
      ok = True
    if not ok:
      raise KdJaxError(f"{where}.{name} must be a {type(default).__name__} like its default "
                       f"{default!r}, got {value!r}")
  try:
    return method(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()})
  except (TypeError, ValueError) as err:
    raise KdJaxError(f"{where}: {err}") from None


def parse(objectives_cfg: Mapping[str, Mapping[str, Any]], teacher_names,
          has_labels: bool, all_labeled: bool = True) -> list[Objective]:
  """Builds the objectives of a config, with one-line errors naming the field."""
  out = []
  for name, entry in objectives_cfg.items():
    entry = dict(entry)
    where = f"config.objectives.{name}"
    loss = entry.pop("loss", name)
    if loss not in methods.REGISTRY:
      raise KdJaxError(f"{where}: unknown loss {loss!r}; valid: {', '.join(methods.names())} "
                       f"(a method of your own: config.method_modules)")
    method = methods.get(loss)
    weight = entry.pop("weight", 1.0)
    if not isinstance(weight, (int, float)) or weight < 0:
      raise KdJaxError(f"{where}.weight must be a number >= 0, got {weight!r}")
    teacher = entry.pop("teacher", None)
    if isinstance(teacher, (list, tuple)):
      teacher = tuple(teacher)
      if not method.multi_teacher:
        raise KdJaxError(f"{where}.teacher: loss {loss!r} reads one teacher, got {list(teacher)}")
      if not teacher or len(set(teacher)) != len(teacher):
        raise KdJaxError(f"{where}.teacher must list distinct teachers, got {list(teacher)}")
    if method.needs_teacher:
      if teacher is None and len(teacher_names) == 1:
        teacher = next(iter(teacher_names))
      for t in (teacher if isinstance(teacher, tuple) else (teacher,)):
        if t not in teacher_names:
          raise KdJaxError(f"{where}.teacher: {t!r} is not a configured teacher "
                           f"(config.teachers: {', '.join(teacher_names) or 'none'})")
    elif teacher is not None:
      raise KdJaxError(f"{where}.teacher: loss {loss!r} reads no teacher")
    if method.needs_labels and not has_labels:
      raise KdJaxError(f"{where}: loss {loss!r} needs labels, but the training data is "
                       f"unlabelled (config.data.unlabeled); set its weight to 0 or remove it")
    if method.needs_labels and not method.partial_labels and not all_labeled:
      raise KdJaxError(f"{where}: loss {loss!r} needs the label of every training example, "
                       f"but config.data.labeled_fraction < 1")
    features = {}
    for side in ("student_feature", "teacher_feature"):
      value = entry.pop(side, None)
      if method.reads is None and value is not None:
        raise KdJaxError(f"{where}.{side}: loss {loss!r} reads logits, not features")
      if isinstance(value, (list, tuple)):
        value = tuple(value)
      elif value is not None and not isinstance(value, str):
        raise KdJaxError(f"{where}.{side} must be a feature name, a token or a list of names, "
                         f"got {value!r}")
      default = method.teacher_reads if side == "teacher_feature" and method.teacher_reads \
          else method.reads
      features[side] = value if value is not None else default
    stage = _parse_stage(method, entry, where)
    allowed = list(method.hparams())
    unknown = set(entry) - set(allowed)
    if unknown:
      fields = [f for f in _FIELDS if method.reads or not f.endswith("_feature")]
      if not method.needs_teacher:
        fields.remove("teacher")
      if method.phase:
        fields += list(_STAGE_FIELDS)
      raise KdJaxError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} for loss "
                       f"{loss!r}; valid: {', '.join(fields + sorted(allowed))}")
    configured = _hparams(method, entry, where)
    if float(weight) > 0:
      out.append(Objective(name, configured, float(weight), teacher, frozenset(entry),
                           **features, **stage))
  if not out:
    raise KdJaxError("config.objectives: no objective with a weight > 0")
  if not any(o.main_stage for o in out):
    raise KdJaxError("config.objectives: no objective acts in the main stage (add ce or kd)")
  transforming = [o.name for o in out if methods.transforms_batch(o.method)]
  if len(transforming) > 1:
    raise KdJaxError(f"config.objectives: {' and '.join(transforming)} each change the images "
                     f"the networks read (transform_batch); a run can have one of them")
  return out


def transform_batch(objectives: Sequence[Objective], batch: Mapping[str, jax.Array],
                    rng: jax.Array) -> Mapping[str, jax.Array]:
  """The batch every network of the step reads: the loader's, changed by the one objective
  whose method changes it (``Method.transform_batch``), if any."""
  for obj in objectives:
    if methods.transforms_batch(obj.method):
      return obj.method.transform_batch(batch, rng)
  return batch

"""An objectives config -> ``Objective``s: each entry's method, weight, teacher(s), features,
initialisation phase and hyperparameters, checked with one-line errors naming the field
(``kd_jax.plan`` is the one caller in kd_jax: a job's objectives are parsed there, once).

``config.objectives`` maps a name to ``dict(weight=..., loss=<method name, default the key>,
teacher=<teacher name, for methods that read one; a list of names for methods that read
several (kd, soft_ce over the concatenated logits; cfl)>, student_feature=...,
teacher_feature=..., view=<a view another objective makes, e.g. MLKD's 'strong'; default the
batch>, init_epochs=..., init_lr=..., main_phase=..., **hyperparameters)``.
The method (``kd_jax/methods/``, any registered name) defines the hyperparameters, their
defaults and what the loss reads.
"""
from __future__ import annotations

from typing import Any, Mapping

from kd_jax import methods
from kd_jax.distill.objectives import Objective
from kd_jax.errors import KdJaxError
from kd_jax.methods import Method

_FIELDS = ("weight", "loss", "teacher", "student_feature", "teacher_feature", "view")
_PHASE_FIELDS = ("init_epochs", "init_lr", "main_phase")


def _parse_phase(method: type[Method], entry: dict, where: str) -> dict[str, Any]:
  """Pops the phase fields of an entry: the method's phase unless the config says otherwise."""
  phase = method.phase
  if phase is None:
    return {}
  epochs = entry.pop("init_epochs", phase.epochs)
  if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
    raise KdJaxError(f"{where}.init_epochs must be an integer >= 0, got {epochs!r}")
  lr = entry.pop("init_lr", None)
  if lr is not None and (not isinstance(lr, (int, float)) or not lr > 0):
    raise KdJaxError(f"{where}.init_lr must be a number > 0, got {lr!r}")
  if "main_stage" in entry:
    raise KdJaxError(f"{where}.main_stage is now called main_phase")
  main = entry.pop("main_phase", phase.in_main)
  if not isinstance(main, bool):
    raise KdJaxError(f"{where}.main_phase must be True or False, got {main!r}")
  if not main and not epochs:
    raise KdJaxError(f"{where}: main_phase=False and init_epochs=0 leave the loss nothing to do")
  if phase.frozen_after and main and not epochs:
    raise KdJaxError(f"{where}: init_epochs=0 would train against a randomly initialised, "
                     f"frozen {' and '.join(phase.trains)} (the initialisation phase trains "
                     f"it, {phase.epochs} epochs by default); set init_epochs >= 1")
  return dict(init_epochs=epochs, init_lr=lr, main_phase=main)


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
    configured = method(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()})
    methods.check_ranges(configured)  # Also where its own __post_init__ skips the base's.
  except (TypeError, ValueError) as err:
    raise KdJaxError(f"{where}: {err}") from None
  return configured


def parse_objectives(objectives_cfg: Mapping[str, Mapping[str, Any]], teacher_names,
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
    if not isinstance(weight, (int, float)) or not weight >= 0:  # NaN too.
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
    view = entry.pop("view", "")
    if not isinstance(view, str):
      raise KdJaxError(f"{where}.view must be the name of a view (a string), got {view!r}")
    phase = _parse_phase(method, entry, where)
    allowed = list(method.hparams())
    unknown = set(entry) - set(allowed)
    if unknown:
      fields = [f for f in _FIELDS if method.reads or not f.endswith("_feature")]
      if not method.needs_teacher:
        fields.remove("teacher")
      if method.phase:
        fields += list(_PHASE_FIELDS)
      raise KdJaxError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} for loss "
                       f"{loss!r}; valid: {', '.join(fields + sorted(allowed))}")
    configured = _hparams(method, entry, where)
    # On the instance: whether it reads labels may depend on its hyperparameters (CTKD's base).
    if configured.needs_labels and not has_labels:
      raise KdJaxError(f"{where}: loss {loss!r} needs labels, but the training data is "
                       f"unlabelled (config.data.unlabeled); set its weight to 0 or remove it")
    if configured.needs_labels and not configured.partial_labels and not all_labeled:
      raise KdJaxError(f"{where}: loss {loss!r} needs the label of every training example, "
                       f"but config.data.labeled_fraction < 1")
    if float(weight) > 0:
      out.append(Objective(name, configured, float(weight), teacher, frozenset(entry),
                           **features, **phase, view=view))
  if not out:
    raise KdJaxError("config.objectives: no objective with a weight > 0")
  if not any(o.main_phase for o in out):
    raise KdJaxError("config.objectives: no objective acts in the main phase (add ce or kd)")
  transforming = [o.name for o in out if methods.transforms_batch(o.method)]
  if len(transforming) > 1:
    raise KdJaxError(f"config.objectives: {' and '.join(transforming)} each change the images "
                     f"the networks read (transform_batch); a run can have one of them")
  return out

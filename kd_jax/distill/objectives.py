"""Objectives as data: a config entry -> the loss it computes and what it reads.

``config.objectives`` maps a name to ``dict(weight=..., loss=<name, default the key>,
teacher=<teacher name, for losses that read one; a list of names for losses that read
several (kd, soft_ce over the concatenated logits; cfl)>, student_feature=...,
teacher_feature=..., **hyperparameters)``. The step evaluates every objective on the one student forward pass
and the one forward pass of each teacher, and minimises ``sum(weight * loss)``.

Features are named as the models name them (``stem``, ``stage1``.., ``preact/stage1``..,
``pooled``; see the README's model table) or by a token that follows RepDistiller's
``feat`` list for any family: ``stages`` (``feat[1:-1]``: every ``stage<k>``),
``preact_stages``, ``last_stage`` (``feat[-2]``), ``stem_and_stages`` (``feat[:-1]``).
A list of names reads several maps. Each loss has RepDistiller's default.

Head routing: a student with a head named after a teacher (``config.student_heads``)
exposes that head's logits as ``features['logits/<teacher>']``; a logit loss reading that
one teacher reads that head instead of the student's classifier, so each teacher's loss
reaches its own head (and the shared backbone) only.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from kd_jax import losses
from kd_jax.distill import heads
from kd_jax.errors import KdJaxError


class Outputs(NamedTuple):
  """One network's outputs for a batch: logits [B, C] and named features."""
  logits: jax.Array
  features: Mapping[str, jax.Array]


def head_feature(teacher: str) -> str:
  """The student's feature holding the logits of its head for ``teacher``."""
  return f"logits/{teacher}"


_TOKENS = ("stages", "preact_stages", "last_stage", "before_last_stage", "stem_and_stages")


def _stage_names(features: Mapping[str, Any], prefix: str = "") -> list[str]:
  names = [k for k in features if re.fullmatch(prefix + r"stage\d+", k)]
  return sorted(names, key=lambda k: int(re.findall(r"\d+$", k)[0]))


def select_features(features: Mapping[str, jax.Array], spec: str | Sequence[str],
                    where: str) -> list[jax.Array]:
  """The maps ``spec`` names (a feature name, a token, or a list of them), in order."""
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
  return [features[n] for n in names]


class Context(NamedTuple):
  """What a loss reads in the step. s_maps/t_maps: the selected maps (after the objective's
  head, if it has one); state: the objective's non-trainable state (e.g. CRD's memory);
  teacher_params: ``{teacher: variables}`` of the frozen teachers (a loss that runs part of
  its teacher, e.g. its classifier)."""
  s_maps: list | None
  t_maps: list | None
  student: Outputs
  teacher: Outputs | None
  batch: Mapping[str, jax.Array]
  epoch: jax.Array | None
  rng: jax.Array | None
  state: Mapping[str, Any] | None
  teacher_params: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """How a loss reads the outputs.

  fn(objective, ctx) -> scalar, or (scalar, new state entries) for stateful losses.
  partial_labels: it can use batches where only some examples are labelled (``label_mask``).
  hparams_of: a function whose keyword arguments (with defaults) are the hyperparameters.
  reads: the default feature selection (None: logits only).
  teacher_reads: the teacher side's default, where it differs from ``reads``.
  head: builds the objective's learnable module from its hyperparameters (None: none).
  init_state: ``(objective, rng, num_data) -> {name: array pytree}``, non-trainable state.
  stage: the key of its initialisation stage in ``kd_jax.losses.stages.INIT_STAGES``.
  stage_fn: the loss minimised in that stage (default ``fn``), with the head in stage mode.
  frozen: the head's sub-modules that are trained only in the stage, then not optimised.
  multi_teacher: ``teacher`` may be a list of teachers (logits concatenated in that order;
  maps: the selected maps of each teacher in turn).
  """
  fn: Callable[..., Any]
  hparams_of: Callable[..., Any]
  needs_labels: bool = False
  partial_labels: bool = False
  needs_teacher: bool = False
  needs_index: bool = False
  reads: str | None = None
  teacher_reads: str | tuple[str, ...] | None = None
  head: Callable[[Any], nn.Module] | None = None
  init_state: Callable[..., Mapping[str, Any]] | None = None
  stage: str | None = None
  stage_fn: Callable[..., Any] | None = None
  frozen: tuple[str, ...] = ()
  multi_teacher: bool = False


def _ce(obj, ctx):
  # With a labelled fraction of the data, the mean is over the labelled examples only.
  return losses.cross_entropy(ctx.student.logits, ctx.batch["label"],
                              mask=ctx.batch.get("label_mask"), **obj.hparams)


def _kd(obj, ctx):
  return losses.kd(ctx.student.logits, ctx.teacher.logits, **obj.hparams)


def _soft_ce(obj, ctx):
  return losses.soft_cross_entropy(ctx.student.logits, ctx.teacher.logits, **obj.hparams)


def _logit_l2(obj, ctx):
  return losses.logit_l2(ctx.student.logits, ctx.teacher.logits)


def _cfl(obj, ctx):
  (h_s,), per_teacher = ctx.s_maps, ctx.t_maps
  return losses.cfl(h_s, [h for h, _, _ in per_teacher], [r for _, r, _ in per_teacher],
                    [f for _, _, f in per_teacher], recon_weight=obj.hp("recon_weight"),
                    sigmas=tuple(obj.hp("sigmas")))


def _cfl_hparams(hidden: int = 128, num_blocks: int = 3, recon_weight: float = 1.0,
                 sigmas: tuple = losses.amalgamation.MMD_SIGMAS):
  """CFL: common-space width, extractor blocks, reconstruction weight, MMD kernel widths."""


def _dkd(obj, ctx):
  return losses.dkd(ctx.student.logits, ctx.teacher.logits, ctx.batch["label"], epoch=ctx.epoch,
                    **obj.hparams)


def _on_maps(loss_fn, **fixed):
  """A loss of (student map, teacher map) pairs, summed over layers. RepDistiller zips the
  two lists: the shorter one decides how many layers are compared."""
  def fn(obj, ctx):
    hparams = {k: v for k, v in obj.hparams.items() if k not in fixed}
    return sum(loss_fn(s, t, **hparams) for s, t in zip(ctx.s_maps, ctx.t_maps))
  return fn


def _vid(obj, ctx):
  return sum(losses.vid(mean, var, t) for (mean, var), t in zip(ctx.s_maps, ctx.t_maps))


def _ab(obj, ctx):
  return losses.activation_boundaries(list(ctx.s_maps), list(ctx.t_maps), **obj.hparams)


def _fsp(obj, ctx):
  return losses.fsp(list(ctx.s_maps), list(ctx.t_maps))


def _stat(obj, ctx):
  return losses.stat_matching(ctx.s_maps[0], ctx.t_maps[0], **obj.hparams)


def _crd(obj, ctx):
  memory = ctx.state["memory"]
  index = ctx.batch["index"]
  contrast = ctx.batch.get("contrast_index")
  if contrast is None:  # Uniform negatives over the training set, drawn in the step.
    contrast = losses.sample_contrast_index(ctx.rng, index, obj.hp("nce_k"), memory.num_data)
  loss, memory = losses.crd(ctx.s_maps[0], ctx.t_maps[0], memory, index, contrast,
                            temperature=obj.hp("nce_t"), momentum=obj.hp("nce_m"))
  return loss, {"memory": memory}


def _ft(obj, ctx):
  return losses.factor_transfer(ctx.s_maps[0], ctx.t_maps[0], p1=obj.hp("p1"), p2=obj.hp("p2"))


def _ft_stage(obj, ctx):
  return losses.paraphraser_reconstruction(ctx.s_maps[0], ctx.t_maps[0])


def _ama(obj, ctx):
  return losses.fitnet(ctx.s_maps[0], ctx.t_maps[0])


def teacher_classifier(variables: Mapping[str, Any]) -> tuple[jax.Array, jax.Array]:
  """``(kernel [D, C], bias [C])`` of a zoo model's final Linear layer."""
  from kd_jax import models
  params = variables["params"]
  name = next(k for k in params if models.is_classifier(k))
  dense = params[name]["Dense_0"]
  return dense["kernel"], dense["bias"]


def _ama_stage(obj, ctx):
  kernel, bias = teacher_classifier(ctx.teacher_params[obj.teacher])
  return losses.adapted_teacher_loss(ctx.s_maps[0], ctx.t_maps[0], ctx.batch["label"], kernel,
                                     bias, obj.hp("stage_l2"), mask=ctx.batch.get("label_mask"))


def _ama_hparams(stage_l2: float = 0.0):
  """AMA: the weight of the stage's L2 pull of the adapted teacher to its pooled feature."""


def _ft_hparams(p1: float = 2.0, p2: float = 1.0, rate: float = 0.5):
  """FT: the factor's exponent and distance, the paraphraser's channel rate."""


def _no_hparams():
  """No hyperparameters."""


def _vid_hparams(init_pred_var: float = 5.0, eps: float = 1e-5):
  """VID: the regressor's initial variance and its floor."""


def _embed_hparams(feat_dim: int = 128):
  """CC: the embedding size."""


def _crd_hparams(feat_dim: int = 128, nce_k: int = 16384, nce_t: float = 0.07,
                 nce_m: float = 0.5):
  """CRD: embedding size, negatives per example, temperature, memory momentum."""


def _crd_state(obj, rng, num_data):
  return {"memory": losses.crd_memory_init(rng, num_data, obj.hp("feat_dim"))}


LOSSES: dict[str, LossSpec] = {
    "ce": LossSpec(_ce, losses.cross_entropy, needs_labels=True, partial_labels=True),
    "kd": LossSpec(_kd, losses.kd, needs_teacher=True, multi_teacher=True),
    "soft_ce": LossSpec(_soft_ce, losses.soft_cross_entropy, needs_teacher=True,
                        multi_teacher=True),
    "logit_l2": LossSpec(_logit_l2, _no_hparams, needs_teacher=True),
    "cfl": LossSpec(_cfl, _cfl_hparams, needs_teacher=True, multi_teacher=True,
                    reads="last_stage",
                    head=lambda o: heads.CFLHead(o.hp("hidden"), o.hp("num_blocks"))),
    "dkd": LossSpec(_dkd, losses.dkd, needs_labels=True, needs_teacher=True),
    "at": LossSpec(_on_maps(losses.attention_transfer), losses.attention_transfer,
                   needs_teacher=True, reads="stages"),
    "nst": LossSpec(_on_maps(losses.neuron_selectivity_transfer),
                    losses.neuron_selectivity_transfer, needs_teacher=True, reads="stages"),
    "sp": LossSpec(_on_maps(losses.similarity_preserving), losses.similarity_preserving,
                   needs_teacher=True, reads="last_stage"),
    "rkd": LossSpec(_on_maps(losses.rkd), losses.rkd, needs_teacher=True, reads="pooled"),
    "pkt": LossSpec(_on_maps(losses.pkt), losses.pkt, needs_teacher=True, reads="pooled"),
    "fsp": LossSpec(_fsp, _no_hparams, needs_teacher=True, reads="stem_and_stages",
                    stage="fsp"),
    "fitnet": LossSpec(_on_maps(losses.fitnet), _no_hparams, needs_teacher=True,
                       reads="stage2", head=lambda o: heads.FitNetHead()),
    "ab": LossSpec(_ab, losses.activation_boundaries, needs_teacher=True, reads="preact_stages",
                   head=lambda o: heads.ABHead(), stage="ab"),
    "ft": LossSpec(_ft, _ft_hparams, needs_teacher=True, reads="last_stage",
                   head=lambda o: heads.FTHead(o.hp("rate")), stage="ft", stage_fn=_ft_stage,
                   frozen=("paraphraser",)),
    "vid": LossSpec(_vid, _vid_hparams, needs_teacher=True, reads="stages",
                    head=lambda o: heads.VIDHead(o.hp("init_pred_var"), o.hp("eps"))),
    "cc": LossSpec(_on_maps(losses.correlation_congruence, feat_dim=None), _embed_hparams,
                   needs_teacher=True, reads="pooled",
                   head=lambda o: heads.EmbedPairHead(o.hp("feat_dim"))),
    "crd": LossSpec(_crd, _crd_hparams, needs_teacher=True, needs_index=True, reads="pooled",
                    head=lambda o: heads.EmbedPairHead(o.hp("feat_dim"), normalize=True),
                    init_state=_crd_state),
    "ama": LossSpec(_ama, _ama_hparams, needs_labels=True, partial_labels=True,
                    needs_teacher=True, reads="last_stage",
                    teacher_reads=("before_last_stage", "pooled"), head=lambda o: heads.AMAHead(), stage="ama", stage_fn=_ama_stage,
                    frozen=("adapter", "lift")),
    "mean_matching": LossSpec(_on_maps(losses.mean_matching), _no_hparams, needs_teacher=True,
                              reads="last_stage", head=lambda o: heads.ConnectorHead()),
    "stat_matching": LossSpec(_stat, losses.stat_matching, needs_teacher=True,
                              reads="last_stage", head=lambda o: heads.ConnectorHead()),
}
# Losses of kd_jax.losses that need what the step does not hold yet: the teacher's remaining
# layers (AdaIN's and the teacher-head loss's teacher tail).
_NOT_YET = ("adain", "teacher_head")
_NOT_HPARAMS = {"logits", "labels", "mask", "student_logits", "teacher_logits", "f_s", "f_t",
                "epoch"}
_FIELDS = ("weight", "loss", "teacher", "student_feature", "teacher_feature")
_STAGE_FIELDS = ("init_epochs", "init_lr", "main_stage")


def hparam_names(spec: "LossSpec") -> list[str]:
  """The hyperparameters of a loss, in the order of its ``hparams_of`` signature."""
  return [n for n in inspect.signature(spec.hparams_of).parameters if n not in _NOT_HPARAMS]


@dataclasses.dataclass(frozen=True)
class Objective:
  name: str
  loss: str
  weight: float
  teacher: str | tuple[str, ...] | None
  hparams: Mapping[str, Any]
  student_feature: str | tuple[str, ...] | None = None
  teacher_feature: str | tuple[str, ...] | None = None
  init_epochs: int = 0             # Epochs of its initialisation stage (0: none).
  init_lr: float | None = None     # The stage's learning rate (None: the reference's).
  main_stage: bool = True          # False: it acts only through its stage (AB, FSP).

  @property
  def spec(self) -> LossSpec:
    return LOSSES[self.loss]

  def hp(self, name: str) -> Any:
    """A hyperparameter: the config's value or the loss's default."""
    if name in self.hparams:
      return self.hparams[name]
    return inspect.signature(self.spec.hparams_of).parameters[name].default

  @property
  def head(self) -> nn.Module | None:
    return self.spec.head(self) if self.spec.head else None

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
    if self.spec.reads is None and isinstance(self.teacher, str):
      head = student.features.get(head_feature(self.teacher))
      if head is not None:
        return Outputs(head, student.features)
    return student

  def select(self, student: Outputs, teachers: Mapping[str, Outputs]):
    """The student's and the teachers' maps this objective reads (lists; with several
    teachers, each teacher's maps in turn), or (None, None)."""
    if self.spec.reads is None:
      return None, None
    where = f"config.objectives.{self.name}"
    t_maps = [m for n in self.teachers
              for m in select_features(teachers[n].features, self.teacher_feature,
                                       f"{where}.teacher_feature")]
    return (select_features(student.features, self.student_feature, f"{where}.student_feature"),
            t_maps)

  def __call__(self, student: Outputs, teachers: Mapping[str, Outputs], batch,
               epoch: jax.Array | None = None, rng: jax.Array | None = None,
               aux_params: Any = None, aux_state: Mapping[str, Any] | None = None,
               train: bool = True, stage: bool = False, teacher_params: Any = None
               ) -> tuple[jax.Array, Mapping[str, Any] | None]:
    """``(loss, new aux_state)`` on this batch. epoch: the current epoch counted from 1
    (DKD's warm-up); aux_params/aux_state: this objective's (``init_aux``); stage: the
    loss of its initialisation stage instead of the main one."""
    teacher = self.teacher_outputs(teachers)
    student = self.route(student)
    s_maps, t_maps = self.select(student, teachers)
    new_state = dict(aux_state) if aux_state is not None else None
    head = self.head
    if head is not None:
      variables = {"params": aux_params or {}}
      if aux_state and "batch_stats" in aux_state:
        variables["batch_stats"] = aux_state["batch_stats"]
      kwargs = {"stage": True} if stage and self.spec.stage_fn is not None else {}
      (s_maps, t_maps), updates = head.apply(variables, s_maps, t_maps, train,
                                             mutable=["batch_stats"], **kwargs)
      if "batch_stats" in updates:
        new_state["batch_stats"] = updates["batch_stats"]
    fn = (self.spec.stage_fn or self.spec.fn) if stage else self.spec.fn
    out = fn(self, Context(s_maps, t_maps, student, teacher, batch, epoch, rng, aux_state,
                           teacher_params))
    if isinstance(out, tuple):
      out, extra = out
      new_state.update(extra)
    return out, new_state


def init_aux(objectives: Sequence[Objective], student: Outputs, teachers: Mapping[str, Outputs],
             rng: jax.Array, num_data: int) -> tuple[dict[str, Any], dict[str, Any]]:
  """``(aux params, aux state)``, ``{objective name: ...}`` for the objectives that have a
  head or state, from example outputs (any batch size). Raises a one-line KdJaxError when
  an objective cannot use the shapes it reads (e.g. a connector that cannot bridge them)."""
  params, state = {}, {}
  for i, obj in enumerate(objectives):
    s_maps, t_maps = obj.select(student, teachers)
    k_head, k_state = jax.random.split(jax.random.fold_in(rng, i))
    try:
      if obj.head is not None:
        variables = obj.head.init(k_head, s_maps, t_maps, False)
        if variables.get("params"):  # An identity head (e.g. AB on equal shapes) has none.
          params[obj.name] = variables["params"]
        if variables.get("batch_stats"):
          state.setdefault(obj.name, {})["batch_stats"] = variables["batch_stats"]
      if obj.spec.init_state is not None:
        state.setdefault(obj.name, {}).update(obj.spec.init_state(obj, k_state, num_data))
    except (ValueError, TypeError) as err:
      raise _shape_error(obj, s_maps, t_maps, err) from None
  return params, state


def check_shapes(objectives: Sequence[Objective], student: Outputs,
                 teachers: Mapping[str, Outputs], aux_params, aux_state, batch,
                 teacher_params: Any = None) -> None:
  """Traces every objective on example outputs (no computation): a loss that cannot take
  the shapes it reads (e.g. FSP's unequal channel counts) fails here, in one line."""
  for obj in objectives:
    s_maps, t_maps = obj.select(student, teachers)
    stages = ([False] if obj.main_stage else []) + ([True] if obj.init_epochs else [])
    for stage in stages:
      try:
        jax.eval_shape(lambda p, st, tp: obj(student, teachers, batch, 1.0,
                                             jax.random.PRNGKey(0), p, st, True, stage, tp)[0],
                       aux_params.get(obj.name), aux_state.get(obj.name), teacher_params)
      except (ValueError, TypeError) as err:
        raise _shape_error(obj, s_maps, t_maps, err) from None


def _shape_error(obj, s_maps, t_maps, err) -> KdJaxError:
  shapes = lambda maps: ", ".join(str(tuple(m.shape[1:])) for m in maps or [])
  msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
  return KdJaxError(f"config.objectives.{obj.name}: loss {obj.loss!r} cannot compare student "
                    f"features [{shapes(s_maps)}] with teacher features [{shapes(t_maps)}]: "
                    f"{msg}")


def _parse_stage(spec: LossSpec, entry: dict, where: str) -> dict[str, Any]:
  """Pops the stage fields of an entry: the reference's stage unless the config says otherwise."""
  if not spec.stage:
    return {}
  from kd_jax.losses.stages import INIT_STAGES
  default = INIT_STAGES[spec.stage]
  epochs = entry.pop("init_epochs", default.epochs)
  if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
    raise KdJaxError(f"{where}.init_epochs must be an integer >= 0, got {epochs!r}")
  lr = entry.pop("init_lr", None)
  if lr is not None and (not isinstance(lr, (int, float)) or lr <= 0):
    raise KdJaxError(f"{where}.init_lr must be a number > 0, got {lr!r}")
  main = entry.pop("main_stage", default.main_stage_loss is not None)
  if not isinstance(main, bool):
    raise KdJaxError(f"{where}.main_stage must be True or False, got {main!r}")
  if not main and not epochs:
    raise KdJaxError(f"{where}: main_stage=False and init_epochs=0 leave the loss nothing to do")
  return dict(init_epochs=epochs, init_lr=lr, main_stage=main)


def parse(objectives_cfg: Mapping[str, Mapping[str, Any]], teacher_names,
          has_labels: bool, has_index: bool = True,
          all_labeled: bool = True) -> list[Objective]:
  """Builds the objectives of a config, with one-line errors naming the field."""
  out = []
  for name, entry in objectives_cfg.items():
    entry = dict(entry)
    where = f"config.objectives.{name}"
    loss = entry.pop("loss", name)
    if loss in _NOT_YET:
      raise KdJaxError(f"{where}: loss {loss!r} exists as kd_jax.losses but is not yet "
                       f"available as a config objective (it needs an initialisation stage or "
                       f"the teacher's remaining layers); available: "
                       f"{', '.join(sorted(LOSSES))}")
    if loss not in LOSSES:
      raise KdJaxError(f"{where}: unknown loss {loss!r}; valid: {', '.join(sorted(LOSSES))}")
    spec = LOSSES[loss]
    weight = entry.pop("weight", 1.0)
    if not isinstance(weight, (int, float)) or weight < 0:
      raise KdJaxError(f"{where}.weight must be a number >= 0, got {weight!r}")
    teacher = entry.pop("teacher", None)
    if isinstance(teacher, (list, tuple)):
      teacher = tuple(teacher)
      if not spec.multi_teacher:
        raise KdJaxError(f"{where}.teacher: loss {loss!r} reads one teacher, got {list(teacher)}")
      if not teacher or len(set(teacher)) != len(teacher):
        raise KdJaxError(f"{where}.teacher must list distinct teachers, got {list(teacher)}")
    if spec.needs_teacher:
      if teacher is None and len(teacher_names) == 1:
        teacher = next(iter(teacher_names))
      for t in (teacher if isinstance(teacher, tuple) else (teacher,)):
        if t not in teacher_names:
          raise KdJaxError(f"{where}.teacher: {t!r} is not a configured teacher "
                           f"(config.teachers: {', '.join(teacher_names) or 'none'})")
    elif teacher is not None:
      raise KdJaxError(f"{where}.teacher: loss {loss!r} reads no teacher")
    if spec.needs_index and has_index is False:
      raise KdJaxError(f"{where}: loss {loss!r} needs the example index of the training data")
    if spec.needs_labels and not has_labels:
      raise KdJaxError(f"{where}: loss {loss!r} needs labels, but the training data is "
                       f"unlabelled (config.data.unlabeled); set its weight to 0 or remove it")
    if spec.needs_labels and not spec.partial_labels and not all_labeled:
      raise KdJaxError(f"{where}: loss {loss!r} needs the label of every training example, "
                       f"but config.data.labeled_fraction < 1")
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
      default = spec.teacher_reads if side == "teacher_feature" and spec.teacher_reads else \
          spec.reads
      features[side] = value if value is not None else default
    stage = _parse_stage(spec, entry, where)
    allowed = set(hparam_names(spec))
    unknown = set(entry) - allowed
    if unknown:
      fields = [f for f in _FIELDS if spec.reads or not f.endswith("_feature")]
      if not spec.needs_teacher:
        fields.remove("teacher")
      if spec.stage:
        fields += list(_STAGE_FIELDS)
      raise KdJaxError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} for loss "
                       f"{loss!r}; valid: {', '.join(fields + sorted(allowed))}")
    if float(weight) > 0:
      out.append(Objective(name, loss, float(weight), teacher, dict(entry), **features,
                           **stage))
  if not out:
    raise KdJaxError("config.objectives: no objective with a weight > 0")
  if not any(o.main_stage for o in out):
    raise KdJaxError("config.objectives: no objective acts in the main stage (add ce or kd)")
  return out

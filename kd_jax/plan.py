"""The plan of a job: every run of a config, checked whole before the first one trains.

``make(config, workdir)`` is the one place a config becomes runs: each run's model, data
(input shape, classes, split sizes), teachers and where their variables come from, its
objectives as method instances (hyperparameters filled in and type-checked), its
initialisation phases, the shapes of its adapters and state (``jax.eval_shape``: nothing is
computed or allocated) and what its host samplers refuse. Training (``kd_jax.job``), the dry
run, ``kd_jax.benchmark`` and ``kd_jax.evaluate`` all start from it; whatever a run would
refuse at its start is refused here, in one line that names the run and the field, before
anything is written to the workdir.

Top-level fields and runs: a job's runs are the top-level config with each run's own
fields over it (``config.runs.<run>.<field>``). A ``--config.<field>`` override that every
run sets for itself would reach no run, so it is refused, naming the runs that set the field
and how to override one of them (``--config.runs.<run>.<field>=...``).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kd_jax import checkpoint as ckpt_lib
from kd_jax import config as config_lib
from kd_jax import methods
from kd_jax.data import info as data_info
from kd_jax.data import sources
from kd_jax.distill import adapters
from kd_jax.distill import host_inputs
from kd_jax.distill import objectives as objectives_lib
from kd_jax.distill import parsing
from kd_jax.distill import student as student_lib
from kd_jax.distill import teachers as teachers_lib
from kd_jax.distill.objectives import Objective, Outputs
from kd_jax.errors import KdJaxError
from kd_jax.training import sharding, teacher_cache

# Without split sizes in the metadata (a data set not prepared yet), CRD's memory bank and
# the dry run's step counts assume CIFAR's train split.
DEFAULT_INDEX_SIZE = 50_000


@dataclasses.dataclass(frozen=True)
class TeacherPlan:
  """One teacher of a run: its model and where its frozen variables come from."""
  name: str
  model: str
  path: str           # The kd_jax workdir its variables are read from.
  run: str            # The earlier run of this job that trains it ('' for a checkpoint).
  which: str          # latest | best
  head: str           # Of a consolidated student: the head read as its logits ('' none).
  num_classes: int
  heads: Mapping[str, int]  # A consolidated student's heads (its meta), else {}.
  found: bool = True  # False: a checkpoint not there (only where the plan allows it).

  def module(self, dtype: Any = jnp.float32) -> nn.Module:
    return student_lib.as_teacher(self.model, self.num_classes, dict(self.heads) or None,
                                  self.head, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """One run of a job, checked: what it trains, on what, from which teachers, with what."""
  name: str
  config: ml_collections.ConfigDict  # The run's full config (top level with its fields).
  workdir: str                       # <job workdir>/<run>, or the job's for a single run.
  trains: bool                       # False: an evaluation-only run (downstream.backbone).
  info: data_info.DataInfo
  num_classes: int
  has_labels: bool                   # The train split has labels (not unlabelled proxy data).
  all_labeled: bool                  # Every train example's label is used.
  heads: Mapping[str, int]           # {teacher: classes}: the student's head per teacher.
  teachers: Mapping[str, TeacherPlan]
  objectives: tuple[Objective, ...]
  adapter_shapes: Any = None         # params['adapters'] as ShapeDtypeStructs.
  state_shapes: Any = None           # objective_state (adapters' BatchNorm, CRD's memory).
  # (student Outputs, {teacher: Outputs}) for a batch of 2, and {teacher: variables}, as
  # ShapeDtypeStructs: what the build would otherwise trace again.
  output_shapes: Any = None
  teacher_variable_shapes: Any = None
  downstream: "RunPlan | None" = None  # The downstream fine-tuning run, if any.
  job_workdir: str | None = None       # The workdir of its job (None: a run alone).

  @property
  def tag(self) -> str:
    return f"[{self.name or 'train'}]"

  @property
  def dtype(self):
    return jnp.dtype(self.config.dtype)

  @property
  def index_size(self) -> int:
    return self.info.num_train_examples or DEFAULT_INDEX_SIZE

  @property
  def steps_per_epoch(self) -> int | None:
    n = self.info.num_train_examples
    return max(1, n // self.config.batch_size) if n else None

  @property
  def num_steps(self) -> int | None:
    """Steps of the main phase (0 for an evaluation-only run; None: size unknown)."""
    if not self.trains:
      return 0
    spe = self.steps_per_epoch
    return None if spe is None else spe * self.config.num_epochs

  @property
  def seeds(self) -> tuple[int, ...]:
    """``config.seeds``: the seeds trained side by side (() for one, ``config.seed``)."""
    return tuple(self.config.get("seeds", ()))

  def seed_workdirs(self) -> dict[int, str]:
    """``{seed: folder}`` of a run with ``seeds``: ``<job workdir>/<run>_seed<k>``, each
    written as a run of its own (``<workdir>/seed<k>`` for a job's one unnamed run)."""
    parent = os.path.dirname(self.workdir) if self.name else self.workdir
    return {k: os.path.join(parent, config_lib.seed_run_name(self.name, k)) for k in self.seeds}

  def is_complete(self) -> bool:
    """Its results.json is written (every seed's, for a run with ``seeds``)."""
    dirs = list(self.seed_workdirs().values()) or [self.workdir]
    return all(ckpt_lib.is_complete_run(d) for d in dirs)

  def student(self) -> nn.Module:
    return student_lib.create(self.config.model, self.num_classes, dict(self.heads) or None,
                              dtype=self.dtype)

  def teacher_modules(self) -> dict[str, nn.Module]:
    return {n: t.module(self.dtype) for n, t in self.teachers.items()}

  def samplers(self, split: methods.TrainSplit) -> dict[str, methods.HostSampler]:
    """The objectives' host samplers over ``split`` (refusals were checked at plan time)."""
    return host_inputs.build(self.objectives, split)

  def with_objectives(self, objectives_cfg: Mapping[str, Any],
                      measurement_only: bool = False) -> "RunPlan":
    """This run with other objectives (``kd_jax.benchmark --methods``), planned again;
    ``measurement_only``: a step that is timed, not trained (the benchmark's supervised
    student step of a distilled ViT, whose distillation head it leaves untrained)."""
    cfg = ml_collections.ConfigDict(self.config.to_dict())
    cfg.objectives = ml_collections.ConfigDict(dict(objectives_cfg))
    return _plan_run(self.name, cfg, self.workdir, {}, _Shapes(), teachers=self.teachers,
                     check_heads=not measurement_only)

  def trained_config(self) -> dict[str, Any]:
    """The config as JSON, its objectives and teachers resolved (every hyperparameter, set
    or default; each teacher's model, classes, heads and the run of this job that trains
    it, not the folder it is read from, nor the teacher cache's: a workdir moved or copied
    trains the same): what decides what this run trains (``checkpoint.check_run_config``
    compares it)."""
    c = self.config.to_dict()
    c["teacher_cache"] = "cached" if c.get("teacher_cache") else ""
    if c.get("init_from"):
      c["init_from"] = self._init_from_place(c["init_from"])
    c["objectives"] = {o.name: {
        "loss": o.loss, "weight": o.weight, "teacher": o.teacher,
        "student_feature": o.student_feature, "teacher_feature": o.teacher_feature,
        "init_epochs": o.init_epochs, "init_lr": o.init_lr, "main_phase": o.main_phase,
        "view": o.view, **{k: getattr(o.method, k) for k in o.method.hparams()}}
        for o in self.objectives}
    c["teachers"] = {n: {"model": t.model, "num_classes": t.num_classes, "heads": dict(t.heads),
                         "head": t.head, "run": t.run, "which": t.which}
                     for n, t in self.teachers.items()}
    return json.loads(json.dumps(c, default=str))

  def _init_from_place(self, init_from: str) -> str:
    """``init_from`` as ``trained_config`` records it: relative to this run's workdir where
    it holds it (a downstream fine-tuning run's backbone: ``../../..``, whether a job or
    ``kd_jax.evaluate`` fine-tunes it), else relative to its job's workdir where it lies in
    it (another run of the job), else as written: a job moved or copied trains the same."""
    path = os.path.abspath(_init_from_path(init_from, self.job_workdir))
    here = os.path.abspath(self.workdir)
    if os.path.commonpath([path, here]) == path:
      return os.path.relpath(path, here)
    job = self.job_workdir and os.path.abspath(self.job_workdir)
    if job and os.path.commonpath([job, path]) == job:
      return os.path.relpath(path, job)
    return init_from

  def step_key(self) -> str:
    """What decides the compiled train step: runs with equal keys run the same program."""
    c = self.config
    return repr((c.model, self.num_classes, sorted(self.heads.items()),
                 sorted((n, t.model, t.num_classes, sorted(t.heads.items()), t.head)
                        for n, t in self.teachers.items()),
                 self.objectives, c.batch_size, c.dtype, self.info.input_shape,
                 self.info.device_augment, self.has_labels, self.all_labeled,
                 c.skip_nonfinite_steps, c.optimizer.to_dict(), self.seeds and
                 (len(self.seeds), c.seed_batches)))


@dataclasses.dataclass(frozen=True)
class JobPlan:
  """Every run of a job, in the order they train."""
  workdir: str
  runs: Mapping[str, RunPlan]
  # What would stop the job at its start on this machine (a data set that cannot be had, a
  # teacher checkpoint not there), where the plan was made with ``missing=True``.
  problems: tuple[str, ...] = ()


class _Shapes:
  """Output and variable shapes per model, traced once per plan (``jax.eval_shape``)."""

  def __init__(self):
    self._outputs: dict[str, Any] = {}
    self._checked: dict[str, tuple[Any, Any]] = {}
    self._stored: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}

  def outputs(self, module: nn.Module, what: tuple, input_shape,
              field: str = "config.data.image_size") -> tuple[Any, Outputs]:
    """``(variables, Outputs)`` as ShapeDtypeStructs for a batch of 2; ``what``: what makes
    the module (model name, classes, heads...)."""
    key = repr((what, tuple(input_shape)))
    if key not in self._outputs:
      try:
        out, variables = jax.eval_shape(lambda: module.init_with_output(
            jax.random.PRNGKey(0), jnp.zeros((2, *input_shape)), train=False))
      except ValueError as err:  # A model that refuses the input shape (a ViT's patches).
        raise KdJaxError(f"model {what[0]} cannot take the data's {_size(input_shape)} images: "
                         f"{err} ({field})") from None
      self._outputs[key] = (variables, Outputs(*out))
    return self._outputs[key]

  def stored(self, path: str, which: str) -> tuple[Any, dict[str, Any]]:
    """``(variables as ShapeDtypeStructs, meta)`` of the model checkpoint in the workdir
    ``path`` (``checkpoint.model_variable_shapes``: metadata only), read once per plan."""
    key = (os.path.abspath(path), which)
    if key not in self._stored:
      self._stored[key] = ckpt_lib.model_variable_shapes(path, which)
    return self._stored[key]

  def checked(self, key: str, fn):
    if key not in self._checked:
      self._checked[key] = fn()
    return self._checked[key]


def _size(input_shape: Sequence[int]) -> str:
  return "x".join(str(d) for d in input_shape)


def _in_run(name: str, err: KdJaxError) -> KdJaxError:
  return KdJaxError(f"[{name}] {err}") if name else err


def make(config: ml_collections.ConfigDict, workdir: str, overrides: Sequence[str] = (),
         missing: bool = False) -> JobPlan:
  """The checked plan of every run of ``config`` (see the module docstring). ``overrides``:
  the paths of the ``--config.*`` overrides given on the command line (``a.b``), each of
  which must reach a run. Reads the config, the data sets' metadata and the teachers'
  checkpoint metadata; prepares the embedded data sets in the TFDS data_dir if they are
  not; writes nothing to ``workdir``. ``missing``: what this machine lacks (a data set that
  is neither prepared nor downloadable, a teacher checkpoint not there: ``TeacherPlan.found``
  False, planned from its config) goes to ``JobPlan.problems`` instead of being refused (the
  dry run and the benchmark, whose batches and teachers are random)."""
  check_overrides(config, overrides)
  runs = config_lib.expand_runs(config)
  names = list(runs)
  written = config_lib.run_names(runs)
  if len(set(written)) < len(written):
    twice = sorted({n for n in written if written.count(n) > 1})
    raise KdJaxError(f"config.runs: {', '.join(twice)} is both a run and a seed of a run with "
                     f"seeds (<run>_seed<k>): rename the run")
  for i, (name, cfg) in enumerate(runs.items()):
    try:
      config_lib.validate(cfg, run_names=config_lib.run_names(
          {n: runs[n] for n in names[:i]}))
    except KdJaxError as err:
      raise _in_run(name, err) from None
  checked, problems = set(), []
  for name, cfg in runs.items():  # A data set that cannot be had fails now, not after a teacher.
    for data in (cfg.data, cfg.downstream.data):
      key = (data.name, data.get("data_dir"), data.get("download", True))
      if data.name and key not in checked:
        checked.add(key)
        try:
          sources.check_available(data)
          sources.prepare_local(data)
        except KdJaxError as err:
          if not missing:
            raise _in_run(name, err) from None
          problems.append(str(_in_run(name, err)))
  shapes = _Shapes()
  planned: dict[str, RunPlan] = {}
  for name, cfg in runs.items():
    run_dir = os.path.join(workdir, name) if name else workdir
    try:
      planned[name] = _plan_run(name, cfg, run_dir, planned, shapes, job_workdir=workdir,
                                missing_checkpoints=missing)
    except KdJaxError as err:
      raise _in_run(name, err) from None
    problems += [f"{planned[name].tag} config.teachers.{t.name}.checkpoint: no kd_jax "
                 f"checkpoint in {t.path}" for t in planned[name].teachers.values()
                 if not t.found]
    if missing:
      problems += [f"{planned[name].tag} {field}: " + (
          f"no kd_jax checkpoint in {path}" if os.path.exists(path) else
          f"{written!r} is neither a run of this job nor a workdir that exists")
                   for field, written, path in _workdirs_read(cfg, planned, workdir)
                   if not _has_checkpoint(path)]
  return JobPlan(workdir, planned, tuple(problems))


def make_run(config: ml_collections.ConfigDict, workdir: str, run_name: str = "",
             job_workdir: str | None = None) -> RunPlan:
  """The plan of one run's full config, alone (e.g. a downstream fine-tuning run): its
  teachers are checkpoints (no other run precedes it)."""
  config_lib.validate(config)
  return _plan_run(run_name, config, workdir, {}, _Shapes(), job_workdir=job_workdir)


def make_downstream(config: ml_collections.ConfigDict, workdir: str) -> RunPlan | None:
  """The checked plan of ``config.downstream`` alone (``kd_jax.evaluate`` of the backbone in
  ``workdir``, or in ``config.downstream.backbone``: another workdir, or ``random``): the
  backbone's checkpoint (read first: its metadata), its data, that the backbone takes that
  data, and its fine-tuning run if it has one (returned; None if not)."""
  config_lib.validate(config)
  ds = config.downstream
  if not ds.data.name:
    raise KdJaxError("config.downstream.data.name is empty: the config names no downstream "
                     "data set")
  shapes = _Shapes()
  backbone = (_Backbone.of(config, {}, shapes) if ds.backbone else
              _Backbone.stored(workdir, ds.which, shapes, "--workdir"))
  sources.check_available(ds.data)
  sources.prepare_local(ds.data)
  return _plan_downstream("", config, workdir, {}, shapes, backbone)


def _plan_run(name: str, cfg: ml_collections.ConfigDict, run_dir: str,
              earlier: Mapping[str, RunPlan], shapes: _Shapes,
              job_workdir: str | None = None,
              teachers: Mapping[str, TeacherPlan] | None = None,
              missing_checkpoints: bool = False, check_heads: bool = True,
              fine_tuning: bool = False) -> RunPlan:
  info = data_info.describe(cfg.data)
  trains = not (cfg.downstream.data.name and cfg.downstream.backbone)
  if not trains:
    downstream = _plan_downstream(name, cfg, run_dir, earlier, shapes, _Backbone.of(
        cfg, earlier, shapes, missing_checkpoints), job_workdir)
    return RunPlan(name, cfg, run_dir, False, info, max(cfg.num_classes, 0), False, False, {},
                   {}, (), downstream=downstream, job_workdir=job_workdir)
  sharding.check_batch_size(cfg.batch_size)
  eval_batch = cfg.eval_batch_size if cfg.eval_batch_size > 0 else cfg.batch_size
  sharding.check_batch_size(eval_batch, "config.eval_batch_size")
  has_labels = not cfg.data.unlabeled and info.num_classes is not None
  all_labeled = cfg.data.labeled_fraction >= 1.0 and not cfg.data.get("unlabeled_parts")
  if 0 < cfg.num_classes < (info.num_classes or 0) and has_labels:
    raise KdJaxError(f"config.num_classes is {cfg.num_classes} but {cfg.data.name!r} has "
                     f"{info.num_classes} classes (labels 0..{info.num_classes - 1}); set -1 to "
                     f"take the data set's")
  num_classes = cfg.num_classes if cfg.num_classes > 0 else info.num_classes
  if not num_classes:
    raise KdJaxError("config.num_classes must be set: the data set has no labels")
  if info.num_classes is None:
    raise KdJaxError("config.data: evaluation needs a labelled eval split")
  if teachers is None:
    teachers = {t: plan_teacher(t, dict(spec), earlier, missing_checkpoints and num_classes)
                for t, spec in cfg.teachers.items()}
  heads = {t: teachers[t].num_classes for t in cfg.student_heads}
  methods.import_modules(cfg.method_modules)
  objectives = tuple(parsing.parse_objectives(cfg.objectives, list(teachers), has_labels,
                                              all_labeled=all_labeled))
  objectives_lib.check_views(objectives, info.device_augment)
  # What the samplers refuse (CRD's exact negatives on unlabelled data), without reading the
  # labels: an empty split stands in for them.
  samplers = host_inputs.build(objectives, methods.TrainSplit(
      0, has_labels, lambda: np.zeros(0, np.int32)))
  if not missing_checkpoints:  # (Else a workdir not there is one of JobPlan.problems.)
    _check_init_from(cfg, earlier, job_workdir)
  teacher_cache.check_config(cfg, objectives)
  plan = RunPlan(name, cfg, run_dir, True, info, int(num_classes), has_labels, all_labeled,
                 heads, teachers, objectives, job_workdir=job_workdir)
  adapter_shapes, state_shapes, outputs, t_vars = _run_shapes(plan, shapes, samplers, earlier,
                                                              check_heads)
  # A checkpoint in the run's workdir that it could not resume is refused now, not after
  # the runs before it (a finished run of a job is not trained again: not checked).
  if not (name and plan.is_complete()):
    if cfg.init_from:
      _check_init_from_variables(plan, earlier, shapes, job_workdir, missing_checkpoints)
    expected = {"model": cfg.model, "num_classes": int(num_classes), "seed": cfg.seed,
                "batch_size": cfg.batch_size, "adapters": sorted({*adapter_shapes, *state_shapes})}
    for seed, seed_dir in (plan.seed_workdirs() or {cfg.seed: run_dir}).items():
      ckpt_lib.check_resumable(seed_dir, {**expected, "seed": seed})
  # A job's finished run is not trained again: its results must be this config's. (A run of
  # seeds writes no config.json: each folder is one seed's.)
  if name and not plan.seeds and plan.is_complete():
    ckpt_lib.check_finished_run_config(run_dir, plan.trained_config(), *(
        ["remove that folder to fine-tune with this config"] if fine_tuning else []))
  downstream = None if not cfg.downstream.data.name else _plan_downstream(
      name, cfg, run_dir, earlier, shapes,
      _Backbone.trained(plan, shapes, "the student this run trains"), job_workdir)
  return dataclasses.replace(plan, adapter_shapes=adapter_shapes, state_shapes=state_shapes,
                             output_shapes=outputs, teacher_variable_shapes=t_vars,
                             downstream=downstream)


def plan_teacher(name: str, spec: Mapping[str, Any],
                 earlier: Mapping[str, RunPlan] | None = None,
                 missing_classes: int | None = None) -> TeacherPlan:
  """The plan of ``config.teachers.<name>`` (``spec``): a run of ``earlier`` or a checkpoint,
  whose meta is read (model, classes, heads). ``missing_classes``: a checkpoint that is not
  there is planned with these classes (unless the spec gives them) instead of refused."""
  spec = dict(spec)
  which = spec.get("which", "latest")
  head = spec.get("head", "")
  if spec.get("run"):
    # validate() checked that it is an earlier run (or a seed of one: <run>_seed<k>).
    run_name, seed = config_lib.seeded_run(spec["run"], {n: r.config for n, r in
                                                         (earlier or {}).items()})
    run = (earlier or {})[run_name]
    if not run.trains:
      raise KdJaxError(f"config.teachers.{name}.run: run {spec['run']!r} trains nothing")
    if run.seeds and seed is None:
      raise KdJaxError(f"config.teachers.{name}.run: run {spec['run']!r} trains seeds "
                       f"{list(run.seeds)}: name one of them, e.g. "
                       f"{config_lib.seed_run_name(run_name, run.seeds[0])!r}")
    num_classes = spec.get("num_classes") or run.num_classes
    heads = dict(run.heads)
    path = run.workdir if seed is None else run.seed_workdirs()[seed]
    if run.config.model != spec["model"]:
      raise KdJaxError(f"config.teachers.{name}.model is {spec['model']!r} but run "
                       f"{spec['run']!r} trains a {run.config.model!r}")
  else:
    path = os.path.abspath(os.path.expanduser(spec["checkpoint"]))
    if missing_classes and not _has_checkpoint(path):
      return TeacherPlan(name, spec["model"], path, "", which, head,
                         int(spec.get("num_classes") or missing_classes), {}, found=False)
    try:
      meta = ckpt_lib.model_meta(path, which)
    except KdJaxError as err:
      raise KdJaxError(f"config.teachers.{name}.checkpoint: {err}") from None
    if meta.get("model") not in (None, spec["model"]):
      raise KdJaxError(f"config.teachers.{name}.model is {spec['model']!r} but {path} holds a "
                       f"{meta['model']!r}")
    num_classes = spec.get("num_classes") or meta.get("num_classes")
    if not num_classes:
      raise KdJaxError(f"config.teachers.{name}.num_classes must be set: {path} does not say "
                       f"how many classes its model has")
    heads = dict(meta.get("heads") or {})
  if head and head not in heads:
    raise KdJaxError(f"config.teachers.{name}.head: the student in {path} has no head "
                     f"{head!r} (its heads: {', '.join(heads) or 'none'})")
  return TeacherPlan(name, spec["model"], path, spec.get("run", "") or "", which, head,
                     int(num_classes), heads)


def _has_checkpoint(path: str) -> bool:
  return any(os.path.isdir(os.path.join(path, sub)) for sub in ("checkpoints", "best"))


def _workdirs_read(cfg, earlier: Mapping[str, RunPlan], job_workdir: str
                   ) -> list[tuple[str, str, str]]:
  """``(field, value, path)`` of the workdirs whose model a run reads other than its
  teachers' (not runs of this job): ``init_from``, ``downstream.backbone``."""
  out = []
  if cfg.init_from and cfg.init_from not in earlier:
    out.append(("config.init_from", cfg.init_from, _init_from_path(cfg.init_from, job_workdir)))
  backbone = cfg.downstream.backbone
  if cfg.downstream.data.name and backbone not in ("", "random") and backbone not in earlier:
    out.append(("config.downstream.backbone", backbone, backbone))
  return out


def _init_from_path(path: str, job_workdir: str | None) -> str:
  """Where a run reads ``config.init_from`` (not a run of its job), as ``build.init_from``
  does: relative to the working directory, else to the job's workdir."""
  if not os.path.isabs(path) and job_workdir and not os.path.exists(path):
    return os.path.join(job_workdir, path)
  return path


def _check_teacher_variables(plan: RunPlan, t_vars: Mapping[str, Any],
                             earlier: Mapping[str, RunPlan], shapes: _Shapes) -> None:
  """Refuses a teacher whose variables (its checkpoint's, or those its run of this job
  trains) do not fit its module on this run's data, as loading it would (one line)."""
  runs = {n: r.config for n, r in earlier.items()}
  for n, t in plan.teachers.items():
    if not t.found:
      continue
    if t.run:
      run = config_lib.seeded_run(t.run, runs)[0] if runs else ""
      if run not in earlier:  # (Planned again alone: checked when its job was planned.)
        continue
      variables, _ = _student_shapes(earlier[run], shapes)
    else:
      try:
        variables, _ = shapes.stored(t.path, t.which)
      except KdJaxError as err:
        raise KdJaxError(f"config.teachers.{n}.checkpoint: {err}") from None
    teachers_lib.check_fit(t, teachers_lib.as_module_variables(t, variables), t_vars[n],
                           plan.info.input_shape)


def _check_init_from_variables(plan: RunPlan, earlier: Mapping[str, RunPlan], shapes: _Shapes,
                               job_workdir: str | None, missing: bool) -> None:
  """Refuses ``config.init_from`` where the model it names is another model than the run's
  student, or does not take this run's data (the layers it would copy, classifier aside)."""
  cfg = plan.config
  path = cfg.init_from
  if path in earlier:
    if not earlier[path].trains:
      raise KdJaxError(f"config.init_from: run {path!r} trains nothing")
    source = _Backbone.trained(earlier[path], shapes, f"run {path!r}")
  else:
    source = _Backbone.stored(_init_from_path(path, job_workdir), "latest", shapes,
                              "config.init_from", missing, cfg.model)
  if source.model != cfg.model:
    raise KdJaxError(f"config.init_from: {source.source} holds a {source.model!r}, this run "
                     f"trains a {cfg.model!r}")
  own, _ = _student_shapes(plan, shapes)
  problem = source.variables and ckpt_lib.pretrained_mismatch(
      student_lib.backbone_variables(own, plan.heads), source.variables)
  if problem:
    raise KdJaxError(f"config.init_from: {source.source} does not hold this model on "
                     f"{_size(plan.info.input_shape)} images: {problem}")


def _check_init_from(cfg, earlier: Mapping[str, RunPlan], job_workdir: str | None) -> None:
  path = cfg.init_from
  if not path or path in earlier or os.path.exists(_init_from_path(path, job_workdir)):
    return
  raise KdJaxError(f"config.init_from: {path!r} is neither a run of this job nor a workdir "
                   f"that exists")


@dataclasses.dataclass(frozen=True)
class _Backbone:
  """A model read from a run of this job or a workdir (a downstream phase's backbone, what
  ``init_from`` copies): its name, and its variables (ShapeDtypeStructs, a multi-head
  student's heads dropped; None: random, or a checkpoint not there)."""
  model: str
  variables: Any
  source: str  # In words, for errors.
  path: str  # The workdir it is read from ("": random), as a fine-tuning run's init_from.

  @classmethod
  def trained(cls, run: RunPlan, shapes: _Shapes, source: str) -> "_Backbone":
    """The student that ``run`` (of this job) trains."""
    variables, _ = _student_shapes(run, shapes)
    return cls(run.config.model, student_lib.backbone_variables(variables, run.heads), source,
               run.workdir)

  @classmethod
  def stored(cls, path: str, which: str, shapes: _Shapes, field: str,
             missing: bool = False, model: str = "") -> "_Backbone":
    """The model in the kd_jax workdir ``path`` (``model``, unread, where ``missing`` and
    there is no checkpoint)."""
    if missing and not _has_checkpoint(path):
      return cls(model, None, path, path)
    try:
      variables, meta = shapes.stored(path, which)
    except KdJaxError as err:
      raise KdJaxError(f"{field}: {err}") from None
    return cls(meta.get("model") or model,
               student_lib.backbone_variables(variables, meta.get("heads")), path, path)

  @classmethod
  def of(cls, cfg, earlier: Mapping[str, RunPlan], shapes: _Shapes, missing: bool = False
         ) -> "_Backbone":
    """``config.downstream.backbone`` of a run that trains nothing: random, another run of
    this job or a workdir."""
    source = cfg.downstream.backbone
    if source == "random":
      return cls(cfg.model, None, f"a random {cfg.model}", "")
    if source in earlier:
      if not earlier[source].trains:
        raise KdJaxError(f"config.downstream.backbone: run {source!r} trains nothing")
      return cls.trained(earlier[source], shapes, f"run {source!r}")
    return cls.stored(source, cfg.downstream.which, shapes, "config.downstream.backbone",
                      missing, cfg.model)


def _plan_downstream(name: str, cfg, run_dir: str, earlier: Mapping[str, RunPlan],
                     shapes: _Shapes, backbone: _Backbone, job_workdir: str | None = None
                     ) -> RunPlan | None:
  """Checks that ``backbone`` takes the downstream data (its layers, the classifier aside,
  the shapes they have on it); returns the downstream fine-tuning run's plan (the
  backbone's model; of the job in ``job_workdir``, if any), checked like any run; None
  without ``finetune``."""
  ds = cfg.downstream
  sharding.check_batch_size(ds.batch_size, "config.downstream.batch_size")
  info = data_info.describe(ds.data)
  if not info.num_classes:
    raise KdJaxError(f"config.downstream.data: {ds.data.name!r} has no labels to evaluate on")
  model = backbone.model
  target, _ = shapes.outputs(
      student_lib.create(model, info.num_classes, dtype=jnp.dtype(cfg.dtype)),
      (model, info.num_classes, [], cfg.dtype), info.input_shape,
      "config.downstream.data.image_size")
  problem = backbone.variables and ckpt_lib.pretrained_mismatch(target, backbone.variables)
  if problem:
    raise KdJaxError(f"config.downstream.data: the {model} of {backbone.source} cannot take "
                     f"{ds.data.name}'s {_size(info.input_shape)} images: {problem}")
  if "finetune" not in ds.protocols:
    return None
  ft = config_lib.finetune_config(cfg, model, backbone.path)  # As downstream.evaluate's.
  try:
    config_lib.validate(ft)
    # missing_checkpoints: its init_from (the backbone, checked above) may be trained first.
    return _plan_run(f"{name}/finetune" if name else "finetune", ft,
                     os.path.join(run_dir, "downstream", config_lib.downstream_task_name(ds.data),
                                  "finetune"), {}, _Shapes(), job_workdir=job_workdir,
                     missing_checkpoints=True, fine_tuning=True)
  except KdJaxError as err:
    raise KdJaxError(f"config.downstream (its fine-tuning run): {err}") from None


def _run_shapes(plan: RunPlan, shapes: _Shapes, samplers, earlier: Mapping[str, RunPlan],
                check_heads: bool = True) -> tuple[Any, Any, Any, Any]:
  """The run's shapes: ``(params['adapters'], objective_state, (student Outputs, {teacher:
  Outputs}), {teacher: variables})``, after the teachers' variables are checked and every
  objective is traced on the shapes of the student's and the teachers' outputs (one-line
  errors: a teacher's variables that do not fit, a feature the model lacks, a connector
  that cannot bridge the shapes, a teacher without a head)."""
  input_shape = plan.info.input_shape
  c = plan.config
  _, s_out = _student_shapes(plan, shapes)
  t_vars, t_out, modules = {}, {}, plan.teacher_modules()
  for n, module in modules.items():
    t = plan.teachers[n]
    t_vars[n], t_out[n] = shapes.outputs(
        module, (t.model, t.num_classes, sorted(t.heads.items()), t.head, c.dtype), input_shape)
  _check_teacher_variables(plan, t_vars, earlier, shapes)
  adapters.check_teacher_heads(plan.objectives, t_out, modules)
  adapters.check_feature_kinds(plan.objectives, s_out, t_out, c.model,
                         {n: t.model for n, t in plan.teachers.items()})
  if check_heads:
    adapters.check_distillation_head(plan.objectives, s_out, c.model)
  example = example_batch(plan, host_inputs.specs(samplers, 2), 2)
  shape_of = lambda maps: [(m.shape, str(m.dtype)) for m in maps or []]
  params, state = {}, {}
  # Each objective is traced once per plan for the shapes it reads (e.g. CE and KD once for
  # every pair with 100 classes): a table's hundreds of runs are checked in seconds.
  for obj in plan.objectives:
    s_maps, t_maps = obj.select(s_out, t_out)
    key = repr((obj, shape_of(s_maps), shape_of(t_maps), s_out.logits.shape,
                [t_out[n].logits.shape for n in obj.teachers], plan.index_size,
                sorted((k, v.shape) for k, v in example.items()),
                [(plan.teachers[n].model, plan.teachers[n].num_classes) for n in obj.teachers]
                if obj.method.uses_teacher_head else None))
    p, st = shapes.checked(key, lambda obj=obj: jax.eval_shape(
        lambda rng, tv, b: adapters.init([obj], s_out, t_out, rng, plan.index_size, tv,
                                         modules, b),
        jax.random.PRNGKey(0), t_vars, example))
    params.update(p)
    state.update(st)
  return params, state, (s_out, t_out), t_vars


def _student_shapes(plan: RunPlan, shapes: _Shapes) -> tuple[Any, Outputs]:
  """``(variables, Outputs)`` of a run's student on its data (ShapeDtypeStructs)."""
  c = plan.config
  return shapes.outputs(plan.student(), (c.model, plan.num_classes, sorted(plan.heads.items()),
                                         c.dtype), plan.info.input_shape)


def example_batch(plan: RunPlan, host_specs: Mapping[str, jax.ShapeDtypeStruct],
                  batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """The shapes of a train batch of ``batch_size`` as the step reads it (float images)."""
  b = (batch_size,)
  out = {"image": jax.ShapeDtypeStruct(b + tuple(plan.info.input_shape), jnp.float32),
         "index": jax.ShapeDtypeStruct(b, jnp.int32), **host_specs}
  if plan.has_labels:
    out["label"] = jax.ShapeDtypeStruct(b, jnp.int32)
  if not plan.all_labeled:
    out["label_mask"] = jax.ShapeDtypeStruct(b, jnp.float32)
  return out


# -- Command-line overrides ----------------------------------------------------------------
_REPLACED_WHOLE = ("objectives", "teachers", "eval_tasks", "lr_scale")  # config._merge


def _sets(run_fields: Any, path: Sequence[str]) -> bool:
  """Whether a run's own fields set ``path`` (or a group above it that replaces it whole)."""
  head, *rest = path
  if not isinstance(run_fields, (dict, ml_collections.ConfigDict)) or head not in run_fields:
    return False
  value = run_fields[head]
  if (not rest or head in _REPLACED_WHOLE
      or not isinstance(value, (dict, ml_collections.ConfigDict))):
    return True
  return _sets(value, rest)


def check_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
  """Refuses, in one line, a command-line override of a top-level field that every run of the
  job sets for itself (it would change nothing)."""
  runs = config.get("runs") or {}
  if not runs:
    return
  for path in overrides:
    parts = path.split(".")
    if parts[0] == "runs":
      continue
    setters = [r for r, fields in runs.items() if _sets(fields, parts)]
    if len(setters) == len(runs):
      example = next(iter(runs))
      raise KdJaxError(
          f"--config.{path}: no run of this job reads it: every run sets {path} itself "
          f"({', '.join(setters)}); override one run's: --config.runs.{example}.{path}=...")

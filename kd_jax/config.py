"""The config schema (``base_config``) and its validation before anything compiles.

Every experiment is ``configs/<name>.py`` whose ``get_config()`` starts from
``base_config()`` and changes fields; ``--config.<field>=<value>`` overrides them.
A config may hold ``runs``: named runs that each override the base (e.g. a teacher,
a KD student and a scratch student), run in order in ``<workdir>/<run name>``. A run is the
top level with its own fields over it: ``--config.<field>`` reaches every run that does not
set the field, ``--config.runs.<run>.<field>`` one run, and an override that every run sets
(so no run reads it) is refused (``kd_jax.plan.check_overrides``).
"""
from __future__ import annotations

import copy
import importlib.util
import os
import re
from typing import Any

import ml_collections

from kd_jax.errors import KdJaxError

# Input preparation by name (kd_jax/data/augment.py); "" in a config: the data set's preset.
TRAIN_AUGMENTS = ("none", "cifar", "pad_crop", "inception")
EVAL_PREPROCESS = ("none", "center_crop")

# Free-form mappings: their entries are checked by their own parsers.
_FREE_FORM = ("teachers", "objectives", "runs", "eval_tasks")
_TEACHER_FIELDS = {"model", "checkpoint", "run", "num_classes", "which", "head"}


def data_config() -> ml_collections.ConfigDict:
  """The fields of a data set (``config.data``, ``config.downstream.data``)."""
  c = ml_collections.ConfigDict()
  c.name = "sklearn_digits"  # A TFDS name, "a+b" (a union), or "folder:<path>" (docs: Data).
  c.data_dir = ""          # "": $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.train_split = "train"  # A TFDS split; slices like "train[:90%]" work.
  c.eval_split = "test"    # The split evaluated after each eval_every_epochs.
  c.image_size = -1        # -1: the data set's preset (digits 8, CIFAR 32, ImageNet 224).
  c.channels = 0           # 0: as stored; 3 repeats a 1-channel image.
  c.train_augment = ""     # "": preset; none | cifar | pad_crop | inception.
  c.eval_preprocess = ""   # "": preset; none | center_crop.
  c.augment_on = ""        # "": preset (CIFAR: device); host | device: train images go to the
                           # step as uint8, cropped, flipped and normalised there (none,
                           # cifar, pad_crop; not for unions).
  c.mean = ()              # Per-channel mean subtracted (one value: every channel); (): the
                           # data set's preset (digits, CIFAR, ImageNet), else 0.5.
  c.std = ()               # Per-channel std divided by (set with mean); (): as mean.
  c.unlabeled = False      # Proxy data: labels dropped, example index kept.
  c.unlabeled_parts = ()   # A union "a+b": the data sets whose train labels are dropped (the
                           # proxy beside a labelled target set; batches get label_mask).
  c.labeled_fraction = 1.0  # < 1: only this random fraction of train labels is used (the
                            # rest is unlabelled data for the teachers' losses; label_mask).
  c.labeled_seed = 0        # The seed of that fraction's draw (the same labels for every run).
  c.classes = ()           # Class ids to keep (relabelled 0..n-1 in this order); (): all.
  c.download = True        # False: a data set not prepared fails at once (offline).
  c.cache = True           # Decoded images cached in memory by tf.data.
  c.num_train_examples = -1  # -1: from the TFDS metadata (set it only where that has no
                             # split sizes, e.g. under tfds.testing.mock_data).
  c.num_eval_examples = -1   # -1: from the TFDS metadata (as num_train_examples).
  return c


def optimizer_config() -> ml_collections.ConfigDict:
  """The fields of an optimiser (``config.optimizer``, ``config.downstream.optimizer``)."""
  c = ml_collections.ConfigDict()
  c.name = "sgd"      # sgd | adam (PyTorch-style: wd added to the gradient) | adamw.
  c.lr = 0.05         # The peak learning rate (for lr_reference_batch).
  c.lr_reference_batch = 64  # lr is for this global batch, scaled linearly; 0: no scaling.
  c.momentum = 0.9    # SGD's momentum; Adam's and AdamW's b1.
  c.nesterov = False  # SGD with Nesterov momentum.
  c.weight_decay = 5e-4  # sgd, adam: L2 added to the gradient; adamw: decoupled.
  c.decay = "all"     # all | timm: none on biases, norm scales, tokens and position embeddings (DeiT).
  c.schedule = "step"  # step | cosine | constant.
  c.decay_epochs = (150, 180, 210)  # step: lr *= decay_factor after these epochs.
  c.decay_factor = 0.1  # step: the factor at each of decay_epochs.
  c.warmup_epochs = 0.0  # Linear warm-up from 0 over these epochs (fractions allowed).
  c.clip_norm = 0.0   # > 0: gradients clipped to this global norm first (big_vision's grad_clip_norm).
  c.lr_scale = ml_collections.ConfigDict()  # Parameter path prefix -> lr multiplier, e.g.
  return c                                  # {"student/fc": 10, "adapters/cfl": 5}.


def downstream_config() -> ml_collections.ConfigDict:
  """Transfer evaluation of a trained backbone on another data set (``kd_jax.evaluate``, or
  after training when ``config.downstream.data.name`` is set)."""
  c = ml_collections.ConfigDict()
  c.data = data_config()
  c.data.name = ""               # "": no downstream evaluation.
  c.protocols = ("linear_probe", "finetune")  # Either or both.
  c.backbone = ""                # "": the trained run's student; "random": config.model,
                                 # randomly initialised (the from-scratch baseline); else
                                 # another run of the job (its name) or a run's workdir:
                                 # that model is evaluated, nothing is trained.
  c.which = "latest"             # latest | best: which checkpoint of the backbone's run.
  # Linear probe on frozen pooled features: logistic regression (L-BFGS), its L2 weight
  # chosen on a validation split held out of the train split, then refit on all of it.
  c.validation_fraction = 0.2    # Linear probe: the part of the train split held out.
  c.probe_l2 = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # Linear probe: the L2 weights tried.
  c.probe_steps = 300            # Linear probe: L-BFGS iterations.
  # Fine-tuning: the whole backbone and a new classifier, trained with ce.
  c.num_epochs = 30              # Fine-tuning's epochs.
  c.batch_size = 64              # Fine-tuning's batch.
  c.optimizer = optimizer_config()
  c.optimizer.lr = 0.01          # Fine-tuning's learning rate.
  c.optimizer.schedule = "cosine"  # Fine-tuning's schedule.
  return c


def from_file(path: str) -> ml_collections.ConfigDict:
  """The config of ``path[:arg]``, as ``--config=path[:arg]`` loads it (notebooks, scripts):
  ``from_file("configs/cifar100/crd.py:vgg13-MobileNetV2")``."""
  file, _, arg = path.partition(":") if not os.path.exists(path) else (path, "", "")
  if not os.path.exists(file):
    raise KdJaxError(f"config file {file!r} does not exist")
  spec = importlib.util.spec_from_file_location("kd_jax_config_file", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def base_config() -> ml_collections.ConfigDict:
  """Every field a run understands, with its default."""
  c = ml_collections.ConfigDict()
  c.seed = 0                    # Initialisation, data order, augmentation and the step's draws.
  c.seeds = ()                  # Seeds trained side by side, one vmapped step for all, e.g.
                                # (0, 1, 2); each seed written as a run of its own in
                                # <run>_seed<k> (seed<k> for a job's one unnamed run).
                                # (): one seed, config.seed (docs, Seeds side by side).
  c.seed_batches = "shared"     # With seeds: "shared": every seed reads the same batches
                                # (order and augmentation from config.seed; the teachers
                                # run once for all seeds); "independent": each seed its own
                                # order and augmentation, as a run of that seed alone.
  c.seed_compute = "auto"       # With seeds: "vmap": one batched step for all seeds (fills
                                # an accelerator); "loop": the teachers batched, then each
                                # seed's student in turn (a lone seed's shapes and cost);
                                # "auto": loop on CPU, vmap elsewhere.
  c.model = "resnet8"           # The student (or the model trained, with no teacher).
  c.num_classes = -1            # -1: the data set's number of classes.
  c.dtype = "float32"           # bfloat16: student and teachers compute in bfloat16
                                # (parameters, optimiser state and losses stay float32).
  c.init_from = ""              # A run's workdir: start from its model's weights (every
                                # layer but the classifier); "": random initialisation.
  c.data = data_config()

  c.batch_size = 64             # Global, over all devices and processes.
  c.eval_batch_size = -1        # -1: batch_size.
  c.num_epochs = 30             # Epochs of the main phase.

  c.optimizer = optimizer_config()

  c.teachers = ml_collections.ConfigDict()    # name -> dict(model, checkpoint | run, which,
                                # head: of a consolidated student, the head read as logits).
  c.objectives = ml_collections.ConfigDict({"ce": {"weight": 1.0}})  # name -> dict(weight,
                                # loss (default: the name), teacher, student_feature,
                                # teacher_feature, hyperparameters): docs, Methods.
  c.method_modules = ()         # Modules that register methods of your own, imported before
                                # the objectives are read: module names on sys.path or
                                # paths of .py files (docs, "Adding a method").
  c.student_heads = ()          # Teacher names: a Linear head per teacher on the student's
                                # pooled feature (representation consolidation).
  c.eval_head = ""              # "": evaluate the model's classifier; a head's teacher name.
  c.eval_tasks = ml_collections.ConfigDict()  # name -> class ids: accuracy_<name> over the
                                # examples of those classes, the logits restricted to them.
  c.downstream = downstream_config()
  c.teacher_cache = ""          # "": the teachers run in every step. "memory" or a directory:
                                # the outputs the objectives read are computed once over
                                # the train split (no random augmentation) and read by
                                # example index (kd_jax/training/teacher_cache.py).

  c.skip_nonfinite_steps = False  # False: a NaN/Inf loss or gradient stops the run (the last
                                # good checkpoint kept). True: that step is skipped (no
                                # update) and counted in train/skipped_steps.
  c.log_every_steps = 50        # Train metrics reported (console, TensorBoard) every N steps.
  c.checkpoint_every_steps = -1  # -1: at the end of every epoch.
  c.keep_checkpoints = 3        # The newest N checkpoints kept.
  c.eval_every_epochs = 1       # Evaluation on data.eval_split every N epochs (and at the end).

  c.side_by_side = ""           # A job's runs <g>_seed<k> that differ only in their seed: ""
                                # trained one by one; "shared" or "independent": as one run
                                # <g> of those seeds side by side (config.seeds), written to
                                # the same folders.
  c.runs = ml_collections.ConfigDict()  # name -> overrides of the fields above: each run is
                                # the top level with its own fields over it (docs, Configs).
  # A job's published numbers to compare with: rows (table, row, seed group or run name,
  # published top-1 %, -1 where none was published); the job writes table.md and table.json.
  c.published = ()
  c.published_source = ""      # Where the published numbers come from (printed with them).
  return c


def downstream_task_name(data_cfg) -> str:
  """A folder name for a downstream data set (``oxford_flowers102``, ``sklearn_digits_3``...)."""
  name = data_cfg.name + ("_" + "_".join(map(str, data_cfg.classes)) if data_cfg.classes else "")
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def finetune_config(config: ml_collections.ConfigDict, model: str, init_from: str
                    ) -> ml_collections.ConfigDict:
  """The run that fine-tunes ``model`` (from ``init_from``; "" = from scratch) on the
  downstream data: cross-entropy, no teachers, the downstream optimiser and schedule."""
  ds = config.downstream
  c = base_config()
  c.seed = config.seed
  c.model = model
  c.dtype = config.dtype
  c.init_from = init_from
  c.data = copy.deepcopy(ds.data)
  c.batch_size = ds.batch_size
  c.num_epochs = ds.num_epochs
  c.eval_every_epochs = ds.num_epochs
  c.optimizer = copy.deepcopy(ds.optimizer)
  c.log_every_steps = config.log_every_steps
  return c


def _check_keys(cfg: Any, schema: Any, path: str) -> None:
  for key in cfg.keys():
    where = f"{path}.{key}"
    if key not in schema:
      close = [k for k in schema.keys() if k.lower().startswith(key.lower()[:3])]
      hint = f" (did you mean {close[0]}?)" if close else ""
      raise KdJaxError(f"unknown config field {where}{hint}")
    if (key in _FREE_FORM and path == "config") or key == "lr_scale":
      continue
    if isinstance(schema[key], ml_collections.ConfigDict):
      if not isinstance(cfg[key], (ml_collections.ConfigDict, dict)):
        raise KdJaxError(f"{where} must be a group of fields, got {cfg[key]!r}")
      _check_keys(cfg[key], schema[key], where)


def _merge(base: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
  out = copy.deepcopy(base.to_dict())

  def update(dst, src, path):
    for k, v in src.items():
      if isinstance(v, (dict, ml_collections.ConfigDict)) and isinstance(dst.get(k), dict) \
          and k not in ("objectives", "teachers", "eval_tasks", "lr_scale"):
        update(dst[k], dict(v), f"{path}.{k}")
      else:
        dst[k] = v.to_dict() if isinstance(v, ml_collections.ConfigDict) else v
  update(out, dict(overrides), "config")
  return ml_collections.ConfigDict(out)


def side_by_side(runs: dict[str, ml_collections.ConfigDict], mode: str
                 ) -> dict[str, ml_collections.ConfigDict]:
  """``runs`` with each group of runs ``<g>_seed<k>`` (seed ``k``) that differ in nothing but
  their seed made one run ``<g>`` of those seeds side by side (``seeds``, ``seed_batches =
  mode``), written to the same folders. A group stays as it is where a run of seeds would
  be refused (a teacher cache, init_from, a downstream phase) or where another run reads
  one of its runs' model (``downstream.backbone``, ``init_from``)."""
  if mode not in ("shared", "independent"):
    raise KdJaxError(f"config.side_by_side must be '', shared or independent, got {mode!r}")
  read = {r.downstream.backbone for r in runs.values()} | {r.init_from for r in runs.values()}
  groups: dict[str, dict[int, str]] = {}
  for name, run in runs.items():
    match = re.fullmatch(r"(.+)_seed(\d+)", name)
    if match and run.seed == int(match.group(2)) and not run.seeds:
      groups.setdefault(match.group(1), {})[run.seed] = name
  out, done = {}, set()
  for name, run in runs.items():
    group = re.sub(r"_seed\d+$", "", name)
    members = groups.get(group, {})
    if name in done or len(members) < 2 or group in runs:
      if name not in done:
        out[name] = run
      continue
    alike = lambda r: {**r.to_dict(), "seed": 0}
    first = runs[members[min(members)]]
    ok = (all(alike(runs[m]) == alike(first) for m in members.values())
          and not (first.teacher_cache or first.init_from or first.downstream.data.name)
          and not read & set(members.values()))
    if not ok:
      out[name] = run
      continue
    merged = copy.deepcopy(first)
    merged.seeds, merged.seed_batches, merged.seed = tuple(sorted(members)), mode, min(members)
    out[group] = merged
    done |= set(members.values())
  return out


def expand_runs(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """``{run name: full config}``; a config without ``runs`` is the single run ``''``."""
  if not config.get("runs"):
    return {"": config}
  base = copy.deepcopy(config)
  base.runs = ml_collections.ConfigDict()
  runs = {name: _merge(base, overrides) for name, overrides in config.runs.items()}
  for name, run in runs.items():  # A job's teacher_cache is for the runs that read teachers.
    if not run.teachers and "teacher_cache" not in config.runs[name]:
      run.teacher_cache = ""
  if config.get("side_by_side"):
    runs = side_by_side(runs, config.side_by_side)
  # Runs that train a model go before the runs that read it (as a teacher, init_from or
  # downstream.backbone; ConfigDict sorts keys).
  ordered: dict[str, ml_collections.ConfigDict] = {}

  def visit(name, chain):
    if name in ordered or name not in runs:
      return
    if name in chain:
      raise KdJaxError(f"config.runs: the runs read each other's models in a cycle "
                       f"(teachers, init_from, downstream.backbone): "
                       f"{' -> '.join(chain + (name,))}")
    for t in runs[name].teachers.values():
      if isinstance(t, (dict, ml_collections.ConfigDict)) and t.get("run"):
        visit(seeded_run(t["run"], runs)[0], chain + (name,))
    visit(runs[name].downstream.backbone, chain + (name,))  # A run evaluating another's model.
    visit(runs[name].init_from, chain + (name,))  # A run starting from another's model.
    ordered[name] = runs[name]

  for name in runs:
    visit(name, ())
  return ordered


def validated_runs(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """``expand_runs``, each run validated (a run may read the runs before it)."""
  runs = expand_runs(config)
  names = list(runs)
  for i, cfg in enumerate(runs.values()):
    validate(cfg, run_names=run_names({n: runs[n] for n in names[:i]}))
  return runs


def validate(config: ml_collections.ConfigDict, run_names=()) -> None:
  """Checks names, types and ranges of a single run's config; raises a one-line KdJaxError."""
  schema = base_config()
  _check_keys(config, schema, "config")
  _check_scalars(config)
  _check_optimizer(config.optimizer, "config.optimizer")
  from kd_jax import methods, models  # Late: they import jax.
  methods.import_modules(config.method_modules)
  if config.model not in models.names():
    raise KdJaxError(f"config.model: unknown model {config.model!r}; valid names: "
                     f"{', '.join(models.names())}")
  _check_teachers(config, run_names, models.names())
  _check_heads_and_tasks(config)
  _check_downstream(config.downstream)


def _is_number(value: Any) -> bool:
  """An int or a float, not a bool (True is 1 to Python, never a number of a config)."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _check_scalars(config: ml_collections.ConfigDict) -> None:
  for key in ("batch_size", "num_epochs", "log_every_steps", "keep_checkpoints",
              "eval_every_epochs"):
    value = config[key]
    if not _is_int(value) or value < 1:
      raise KdJaxError(f"config.{key} must be an integer >= 1, got {value!r}")
  for key in ("eval_batch_size", "checkpoint_every_steps", "num_classes"):
    value = config[key]
    if not _is_int(value) or (value < 1 and value != -1):
      raise KdJaxError(f"config.{key} must be an integer >= 1, or -1 for the default; got {value!r}")
  _check_data(config.data, "config.data")
  _check_published(config.published)
  fraction = config.data.labeled_fraction
  if not _is_number(fraction) or not 0.0 < fraction <= 1.0:
    raise KdJaxError(f"config.data.labeled_fraction must be a number in (0, 1], got {fraction!r}")
  if not isinstance(config.skip_nonfinite_steps, bool):
    raise KdJaxError(f"config.skip_nonfinite_steps must be True or False, got "
                     f"{config.skip_nonfinite_steps!r}")
  if not isinstance(config.teacher_cache, str):
    raise KdJaxError(f"config.teacher_cache must be '', 'memory' or a directory, got "
                     f"{config.teacher_cache!r}")
  if config.dtype not in ("float32", "bfloat16"):
    raise KdJaxError(f"config.dtype must be float32 or bfloat16, got {config.dtype!r}")
  _check_seeds(config)


def _check_seeds(config: ml_collections.ConfigDict) -> None:
  seeds = config.seeds
  if (isinstance(seeds, (str, int)) or not all(_is_int(k) and k >= 0 for k in seeds)
      or len(set(seeds)) != len(seeds)):
    raise KdJaxError(f"config.seeds must be a list of distinct integers >= 0 (or () for one "
                     f"seed, config.seed), got {seeds!r}")
  if config.side_by_side not in ("", "shared", "independent"):
    raise KdJaxError(f"config.side_by_side must be '', shared or independent, got "
                     f"{config.side_by_side!r}")
  if config.seed_batches not in ("shared", "independent"):
    raise KdJaxError(f"config.seed_batches must be shared or independent, got "
                     f"{config.seed_batches!r}")
  if config.seed_compute not in ("auto", "vmap", "loop"):
    raise KdJaxError(f"config.seed_compute must be auto, vmap or loop, got "
                     f"{config.seed_compute!r}")
  if not seeds:
    return
  refused = (("teacher_cache", config.teacher_cache, "the teachers' cached outputs are read "
              "for one data order"),
             ("init_from", config.init_from, "set it on single-seed runs"),
             ("downstream.data.name", config.downstream.data.name, "evaluate each seed's "
              "<run>_seed<k> downstream in a run of its own"))
  for field, value, why in refused:
    if value:
      raise KdJaxError(f"config.seeds: a run of several seeds takes no config.{field} "
                       f"({value!r}): {why}")


def seed_run_name(run: str, seed: int) -> str:
  """The name (and folder) of seed ``seed`` of run ``run`` trained with ``config.seeds``."""
  return f"{run}_seed{seed}" if run else f"seed{seed}"


def run_names(runs: dict[str, ml_collections.ConfigDict]) -> list[str]:
  """The names that later runs can read as teachers: each run's, and ``<run>_seed<k>`` for
  each seed of a run with ``seeds``."""
  out = []
  for name, cfg in runs.items():
    out += [seed_run_name(name, k) for k in cfg.get("seeds", ())] or [name]
  return out


def seeded_run(name: str, runs) -> tuple[str, int | None]:
  """``(run, seed)`` of a run name: ``(name, None)`` for a run of ``runs``, ``(run, k)`` for
  ``<run>_seed<k>`` of a run with ``seeds`` that include ``k``."""
  match = re.fullmatch(r"(.+)_seed(\d+)", name)
  if name not in runs and match and match.group(1) in runs and \
      int(match.group(2)) in tuple(runs[match.group(1)].get("seeds", ())):
    return match.group(1), int(match.group(2))
  return name, None


def _check_teachers(config: ml_collections.ConfigDict, run_names, model_names) -> None:
  for name, teacher in config.teachers.items():
    where = f"config.teachers.{name}"
    if not isinstance(teacher, (dict, ml_collections.ConfigDict)):
      raise KdJaxError(f"{where} must be dict(model=..., checkpoint=... or run=...)")
    unknown = set(teacher.keys()) - _TEACHER_FIELDS
    if unknown:
      raise KdJaxError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; "
                       f"valid: {', '.join(sorted(_TEACHER_FIELDS))}")
    if teacher.get("model") not in model_names:
      raise KdJaxError(f"{where}.model: unknown model {teacher.get('model')!r}; valid names: "
                       f"{', '.join(model_names)}")
    if bool(teacher.get("checkpoint")) == bool(teacher.get("run")):
      raise KdJaxError(f"{where}: give exactly one of checkpoint=<dir> or run=<earlier run name>")
    if teacher.get("run") and teacher["run"] not in run_names:
      raise KdJaxError(f"{where}.run: {teacher['run']!r} is not an earlier run of this config "
                       f"(runs: {', '.join(run_names) or 'none'})")
    if not isinstance(teacher.get("head", ""), str):
      raise KdJaxError(f"{where}.head must be the name of a head of a consolidated student, got "
                       f"{teacher['head']!r}")
    if teacher.get("which", "latest") not in ("latest", "best"):
      raise KdJaxError(f"{where}.which must be latest or best, got {teacher['which']!r}")


def _check_heads_and_tasks(config: ml_collections.ConfigDict) -> None:
  heads = config.student_heads
  if isinstance(heads, str) or not all(isinstance(h, str) for h in heads):
    raise KdJaxError(f"config.student_heads must be a list of teacher names, got {heads!r}")
  for h in heads:
    if h not in config.teachers:
      raise KdJaxError(f"config.student_heads: {h!r} is not a configured teacher "
                       f"(config.teachers: {', '.join(config.teachers) or 'none'})")
  if len(set(heads)) != len(heads):
    raise KdJaxError(f"config.student_heads lists a teacher twice: {list(heads)}")
  if config.eval_head and config.eval_head not in heads:
    raise KdJaxError(f"config.eval_head: {config.eval_head!r} is not one of "
                     f"config.student_heads ({', '.join(heads) or 'none'})")
  for name, classes in config.eval_tasks.items():
    if not name.isidentifier():
      raise KdJaxError(f"config.eval_tasks: {name!r} must be a name (letters, digits, _)")
    if (not isinstance(classes, (list, tuple)) or not classes
        or not all(_is_int(c) and c >= 0 for c in classes)):
      raise KdJaxError(f"config.eval_tasks.{name} must be a list of class ids, got {classes!r}")


def _check_downstream(ds: ml_collections.ConfigDict) -> None:
  if ds.data.name:
    bad = set(ds.protocols) - {"linear_probe", "finetune"}
    if bad or not ds.protocols or isinstance(ds.protocols, str):
      raise KdJaxError(f"config.downstream.protocols must list linear_probe and/or finetune, "
                       f"got {ds.protocols!r}")
    if not isinstance(ds.backbone, str):
      raise KdJaxError(f"config.downstream.backbone must be '', 'random', a run name or a "
                       f"workdir, got {ds.backbone!r}")
    if ds.which not in ("latest", "best"):
      raise KdJaxError(f"config.downstream.which must be latest or best, got {ds.which!r}")
    if not isinstance(ds.validation_fraction, float) or not 0.0 < ds.validation_fraction < 1.0:
      raise KdJaxError(f"config.downstream.validation_fraction must be in (0, 1), got "
                       f"{ds.validation_fraction!r}")
    l2 = ds.probe_l2
    if (isinstance(l2, str) or not l2
        or not all(_is_number(v) and v >= 0 for v in l2)):
      raise KdJaxError(f"config.downstream.probe_l2 must be a list of numbers >= 0, got {l2!r}")
    for key in ("probe_steps", "num_epochs", "batch_size"):
      value = ds[key]
      if not _is_int(value) or value < 1:
        raise KdJaxError(f"config.downstream.{key} must be an integer >= 1, got {value!r}")
    _check_optimizer(ds.optimizer, "config.downstream.optimizer")


def _check_published(rows) -> None:
  for row in rows:
    ok = (isinstance(row, (tuple, list)) and len(row) == 4
          and all(isinstance(v, str) for v in row[:3])
          and _is_number(row[3]))
    if not ok:
      raise KdJaxError(f"config.published: each row must be (table, row, seed group or run, "
                       f"published % or -1), got {row!r}")


def _check_data(data, where: str) -> None:
  parts = tuple(data.get("unlabeled_parts", ()) or ())
  if parts:
    names = str(data.get("name", "")).split("+")
    if (isinstance(data.get("unlabeled_parts"), str) or data.get("unlabeled")
        or not set(parts) < set(names)):
      raise KdJaxError(f"{where}.unlabeled_parts must list some (not all) of the data sets "
                       f"joined in {where}.name ({data.get('name')!r}), with "
                       f"{where}.unlabeled False; got {parts!r}")
  for field, valid in (("train_augment", TRAIN_AUGMENTS), ("eval_preprocess", EVAL_PREPROCESS)):
    value = data.get(field)
    if value not in (None, "") and value not in valid:
      raise KdJaxError(f"{where}.{field} must be one of {', '.join(valid)} (or '' for the data "
                       f"set's preset), got {value!r}")
  on = data.get("augment_on")
  if on not in (None, "", "host", "device"):
    raise KdJaxError(f"{where}.augment_on must be host or device (or '' for the data set's "
                     f"preset), got {on!r}")
  if on == "device" and (data.get("train_augment") == "inception" or "+" in str(data.get("name"))):
    raise KdJaxError(f"{where}.augment_on='device' takes one data set with train_augment none, "
                     f"cifar or pad_crop (inception crops and unions are prepared on the host)")
  mean, std = tuple(data.get("mean", ()) or ()), tuple(data.get("std", ()) or ())
  if (len(mean) != len(std) or not all(_is_number(v) for v in mean + std)
      or any(not v > 0 for v in std)):
    raise KdJaxError(f"{where}.mean and {where}.std must be set together, as equally long lists "
                     f"of numbers (std > 0), got {list(mean)} and {list(std)}")
  size = data.get("image_size", -1)
  if size not in (None, -1) and (not _is_int(size) or size < 1):
    raise KdJaxError(f"{where}.image_size must be an integer >= 1, or -1 for the data set's "
                     f"preset; got {size!r}")


def _check_optimizer(opt, where: str) -> None:
  if opt.name not in ("sgd", "adam", "adamw"):
    raise KdJaxError(f"{where}.name must be sgd, adam or adamw, got {opt.name!r}")
  for prefix, scale in opt.lr_scale.items():
    if not prefix.startswith(("student", "adapters", "aux")):  # aux: the old name.
      raise KdJaxError(f"{where}.lr_scale: {prefix!r} must be a parameter path starting with "
                       f"student or adapters (e.g. student/fc, adapters/<objective>)")
    if not _is_number(scale) or not scale >= 0:  # NaN too.
      raise KdJaxError(f"{where}.lr_scale.{prefix} must be a number >= 0, got {scale!r}")
  if opt.get("decay", "all") not in ("all", "timm"):
    raise KdJaxError(f"{where}.decay must be all or timm, got {opt.decay!r}")
  clip = opt.get("clip_norm", 0.0)
  if not _is_number(clip) or not clip >= 0:
    raise KdJaxError(f"{where}.clip_norm must be a number >= 0 (0: no clipping), got {clip!r}")
  if opt.schedule not in ("step", "cosine", "constant"):
    raise KdJaxError(f"{where}.schedule must be step, cosine or constant, got {opt.schedule!r}")
  if not _is_number(opt.lr) or not opt.lr > 0:  # NaN too.
    raise KdJaxError(f"{where}.lr must be a number > 0, got {opt.lr!r}")
  for key, ok, what in (("momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
                        ("weight_decay", lambda v: v >= 0, ">= 0"),
                        ("decay_factor", lambda v: v > 0, "> 0"),
                        ("warmup_epochs", lambda v: v >= 0, ">= 0")):
    value = opt.get(key)
    if not _is_number(value) or not ok(value):  # NaN fails every comparison.
      raise KdJaxError(f"{where}.{key} must be a number {what}, got {value!r}")
  batch = opt.get("lr_reference_batch")
  if not _is_int(batch) or batch < 0:
    raise KdJaxError(f"{where}.lr_reference_batch must be an integer >= 0 (0: no scaling), "
                     f"got {batch!r}")
  epochs = tuple(opt.get("decay_epochs") or ())
  if not all(_is_number(e) and e >= 0 for e in epochs):
    raise KdJaxError(f"{where}.decay_epochs must be a list of epochs >= 0, got {list(epochs)}")

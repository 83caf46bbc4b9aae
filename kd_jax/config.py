"""The config schema (``base_config``) and its validation before anything compiles.

Every experiment is ``configs/<name>.py`` whose ``get_config()`` starts from
``base_config()`` and changes fields; ``--config.<field>=<value>`` overrides them.
A config may hold ``runs``: named runs that each override the base (e.g. a teacher,
a KD student and a scratch student), run in order in ``<workdir>/<run name>``.
"""
from __future__ import annotations

import copy
from typing import Any

import ml_collections

from kd_jax.errors import KdJaxError

# Free-form mappings: their entries are checked by their own parsers.
_FREE_FORM = ("teachers", "objectives", "runs")
_TEACHER_FIELDS = {"model", "checkpoint", "run", "num_classes", "which"}


def base_config() -> ml_collections.ConfigDict:
  """Every field a run understands, with its default."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = "resnet8"           # The student (or the model trained, with no teacher).
  c.num_classes = -1            # -1: the data set's number of classes.
  c.dtype = "float32"

  c.data = ml_collections.ConfigDict()
  c.data.name = "sklearn_digits"
  c.data.data_dir = ""          # "": $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = -1        # -1: the data set's preset (digits 8, CIFAR 32, ImageNet 224).
  c.data.channels = 0           # 0: as stored; 3 repeats a 1-channel image.
  c.data.train_augment = ""     # "": preset; none | cifar | pad_crop | inception.
  c.data.eval_preprocess = ""   # "": preset; none | center_crop.
  c.data.unlabeled = False      # Proxy data: labels dropped, example index kept.
  c.data.labeled_fraction = 1.0  # < 1: only this random fraction of train labels is used
  c.data.labeled_seed = 0        # (the rest is unlabelled data for the teacher's losses).
  c.data.download = True
  c.data.cache = True
  c.data.num_train_examples = -1  # -1: from the TFDS metadata (set it only where that has
  c.data.num_eval_examples = -1   # no split sizes, e.g. under tfds.testing.mock_data).

  c.batch_size = 64             # Global, over all devices and processes.
  c.eval_batch_size = -1        # -1: batch_size.
  c.num_epochs = 30

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"      # sgd (PyTorch-style: wd added to the gradient) | adamw.
  c.optimizer.lr = 0.05
  c.optimizer.lr_reference_batch = 64  # lr is for this global batch, scaled linearly; 0: no scaling.
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "step"  # step | cosine | constant.
  c.optimizer.decay_epochs = (150, 180, 210)  # step: lr *= decay_factor after these epochs.
  c.optimizer.decay_factor = 0.1
  c.optimizer.warmup_epochs = 0.0

  c.teachers = ml_collections.ConfigDict()    # name -> dict(model, checkpoint | run, which).
  c.objectives = ml_collections.ConfigDict({"ce": {"weight": 1.0}})

  c.log_every_steps = 50
  c.checkpoint_every_steps = -1  # -1: at the end of every epoch.
  c.keep_checkpoints = 3
  c.eval_every_epochs = 1

  c.runs = ml_collections.ConfigDict()  # name -> overrides of the fields above.
  return c


def _check_keys(cfg: Any, schema: Any, path: str) -> None:
  for key in cfg.keys():
    where = f"{path}.{key}"
    if key not in schema:
      close = [k for k in schema.keys() if k.lower().startswith(key.lower()[:3])]
      hint = f" (did you mean {close[0]}?)" if close else ""
      raise KdJaxError(f"unknown config field {where}{hint}")
    if key in _FREE_FORM and path == "config":
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
          and k not in ("objectives", "teachers"):
        update(dst[k], dict(v), f"{path}.{k}")
      else:
        dst[k] = v.to_dict() if isinstance(v, ml_collections.ConfigDict) else v
  update(out, dict(overrides), "config")
  return ml_collections.ConfigDict(out)


def expand_runs(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """``{run name: full config}``; a config without ``runs`` is the single run ``''``."""
  if not config.get("runs"):
    return {"": config}
  base = copy.deepcopy(config)
  base.runs = ml_collections.ConfigDict()
  runs = {name: _merge(base, overrides) for name, overrides in config.runs.items()}
  # Runs that train a teacher go before the runs that read it (ConfigDict sorts keys).
  ordered: dict[str, ml_collections.ConfigDict] = {}

  def visit(name, chain):
    if name in ordered or name not in runs:
      return
    if name in chain:
      raise KdJaxError(f"config.runs: teachers form a cycle: {' -> '.join(chain + (name,))}")
    for t in runs[name].teachers.values():
      if isinstance(t, (dict, ml_collections.ConfigDict)) and t.get("run"):
        visit(t["run"], chain + (name,))
    ordered[name] = runs[name]

  for name in runs:
    visit(name, ())
  return ordered


def validate(config: ml_collections.ConfigDict, run_names=()) -> None:
  """Checks names, types and ranges of a single run's config; raises a one-line KdJaxError."""
  schema = base_config()
  _check_keys(config, schema, "config")
  for key in ("batch_size", "num_epochs", "log_every_steps", "keep_checkpoints",
              "eval_every_epochs"):
    value = config[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise KdJaxError(f"config.{key} must be an integer >= 1, got {value!r}")
  for key in ("eval_batch_size", "checkpoint_every_steps", "num_classes"):
    value = config[key]
    if not isinstance(value, int) or (value < 1 and value != -1):
      raise KdJaxError(f"config.{key} must be an integer >= 1, or -1 for the default; got {value!r}")
  fraction = config.data.labeled_fraction
  if not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
    raise KdJaxError(f"config.data.labeled_fraction must be a number in (0, 1], got {fraction!r}")
  if config.dtype not in ("float32", "bfloat16"):
    raise KdJaxError(f"config.dtype must be float32 or bfloat16, got {config.dtype!r}")
  opt = config.optimizer
  if opt.name not in ("sgd", "adamw"):
    raise KdJaxError(f"config.optimizer.name must be sgd or adamw, got {opt.name!r}")
  if opt.schedule not in ("step", "cosine", "constant"):
    raise KdJaxError(f"config.optimizer.schedule must be step, cosine or constant, got {opt.schedule!r}")
  if not isinstance(opt.lr, (int, float)) or opt.lr <= 0:
    raise KdJaxError(f"config.optimizer.lr must be a number > 0, got {opt.lr!r}")
  from kd_jax import models  # Late: models import jax.
  if config.model not in models.names():
    raise KdJaxError(f"config.model: unknown model {config.model!r}; valid names: "
                     f"{', '.join(models.names())}")
  for name, teacher in config.teachers.items():
    where = f"config.teachers.{name}"
    if not isinstance(teacher, (dict, ml_collections.ConfigDict)):
      raise KdJaxError(f"{where} must be dict(model=..., checkpoint=... or run=...)")
    unknown = set(teacher.keys()) - _TEACHER_FIELDS
    if unknown:
      raise KdJaxError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; "
                       f"valid: {', '.join(sorted(_TEACHER_FIELDS))}")
    if teacher.get("model") not in models.names():
      raise KdJaxError(f"{where}.model: unknown model {teacher.get('model')!r}; valid names: "
                       f"{', '.join(models.names())}")
    if bool(teacher.get("checkpoint")) == bool(teacher.get("run")):
      raise KdJaxError(f"{where}: give exactly one of checkpoint=<dir> or run=<earlier run name>")
    if teacher.get("run") and teacher["run"] not in run_names:
      raise KdJaxError(f"{where}.run: {teacher['run']!r} is not an earlier run of this config "
                       f"(runs: {', '.join(run_names) or 'none'})")
    if teacher.get("which", "latest") not in ("latest", "best"):
      raise KdJaxError(f"{where}.which must be latest or best, got {teacher['which']!r}")

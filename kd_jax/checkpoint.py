"""Checkpoints with orbax.

``<workdir>/checkpoints/<step>/{state,meta}``: the train state (``TrainState.CHECKPOINTED``
plus the step RNG key) as each phase of the run decides (``training/phases.py``), the last
``keep_checkpoints`` kept; ``<step>`` counts the steps of every phase so far. ``meta`` (JSON)
says what model it is, the phase, and where the input pipeline stands in it (epoch, batch).
``<workdir>/best/<step>/{model,meta}``: student params and batch_stats of the best eval.
Saves are atomic: orbax writes ``<step>.orbax-checkpoint-tmp`` and renames it to ``<step>``
only when complete; a process killed mid-write leaves the tmp folder, which is never read
and is removed when the next run opens the workdir (``remove_partial_checkpoints``).
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import sys
import warnings
from typing import Any, Callable, Sequence

import jax
import orbax.checkpoint as ocp
from etils import epath
from flax import traverse_util

from kd_jax import models
from kd_jax.errors import KdJaxError

VERSION = 3  # Bump when the checkpointed structure changes (2: aux_state; 3: the names of
             # params['adapters'] (was 'aux') and objective_state (was aux_state)).
RESUMES = (2, 3)  # The formats a run resumes from (2 is renamed on restore).
# Meta keys of format 2 and the names they have now.
_META_RENAMED = {"stage": "phase", "stages": "phases", "aux": "adapters"}


# What a resumed run must agree on with its checkpoint: seed and batch_size fix the data
# order, which the resumed run continues; phases (recorded since checkpoints number the steps
# of all phases) say what the numbers mean.
COMPATIBLE = ("model", "num_classes", "adapters", "steps_per_epoch", "seed", "batch_size",
              "phases", "data_seed")  # data_seed: of a seed trained with others (seeds).


def check_compatible(folder, step: int, meta: dict[str, Any], expected: dict[str, Any]) -> None:
  """Refuses (one line, with the fix) a run's checkpoint ``<folder>/<step>`` of another
  format or of another model or config: the ``COMPATIBLE`` keys of ``expected`` must equal
  the checkpoint's ``meta`` (today's names)."""
  folder = epath.Path(folder)
  if meta.get("checkpoint_version") not in RESUMES:
    raise KdJaxError(
        f"workdir {folder.parent} holds a checkpoint (step {step}) written by another "
        f"kd_jax version (checkpoint format {meta.get('checkpoint_version')}; this kd_jax "
        f"resumes formats {', '.join(map(str, RESUMES))}): finish that run with the kd_jax "
        f"that started it, or use another --workdir, or delete {folder} to start over")
  for key in COMPATIBLE:
    if key not in expected or (key == "phases" and key not in meta):
      continue  # (No phases: written before they were recorded, a run without any.)
    if meta.get(key) != expected[key]:
      raise KdJaxError(
          f"workdir {folder.parent} holds a checkpoint (step {step}) with {key}="
          f"{meta.get(key)!r}, but this config has {key}={expected[key]!r}; use another "
          f"--workdir, or delete {folder} to start over")


def check_resumable(workdir: str, expected: dict[str, Any]) -> None:
  """``check_compatible`` on the newest checkpoint of a run's workdir, if it has one whose
  meta reads back (read only; a damaged one is the run's to set aside when it starts)."""
  folder = epath.Path(workdir) / "checkpoints"
  if not folder.exists():
    return
  steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
  if not steps:
    return
  try:
    with _reader(folder, "state") as mngr:
      meta = upgrade_meta(mngr.restore(max(steps), args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))["meta"])
  except Exception:  # pylint: disable=broad-except  (damaged: handled at the run's start)
    return
  check_compatible(folder, max(steps), meta, expected)


def upgrade_meta(meta: dict[str, Any]) -> dict[str, Any]:
  """A checkpoint's meta with the keys of older formats under today's names."""
  meta = dict(meta)
  for old, new in _META_RENAMED.items():
    if old in meta and new not in meta:
      meta[new] = meta.pop(old)
  return meta


def _rename_format_2(tree: Any, to_format_2: bool) -> Any:
  """Checkpointed state items between today's names and format 2's: ``params['adapters']``
  <-> ``params['aux']`` wherever a dict holds it beside ``student`` (the parameters and the
  optimiser state's trees of them), ``objective_state`` <-> ``aux_state``."""
  src, dst = ("adapters", "aux") if to_format_2 else ("aux", "adapters")
  is_params = lambda x: isinstance(x, dict) and "student" in x and src in x
  tree = jax.tree.map(
      lambda x: {(dst if k == src else k): v for k, v in x.items()} if is_params(x) else x,
      tree, is_leaf=is_params)
  top_src, top_dst = (("objective_state", "aux_state") if to_format_2
                      else ("aux_state", "objective_state"))
  return {(top_dst if k == top_src else k): v for k, v in tree.items()}


class Checkpoints:
  """The latest-K and best-by-eval checkpoint managers of one run's workdir."""

  def __init__(self, workdir: str, keep: int):
    self.dir = epath.Path(workdir) / "checkpoints"
    remove_partial_checkpoints(self.dir)
    remove_partial_checkpoints(epath.Path(workdir) / "best")
    self.latest = ocp.CheckpointManager(
        self.dir, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=("state", "meta"))
    self.best = ocp.CheckpointManager(
        epath.Path(workdir) / "best",
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, best_fn=lambda m: m["accuracy"], best_mode="max", create=True,
            # Both managers save at the same steps: their multi-host barriers need own names.
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                barrier_sync_key_prefix="best")),
        item_names=("model", "meta"))

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def meta(self, step: int) -> dict[str, Any]:
    """The meta of checkpoint ``step``, older formats' keys under today's names."""
    return upgrade_meta(self.latest.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

  def check_compatible(self, step: int, expected: dict[str, Any],
                       meta: dict[str, Any] | None = None) -> None:
    """Refuses a workdir whose checkpoint is of another model (one line, with the fix)."""
    check_compatible(self.dir, step, self.meta(step) if meta is None else meta, expected)

  def restore(self, step: int, items: dict[str, Any], version: int = VERSION) -> dict[str, Any]:
    """Restores the checkpointed state items into the structure, shapes and shardings of
    ``items`` (today's names; a format-2 checkpoint is read under its names and renamed)."""
    legacy = version == 2
    target = _rename_format_2(items, to_format_2=True) if legacy else items
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    out = self.latest.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
    return _rename_format_2(out, to_format_2=False) if legacy else out

  def restore_latest_intact(self, items: Callable[[dict], dict[str, Any]],
                            expected: dict[str, Any], log=print, max_step: int | None = None
                            ) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
    """``(step, state items, meta)`` of the newest checkpoint that reads back whole, or None
    when there is none. ``items(meta)``: the structure to restore that checkpoint into (it
    depends on the phase it was written in). A checkpoint of another model or config stops
    here (``check_compatible``).
    A damaged one (its meta or arrays unreadable: a truncated file, a deleted item) is
    reported and the one before it tried; once an intact one is found the damaged ones are
    moved to ``<workdir>/checkpoints_damaged/<step>``, so that training writes those steps
    anew. If none is intact: a one-line KdJaxError, nothing moved. ``max_step``: the newest
    intact one at or before it (the seeds of a run resume from their newest common step)."""
    steps = sorted((s for s in self.latest.all_steps() if max_step is None or s <= max_step),
                   reverse=True)
    with quiet_failed_reads():
      return self._restore_latest_intact(steps, items, expected, log)

  def _restore_latest_intact(self, steps, items, expected, log):
    damaged: list[tuple[int, str]] = []
    for step in steps:
      try:
        meta = self.meta(step)
      except Exception as err:  # pylint: disable=broad-except  (any read failure = damage)
        damaged.append((step, first_line(err)))
        continue
      self.check_compatible(step, expected, meta)
      try:
        restored = self.restore(step, items(meta), meta.get("checkpoint_version", VERSION))
      except Exception as err:  # pylint: disable=broad-except
        damaged.append((step, first_line(err)))
        continue
      if damaged:
        self._quarantine([s for s, _ in damaged], log)
      return step, restored, meta
    if damaged:
      raise KdJaxError(
          f"no intact checkpoint in {self.dir}: step(s) {', '.join(str(s) for s, _ in damaged)} "
          f"cannot be read (step {damaged[0][0]}: {damaged[0][1][:200]}); delete {self.dir} "
          f"to train from the start")
    return None

  def delete_after(self, step: int | None) -> list[int]:
    """Deletes the checkpoints after ``step`` (all of them for None): steps one seed of a
    run saved and another did not, which the run trains again. Returns their steps."""
    later = [s for s in self.latest.all_steps() if step is None or s > step]
    for s in later:
      self.latest.delete(s)
    return later

  def _quarantine(self, steps: list[int], log) -> None:
    for step in steps:
      target = move_damaged(self.dir / str(step), self.dir.parent, str(step))
      log(f"checkpoint {self.dir}/{step} is damaged and cannot be read: moved to "
          f"{target.parent}/; resuming from the one before it")
    self.latest.reload()

  def _write_error(self, err: Exception) -> KdJaxError:
    free = shutil.disk_usage(self.dir).free if self.dir.exists() else 0
    return KdJaxError(f"cannot write a checkpoint in {self.dir} ({first_line(err)[:200]}; "
                      f"{_mb(free)} free there): free space or use another --workdir; the "
                      f"run resumes from its last complete checkpoint")

  def save(self, step: int, items: dict[str, Any], meta: dict[str, Any]) -> None:
    try:
      self.latest.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(items), meta=ocp.args.JsonSave(meta)), force=True)
    except (OSError, ValueError, RuntimeError) as err:  # Also an earlier async save's failure.
      raise self._write_error(err) from None

  def save_best(self, step: int, model: dict[str, Any], meta: dict[str, Any], accuracy: float) -> None:
    """Offers the model at ``step`` with its eval accuracy; orbax keeps only the best one."""
    if step in self.best.all_steps():
      return  # Re-evaluated after a resume: already offered.
    try:
      self.best.save(step, args=ocp.args.Composite(
          model=ocp.args.StandardSave(model), meta=ocp.args.JsonSave(meta)),
          metrics={"accuracy": float(accuracy)}, force=True)
    except (OSError, ValueError, RuntimeError) as err:
      raise self._write_error(err) from None

  def best_accuracy(self) -> tuple[int, float] | None:
    """``(step, accuracy)`` of the best evaluation offered so far (kept across resumes:
    orbax stores the metrics with the checkpoint), or None before the first."""
    self.best.wait_until_finished()
    step = self.best.best_step()
    if step is None:
      return None
    return step, float(self.best.metrics(step)["accuracy"])

  def wait(self) -> None:
    try:
      self.latest.wait_until_finished()
      self.best.wait_until_finished()
    except (OSError, ValueError, RuntimeError) as err:
      raise self._write_error(err) from None

  def close(self) -> None:
    self.latest.close()
    self.best.close()


@contextlib.contextmanager
def quiet_failed_reads():
  """Within it, a failed orbax read is reported by the caller alone. The same read's other
  asyncio tasks fail too, and nobody awaits them; what they leave is dropped for the rest of
  the process, since it surfaces later, when they are garbage-collected (often at exit, after
  the caller's one-line error): "Task exception was never retrieved" logs with tracebacks,
  "coroutine ... was never awaited" warnings, and tensorstore's callbacks into closed loops."""
  quiet = logging.getLogger("asyncio")
  level = quiet.level
  quiet.setLevel(logging.CRITICAL)  # (setLevel: it also clears the logger's level cache)
  _drop_unawaited_leftovers()
  try:
    yield
  finally:
    quiet.setLevel(level)


class _NeverRetrieved(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    # asyncio logs "Task exception was never retrieved\nfuture: <Task ...>": one message.
    return not str(record.msg).split("\n", 1)[0].endswith("exception was never retrieved")


def _drop_unawaited_leftovers() -> None:
  if getattr(sys.unraisablehook, "kd_jax_filter", False):
    return  # Once per process.
  sys.unraisablehook = _unless_closed_loop(sys.unraisablehook)
  logging.getLogger("asyncio").addFilter(_NeverRetrieved())
  warnings.filterwarnings("ignore", message=r"coroutine '.*' was never awaited",
                          category=RuntimeWarning)


def move_damaged(path, workdir, name: str) -> epath.Path:
  """Moves the unreadable checkpoint folder ``path`` to ``<workdir>/checkpoints_damaged/<name>``
  (process 0; a name already there gets a suffix); returns where it went."""
  aside = epath.Path(workdir) / "checkpoints_damaged"
  target = aside / name
  if jax.process_index() == 0:
    aside.mkdir(parents=True, exist_ok=True)
    if target.exists():
      target = aside / f"{name}.{len(list(aside.iterdir()))}"
    epath.Path(path).rename(target)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f"kd_jax:moved_damaged:{name}")
  return target


def remove_partial_checkpoints(directory) -> list[str]:
  """Removes the ``<step>.orbax-checkpoint-tmp*`` folders that a process killed in the middle
  of a save left in ``directory`` (orbax never reads them: it reads finalised steps only).
  Process 0 only; returns what it removed."""
  if jax.process_index() != 0:
    return []
  partial = sorted(glob.glob(os.path.join(os.fspath(directory), "*.orbax-checkpoint-tmp*")))
  for path in partial:
    shutil.rmtree(path, ignore_errors=True)
  return partial


def _mb(n: float) -> str:
  return f"{n / 2**20:.1f} MB"


def _not_writable(workdir: str, why: str) -> str:
  return f"workdir {workdir} is not writable ({why}): use another --workdir or fix its permissions"


def check_writable(workdir: str, need_bytes: int = 0) -> None:
  """Start-up check of a workdir: a probe file written, synced and removed, and (given
  ``need_bytes``) enough free space. One-line KdJaxError saying where and how much."""
  probe = os.path.join(workdir, ".kd_jax_write_probe")
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(probe, "wb") as f:
      f.write(b"\0" * 4096)
      f.flush()
      os.fsync(f.fileno())
    os.remove(probe)
  except OSError as err:
    raise KdJaxError(_not_writable(workdir, err.strerror or str(err))) from None
  if need_bytes:
    free = shutil.disk_usage(workdir).free
    if free < need_bytes:
      raise KdJaxError(f"workdir {workdir} has {_mb(free)} free, but this run's checkpoints "
                       f"need about {_mb(need_bytes)}: free space there, lower "
                       f"config.keep_checkpoints, or use another --workdir")


def writable_problem(workdir: str) -> str | None:
  """What ``check_writable`` would refuse, found without writing (the dry run): the workdir,
  or the nearest folder above it that exists, is not a folder kd_jax may create files in
  (permissions, a read-only file system); None if it is."""
  path = os.path.abspath(workdir)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    return _not_writable(workdir, f"{path} is not a directory")
  if not os.access(path, os.W_OK | os.X_OK):
    return _not_writable(workdir, f"{path}: permission denied or a read-only file system")
  return None


def checkpoint_bytes(tree: Any) -> int:
  """Bytes of the arrays of ``tree`` (what a checkpoint of it holds, uncompressed)."""
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree) if hasattr(x, "dtype")))


def _unless_closed_loop(hook):
  """An unraisable-exception hook that drops tensorstore's late callbacks into the event
  loops of reads that already failed (``RuntimeError: Event loop is closed``)."""
  def filtered(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"):
      hook(unraisable)
  filtered.kd_jax_filter = True
  return filtered


def first_line(err: Exception) -> str:
  """``<type>: <the message's first line>``."""
  text = str(err).strip()
  return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _on_this_process(path: epath.Path) -> Any:
  """The checkpoint item at ``path`` as abstract arrays on this process's first device: a
  checkpoint written by any number of processes (multi-host training) restores in one
  (without a target orbax restores the saved topology, and refuses another)."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  with ocp.StandardCheckpointer() as reader:
    metadata = reader.metadata(path).item_metadata
  if metadata is None:
    raise ValueError(f"no metadata of the arrays in {path}")
  return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                      metadata)


def _model_checkpoint(workdir: str, which: str) -> tuple[epath.Path, str, str]:
  """``(folder, which, item)`` of the model checkpoints ``load_model_variables`` reads."""
  root = epath.Path(os.path.abspath(workdir))  # orbax reads absolute paths only.
  sub = "checkpoints" if which == "latest" else "best"
  if sub == "checkpoints" and not (root / sub).exists() and (root / "best").exists():
    which, sub = "best", "best"  # A converted PyTorch teacher has only best/.
  if not (root / sub).exists():
    raise KdJaxError(f"no kd_jax checkpoint in {root} (expected {root / sub}); train it first "
                     f"or convert a PyTorch teacher into it")
  return root / sub, which, ("state" if which == "latest" else "model")


def _read_meta(mngr, folder: epath.Path, which: str) -> tuple[int, dict[str, Any]]:
  step = mngr.latest_step() if which == "latest" else (mngr.best_step() or mngr.latest_step())
  if step is None:
    raise KdJaxError(f"no complete checkpoint in {folder}")
  try:
    meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  except Exception as err:  # pylint: disable=broad-except  (any read failure)
    raise KdJaxError(f"cannot read the checkpoint {folder}/{step}: "
                     f"{first_line(err)[:200]}") from None
  version = meta.get("checkpoint_version", VERSION)  # (Converted teachers have none.)
  if not isinstance(version, int) or version > VERSION:
    raise KdJaxError(f"{folder}/{step} was written by a newer kd_jax (checkpoint format "
                     f"{version!r}; this kd_jax reads formats up to {VERSION}): upgrade kd_jax "
                     f"to read it")
  return step, meta


def _reader(folder: epath.Path, item: str):
  return ocp.CheckpointManager(folder, item_names=(item, "meta"),
                               options=ocp.CheckpointManagerOptions(
                                   read_only=True, create=False, save_interval_steps=0))


def model_meta(workdir: str, which: str = "latest") -> dict[str, Any]:
  """The meta of the model checkpoint ``load_model_variables`` would read (model,
  num_classes, heads...), without reading its arrays; the same one-line errors."""
  folder, which, item = _model_checkpoint(workdir, which)
  with _reader(folder, item) as mngr:
    return _read_meta(mngr, folder, which)[1]


def model_variable_shapes(workdir: str, which: str = "latest"
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
  """``(variables, meta)`` as ``load_model_variables`` returns them, but the variables as
  ShapeDtypeStructs read from the checkpoint's metadata (no array is read)."""
  folder, which, item = _model_checkpoint(workdir, which)
  with _reader(folder, item) as mngr:
    step, meta = _read_meta(mngr, folder, which)
  try:
    tree = _on_this_process(folder / str(step) / item)
  except Exception as err:  # pylint: disable=broad-except
    raise KdJaxError(f"cannot read the checkpoint {folder}/{step}: "
                     f"{first_line(err)[:200]}") from None
  return _model_variables(tree, item), meta


def _model_variables(tree: dict[str, Any], item: str) -> dict[str, Any]:
  """A model checkpoint's ``{'params', 'batch_stats'}`` out of its saved item (a train
  state's student, or a model)."""
  params = tree["params"]["student"] if item == "state" else tree["params"]
  # A model without BatchNorm (a ViT) has no statistics; one converted from timm none saved.
  return {"params": params, "batch_stats": tree.get("batch_stats") or {}}


def load_model_variables(workdir: str, which: str = "latest") -> tuple[dict[str, Any], dict[str, Any]]:
  """``({'params', 'batch_stats'}, meta)`` of the model trained in a kd_jax run's workdir.

  which: ``latest`` (the last saved train state) or ``best`` (best eval accuracy). A workdir
  written by ``kd_jax.convert`` holds only ``best/``, which serves both.
  """
  folder, which, item = _model_checkpoint(workdir, which)
  with _reader(folder, item) as mngr:
    step, meta = _read_meta(mngr, folder, which)
    try:
      target = _on_this_process(folder / str(step) / item)
      tree = mngr.restore(step, args=ocp.args.Composite(
          **{item: ocp.args.StandardRestore(target)}))[item]
    except Exception as err:  # pylint: disable=broad-except
      raise KdJaxError(f"cannot read the checkpoint {folder}/{step}: "
                       f"{first_line(err)[:200]}") from None
  return _model_variables(tree, item), meta


def save_model_variables(workdir: str, variables: dict[str, Any], meta: dict[str, Any]) -> str:
  """Writes a model's ``{'params', 'batch_stats'}`` as ``<workdir>/best/0`` (what
  ``load_model_variables`` and a config's ``teachers`` entry read); returns that folder's
  parent. meta: at least ``model`` and ``num_classes``."""
  path = os.path.join(os.path.abspath(workdir), "best")
  with ocp.CheckpointManager(path, item_names=("model", "meta"),
                             options=ocp.CheckpointManagerOptions(create=True)) as mngr:
    mngr.save(0, args=ocp.args.Composite(model=ocp.args.StandardSave(variables),
                                         meta=ocp.args.JsonSave({"step": 0, **meta})),
              force=True)
    mngr.wait_until_finished()
  return path


def is_complete_run(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, "results.json"))


CONFIG_FILE = "config.json"  # A run's config, as its workdir was trained with.
# Fields that say how a run is carried out or reported, not what it trains: a run resumes,
# or its finished result is reused, with other values (num_epochs: the main phase may be
# lengthened on a resume; not of a finished run). downstream: evaluated after training.
_NOT_TRAINED = ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
                "eval_every_epochs", "eval_batch_size", "data.data_dir", "data.download",
                "data.cache", "seed_compute", "side_by_side", "runs", "published",
                "published_source", "method_modules", "downstream")


def as_json(config: Any) -> dict[str, Any]:
  """A config (ConfigDict or dict) as plain JSON values (tuples as lists)."""
  return json.loads(json.dumps(dict(config), default=str))


def save_run_config(workdir: str, config: dict[str, Any]) -> None:
  """Writes a run's config (``plan.RunPlan.trained_config``: JSON, objectives and teachers
  resolved) to ``<workdir>/config.json``, which ``check_run_config`` reads."""
  with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
    json.dump(as_json(config), f, indent=2, sort_keys=True)


def config_differences(then: dict[str, Any], now: dict[str, Any],
                       skip: Sequence[str] = ()) -> list[str]:
  """``field: <then> -> <now>`` for each dotted field of two JSON configs whose values
  differ, those under ``skip``'s fields aside; sorted by field."""
  then = traverse_util.flatten_dict(then, sep=".")
  now = traverse_util.flatten_dict(as_json(now), sep=".")
  kept = lambda key: not any(key == f or key.startswith(f + ".") for f in skip)
  unset = "(not set)"
  return [f"{key}: {then.get(key, unset)!r} -> {now.get(key, unset)!r}"
          for key in sorted({*then, *now})
          if kept(key) and then.get(key, unset) != now.get(key, unset)]


def run_config_differences(workdir: str, config: dict[str, Any], epochs: bool = True
                           ) -> list[str]:
  """``field: <there> -> <here>`` for each field that decides what is trained (all but
  ``_NOT_TRAINED``'s; ``num_epochs`` only with ``epochs``) where the run in ``workdir`` (its
  ``config.json``, ``save_run_config``) was trained with another value than ``config``'s;
  [] where it has no config.json (written before kd_jax saved it)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      saved = json.load(f)
    if not isinstance(saved, dict):
      raise ValueError("it is not a JSON object")
  except (OSError, ValueError) as err:
    raise KdJaxError(f"cannot read {path}: {first_line(err)[:200]}") from None
  return config_differences(saved, config, _NOT_TRAINED + (() if epochs else ("num_epochs",)))


def check_finished_run_config(workdir: str, config: dict[str, Any],
                              remedy: str = "use another --workdir (or remove that one to "
                                            "train this config there)") -> None:
  """Refuses, in one line ending with ``remedy``, a finished run (one a job does not train
  again) that was trained with another config in what it trains: its results would be
  reported as this config's."""
  differences = run_config_differences(workdir, config)
  if differences:
    raise KdJaxError(f"workdir {workdir} holds a finished run trained with another config "
                     f"({'; '.join(differences)[:300]}): {remedy}")


def pretrained_mismatch(target: dict[str, Any], pretrained: dict[str, Any]) -> str | None:
  """Where ``pretrained`` variables do not fit a model's ``target`` variables (arrays or
  ShapeDtypeStructs), the classifier aside (``models.is_classifier``): the first layer
  missing, of another shape or extra, in words; None where they fit."""
  for collection, tree in target.items():
    flat = traverse_util.flatten_dict(tree)
    given = traverse_util.flatten_dict(pretrained.get(collection, {}))
    for path, leaf in flat.items():
      if not models.is_classifier(path[0]) and (path not in given
                                                or given[path].shape != leaf.shape):
        got = tuple(given[path].shape) if path in given else "missing"
        return f"{collection}/{'/'.join(path)} is {got}, expected {tuple(leaf.shape)}"
    extra = [p for p in given if p not in flat and not models.is_classifier(p[0])]
    if extra:
      return f"it has {collection}/{'/'.join(extra[0])}, which this model lacks"
  return None


def merge_pretrained(target: dict[str, Any], pretrained: dict[str, Any], source: str,
                     field: str = "config.init_from") -> dict[str, Any]:
  """``target`` variables with every leaf taken from ``pretrained`` except the classifier
  (``models.is_classifier``: a new task gets a new one). One-line error, naming ``field``,
  if a layer is missing or has another shape (another model)."""
  problem = pretrained_mismatch(target, pretrained)
  if problem:
    raise KdJaxError(f"{field}: {source} does not hold this model: {problem}")
  out = {}
  for collection, tree in target.items():
    flat = traverse_util.flatten_dict(tree)
    given = traverse_util.flatten_dict(pretrained.get(collection, {}))
    out[collection] = traverse_util.unflatten_dict(
        {p: leaf if models.is_classifier(p[0]) else given[p] for p, leaf in flat.items()})
  return out

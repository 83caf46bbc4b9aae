"""Checkpoints with orbax.

``<workdir>/checkpoints/<step>/{state,meta}``: the train state (``TrainState.CHECKPOINTED``
plus the step RNG key) every ``checkpoint_every_steps`` and at the end, the last ``keep_checkpoints`` kept;
``meta`` (JSON) says what model it is and where the input pipeline stands (epoch, batch).
``<workdir>/best/<step>/{model,meta}``: student params and batch_stats of the best eval.
Saves are atomic (orbax finalises a step directory only when complete).
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from kd_jax.errors import KdJaxError

VERSION = 2  # Bump when the checkpointed structure changes (2: aux_state).


class Checkpoints:
  """The latest-K and best-by-eval checkpoint managers of one run's workdir."""

  def __init__(self, workdir: str, keep: int):
    self.dir = epath.Path(workdir) / "checkpoints"
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
    return self.latest.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def check_compatible(self, step: int, expected: dict[str, Any]) -> None:
    """Refuses a workdir whose checkpoint is of another model (one line, with the fix)."""
    meta = self.meta(step)
    # seed and batch_size fix the data order, which the resumed run must continue.
    for key in ("model", "num_classes", "checkpoint_version", "aux", "steps_per_epoch", "seed",
                "batch_size"):
      if meta.get(key) != expected.get(key):
        raise KdJaxError(
            f"workdir {self.dir.parent} holds a checkpoint (step {step}) with {key}="
            f"{meta.get(key)!r}, but this config has {key}={expected.get(key)!r}; use another "
            f"--workdir, or delete {self.dir} to start over")

  def restore(self, step: int, items: dict[str, Any]) -> dict[str, Any]:
    """Restores the checkpointed state items into the structure, shapes and shardings of ``items``."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, items)
    try:
      return self.latest.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
    except (ValueError, KeyError, TypeError) as err:
      first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
      raise KdJaxError(f"cannot restore {self.dir}/{step}: it does not match this config's "
                       f"train state ({first[:200]}); use another --workdir") from None

  def save(self, step: int, items: dict[str, Any], meta: dict[str, Any]) -> None:
    self.latest.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(items), meta=ocp.args.JsonSave(meta)), force=True)

  def save_best(self, step: int, model: dict[str, Any], meta: dict[str, Any], accuracy: float) -> None:
    """Offers the model at ``step`` with its eval accuracy; orbax keeps only the best one."""
    if step in self.best.all_steps():
      return  # Re-evaluated after a resume: already offered.
    self.best.save(step, args=ocp.args.Composite(
        model=ocp.args.StandardSave(model), meta=ocp.args.JsonSave(meta)),
        metrics={"accuracy": float(accuracy)}, force=True)

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def load_model_variables(workdir: str, which: str = "latest") -> tuple[dict[str, Any], dict[str, Any]]:
  """``({'params', 'batch_stats'}, meta)`` of the model trained in a kd_jax run's workdir.

  which: ``latest`` (the last saved train state) or ``best`` (best eval accuracy). A workdir
  written by ``kd_jax.convert`` holds only ``best/``, which serves both.
  """
  root = epath.Path(workdir)
  sub = "checkpoints" if which == "latest" else "best"
  if sub == "checkpoints" and not (root / sub).exists() and (root / "best").exists():
    which, sub = "best", "best"  # A converted PyTorch teacher has only best/.
  if not (root / sub).exists():
    raise KdJaxError(f"no kd_jax checkpoint in {root} (expected {root / sub}); train it first "
                     f"or convert a PyTorch teacher into it")
  item = "state" if which == "latest" else "model"
  with ocp.CheckpointManager(root / sub, item_names=(item, "meta"),
                             options=ocp.CheckpointManagerOptions(
                                 read_only=True, create=False, save_interval_steps=0)) as mngr:
    step = mngr.latest_step() if which == "latest" else (mngr.best_step() or mngr.latest_step())
    if step is None:
      raise KdJaxError(f"no complete checkpoint in {root / sub}")
    restored = mngr.restore(step, args=ocp.args.Composite(
        **{item: ocp.args.StandardRestore(), "meta": ocp.args.JsonRestore()}))
  tree = restored[item]
  params = tree["params"]["student"] if item == "state" else tree["params"]
  return {"params": params, "batch_stats": tree["batch_stats"]}, restored["meta"]


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


def load_backbone_variables(workdir: str, which: str = "latest"
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
  """Like ``load_model_variables``, but a multi-head student's zoo-model variables only
  (its per-teacher heads dropped): what initialises or probes the backbone elsewhere."""
  from kd_jax.distill import student as student_lib
  variables, meta = load_model_variables(workdir, which)
  return student_lib.backbone_variables(variables, meta.get("heads")), meta


def merge_pretrained(target: dict[str, Any], pretrained: dict[str, Any], source: str
                     ) -> dict[str, Any]:
  """``target`` variables with every leaf taken from ``pretrained`` except the classifier
  (``models.is_classifier``: a new task gets a new one). One-line error if a layer is missing
  or has another shape (another model)."""
  from flax import traverse_util
  from kd_jax import models
  out = {}
  for collection, tree in target.items():
    flat = traverse_util.flatten_dict(tree)
    given = traverse_util.flatten_dict(pretrained.get(collection, {}))
    for path, leaf in flat.items():
      if models.is_classifier(path[0]):
        continue
      if path not in given or given[path].shape != leaf.shape:
        got = given[path].shape if path in given else "missing"
        raise KdJaxError(f"config.init_from: {source} does not hold this model: "
                         f"{collection}/{'/'.join(path)} is {got}, expected {leaf.shape}")
      flat[path] = given[path]
    extra = [p for p in given if p not in flat and not models.is_classifier(p[0])]
    if extra:
      raise KdJaxError(f"config.init_from: {source} does not hold this model: it has "
                       f"{collection}/{'/'.join(extra[0])}, which this model lacks")
    out[collection] = traverse_util.unflatten_dict(flat)
  return out

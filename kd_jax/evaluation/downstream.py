"""Downstream evaluation of a trained backbone on another data set (a different task).

Two protocols (``config.downstream.protocols``), as representation consolidation judges a
student (its heads discarded):

* ``linear_probe``: pooled features of the frozen backbone (inference mode, no
  augmentation) extracted once for the train and test splits, then a logistic-regression
  classifier whose L2 weight is chosen on a validation part of the train split
  (``kd_jax.evaluation.probe``);
* ``finetune``: the whole backbone with a new classifier trained with cross-entropy on the
  downstream train split (an ordinary run started from the backbone: ``config.init_from``),
  scored on its test split.

Results (top-1 of each) go to the console, TensorBoard and
``<workdir>/downstream/<data set>/results.json``; the fine-tuning run lives in
``<workdir>/downstream/<data set>/finetune`` and resumes like any run.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from kd_jax import checkpoint as ckpt_lib
from kd_jax import config as config_lib
from kd_jax import models
from kd_jax import plan as plan_lib
from kd_jax.data import pipelines
from kd_jax.distill import student as student_lib
from kd_jax.errors import KdJaxError
from kd_jax.evaluation import probe
from kd_jax.training import metrics as metrics_lib
from kd_jax.training import sharding
from kd_jax.training.loop import train_and_evaluate


def _log(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


# Where the downstream data is read from, not what is evaluated.
_NOT_EVALUATED = ("downstream.data.data_dir", "downstream.data.download",
                  "downstream.data.cache")


def evaluated_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What decides a downstream phase's results, as JSON: ``config.downstream`` and the
  run's ``seed`` and ``dtype`` (the backbone itself is the run's, checked by the plan)."""
  return ckpt_lib.as_json({"downstream": config.downstream.to_dict(), "seed": config.seed,
                           "dtype": config.dtype})


def changes(run_results: dict[str, Any], config: ml_collections.ConfigDict
            ) -> list[str] | None:
  """Why a run whose results are ``run_results`` must be evaluated downstream (again) for
  ``config``: None where its results hold this config's downstream phase (or one saved
  before kd_jax recorded the config: it cannot tell); [] where they hold none of this data
  set and no other; else ``field: <then> -> <now>`` for each field that changed."""
  task = config_lib.downstream_task_name(config.downstream.data)
  evaluated = run_results.get("downstream") or {}
  if task not in evaluated:
    return [f"downstream data set: {t!r} -> {task!r}" for t in evaluated]
  done = evaluated[task]
  if "config" not in done:
    return None
  return ckpt_lib.config_differences(done["config"], evaluated_config(config),
                                     _NOT_EVALUATED) or None


def evaluate(config: ml_collections.ConfigDict, workdir: str, run_name: str = "",
             backbone_dir: str | None = None, job_workdir: str | None = None
             ) -> dict[str, Any]:
  """Runs ``config.downstream``'s protocols on the backbone trained in ``backbone_dir``
  (default ``workdir``), or on a random ``config.model`` (``downstream.backbone='random'``);
  writes the results under ``workdir`` and returns them. ``job_workdir``: that of the job
  whose run ``workdir`` is, if any."""
  ds = config.downstream
  tag = f"[{run_name}] " if run_name else ""
  out_dir = os.path.join(workdir, "downstream", config_lib.downstream_task_name(ds.data))
  os.makedirs(out_dir, exist_ok=True)
  backbone_dir = backbone_dir or workdir
  if ds.backbone == "random":
    model_name, pretrained, source = config.model, None, f"a random {config.model}"
  else:
    pretrained, meta = student_lib.load_backbone_variables(backbone_dir, ds.which)
    model_name, source = meta["model"], f"{meta['model']} of {backbone_dir}"
  sharding.check_batch_size(ds.batch_size, "config.downstream.batch_size")
  data = pipelines.create_dataset(ds.data, ds.batch_size, ds.batch_size)
  if not data.num_classes or not data.has_labels:
    raise KdJaxError(f"config.downstream.data: {ds.data.name!r} has no labels to evaluate on")
  _log(f"{tag}downstream {config_lib.downstream_task_name(ds.data)}: "
       f"{data.num_train_examples} train / {data.num_eval_examples} test images, "
       f"{data.num_classes} classes; backbone {source}")
  results: dict[str, Any] = {"data": ds.data.name, "backbone": source, "model": model_name,
                             "config": evaluated_config(config)}

  if "linear_probe" in ds.protocols:
    model = models.create(model_name, data.num_classes, dtype=jnp.dtype(config.dtype))
    variables = models.init(model, jax.random.PRNGKey(config.seed), data.input_shape)
    if pretrained is not None:
      variables = ckpt_lib.merge_pretrained(jax.device_get(dict(variables)), pretrained,
                                            backbone_dir, "config.downstream.backbone")
    apply = jax.jit(lambda v, images: model.apply(v, images, train=False)[1]["pooled"])
    pooled = lambda images: apply(variables, images)  # Weights are arguments, not constants.
    train_cfg = copy.deepcopy(ds.data)
    train_cfg.eval_split = train_cfg.train_split  # All train images once, unaugmented.
    train_cfg.num_eval_examples = train_cfg.num_train_examples
    train_data = pipelines.create_dataset(train_cfg, ds.batch_size, ds.batch_size)
    train = probe.extract_features(pooled, train_data.eval_batches())
    test = probe.extract_features(pooled, data.eval_batches())
    results["linear_probe"] = probe.linear_probe(
        train, test, data.num_classes, tuple(ds.probe_l2), ds.probe_steps,
        ds.validation_fraction, config.seed)
    r = results["linear_probe"]
    _log(f"{tag}linear probe on {len(train[1])} train features "
         f"[{train[0].shape[1]}-d]: l2={r['l2']:g} (validation {max(r['validation'].values()):.4f}), "
         f"test top-1 {100 * r['top1']:.2f}%")

  if "finetune" in ds.protocols:
    ft_dir = os.path.join(out_dir, "finetune")
    os.makedirs(ft_dir, exist_ok=True)
    ft_name = f"{run_name}/finetune" if run_name else "finetune"
    if ckpt_lib.is_complete_run(ft_dir):
      with open(os.path.join(ft_dir, "results.json")) as f:
        ft = json.load(f)
    else:
      ft_config = config_lib.finetune_config(config, model_name,
                                             "" if pretrained is None else backbone_dir)
      ft = train_and_evaluate(plan_lib.make_run(ft_config, ft_dir, ft_name, job_workdir),
                              job_workdir=job_workdir)
    results["finetune"] = {"top1": ft["test_accuracy"], "epochs": ft["epochs"],
                           "train_time_s": ft["train_time_s"]}
    _log(f"{tag}fine-tuned {ft['epochs']} epochs: test top-1 "
         f"{100 * ft['test_accuracy']:.2f}%")

  writer, _ = metrics_lib.create_writers(out_dir, run_name)
  writer.write_scalars(0, {f"downstream/{p}_top1": results[p]["top1"]
                           for p in ("linear_probe", "finetune") if p in results})
  writer.flush()
  if jax.process_index() == 0:
    with open(os.path.join(out_dir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results

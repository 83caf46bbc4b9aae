"""``python -m kd_jax.train --dry_run``: what a job would do, printed, and nothing trained.

For every run, in the order the job trains them: the model, the data (splits, sizes, whether
prepared), the batch size, epochs and steps, each teacher and where it comes from (a run of
this job, a checkpoint, or an evaluation-only backbone), each objective with every field and
hyperparameter (defaults included, marked), initialisation stages, the downstream stage;
and an estimate of the training time from a few measured steps of the run's train step
(random teachers and batches of the real shapes; evaluation not included). Writes nothing
to the workdir (the embedded data sets are prepared in the TFDS data_dir if they are not).
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import ml_collections
import numpy as np

from kd_jax import config as config_lib
from kd_jax import methods
from kd_jax.data import info as data_info
from kd_jax.data import sources
from kd_jax.distill import host_inputs
from kd_jax.distill import objectives as objectives_lib
from kd_jax.bench import benchmarking


def _duration(seconds: float) -> str:
  return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else \
      f"{seconds / 86400:.1f} days"


def _value(v: Any) -> str:
  if isinstance(v, (list, tuple)):
    return "[" + ", ".join(_value(x) for x in v) + "]"
  return repr(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v)


def objective_lines(obj: objectives_lib.Objective) -> list[str]:
  """``name: loss=..., weight=..., teacher=..., features, hyperparameters`` (defaults marked
  ``(default)``) and the initialisation stage, if any."""
  fields = [f"loss={obj.loss}", f"weight={_value(obj.weight)}"]
  if obj.teacher is not None:
    fields.append(f"teacher={_value(obj.teacher)}")
  if obj.reads is not None:
    fields += [f"student_feature={_value(obj.student_feature)}",
               f"teacher_feature={_value(obj.teacher_feature)}"]
  for name in obj.method.hparams():
    given = name in obj.given
    fields.append(f"{name}={_value(getattr(obj.method, name))}{'' if given else ' (default)'}")
  lines = [f"{obj.name}: " + ", ".join(fields)]
  if obj.init_epochs:
    lr = "the reference's" if obj.init_lr is None else _value(obj.init_lr)
    lines.append(f"  its initialisation stage: {obj.init_epochs} epochs, learning rate {lr}"
                 f"{'' if obj.main_stage else '; not in the main stage'}")
  return lines


def _data_line(data: ml_collections.ConfigDict, info: data_info.DataInfo) -> str:
  n = lambda v: "?" if v is None else f"{v:,}"  # noqa: E731
  classes = (f" (before keeping classes {list(data.classes)})" if data.get("classes") else "")
  labels = ", unlabelled" if data.unlabeled else (
      f", {data.labeled_fraction:g} of the labels" if data.labeled_fraction < 1 else "")
  if data.get("unlabeled_parts"):
    labels = f", labels of {' and '.join(data.unlabeled_parts)} unused"
  state = "prepared" if info.prepared else "not prepared (downloaded at the start)" \
      if data.get("download", True) else "not prepared"
  return (f"{data.name}: {data.train_split} {n(info.num_train_examples)} / {data.eval_split} "
          f"{n(info.num_eval_examples)} images{classes}{labels}; input "
          f"{'x'.join(map(str, info.input_shape))}; {state}")


def _teacher_line(name: str, teacher, workdir: str) -> str:
  teacher = dict(teacher)
  if teacher.get("run"):
    where = f"run {teacher['run']!r} of this job ({os.path.join(workdir, teacher['run'])})"
  else:
    path = teacher.get("checkpoint", "")
    found = bool(path) and any(os.path.isdir(os.path.join(path, sub))
                               for sub in ("checkpoints", "best"))
    where = f"checkpoint {path} ({'found' if found else 'NOT FOUND'})"
  which = f", its {teacher['which']} checkpoint" if teacher.get("which") else ""
  return f"{name}: {teacher['model']} from {where}{which}"


def describe(config: ml_collections.ConfigDict, workdir: str, measure: bool = True,
             print_fn: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
  """Prints the job (see the module docstring); returns ``{run: {steps, step_s, estimate_s}}``
  (``step_s``/``estimate_s`` None where not measured or nothing trains)."""
  runs = config_lib.validated_runs(config)
  print_fn(f"kd_jax: dry run of {len(runs)} run(s) in {workdir} (nothing is trained or written)")
  measured: dict[str, float] = {}
  out: dict[str, dict[str, Any]] = {}
  for name, cfg in runs.items():
    tag = f"[{name or 'train'}]"
    sources.prepare_local(cfg.data)
    info = data_info.describe(cfg.data)
    if cfg.downstream.data.name and cfg.downstream.backbone:
      what = (f"a randomly initialised {cfg.model}" if cfg.downstream.backbone == "random"
              else f"the backbone of {cfg.downstream.backbone!r}")
      print_fn(f"{tag} evaluates {what} (no training)")
      steps = 0
    else:
      spe = (max(1, info.num_train_examples // cfg.batch_size)
             if info.num_train_examples else None)
      steps = spe * cfg.num_epochs if spe else None
      print_fn(f"{tag} trains {cfg.model}, seed {cfg.seed}, batch {cfg.batch_size}, "
               f"{cfg.num_epochs} epochs = {'?' if steps is None else f'{steps:,}'} steps "
               f"({'?' if spe is None else spe} per epoch), {cfg.dtype}, optimizer "
               f"{cfg.optimizer.name} lr {cfg.optimizer.lr:g} ({cfg.optimizer.schedule})")
      print_fn(f"  data {_data_line(cfg.data, info)}")
      for t_name, teacher in cfg.teachers.items():
        print_fn(f"  teacher {_teacher_line(t_name, teacher, workdir)}")
      objectives = objectives_lib.parse(cfg.objectives, list(cfg.teachers),
                                        has_labels=not cfg.data.unlabeled,
                                        all_labeled=cfg.data.labeled_fraction >= 1.0
                                        and not cfg.data.get("unlabeled_parts"))
      # What the samplers refuse (CRD's exact negatives on unlabelled data), without reading
      # the labels: an empty split stands in for them.
      host_inputs.build(objectives, methods.TrainSplit(0, not cfg.data.unlabeled,
                                                       lambda: np.zeros(0, np.int32)))
      for obj in objectives:
        first, *rest = objective_lines(obj)
        print_fn(f"  objective {first}")
        for line in rest:
          print_fn(f"  {line}")
      if cfg.student_heads:
        print_fn(f"  student heads: {', '.join(cfg.student_heads)}")
      if cfg.teacher_cache:
        print_fn(f"  teacher cache: {cfg.teacher_cache}")
    if cfg.downstream.data.name:
      d = cfg.downstream
      print_fn(f"  downstream: {', '.join(d.protocols)} on {d.data.name} "
               f"({d.data.train_split} / {d.data.eval_split})")
    step_s = estimate = None
    if measure and steps != 0:
      key = repr((cfg.model, sorted((n, dict(t)["model"]) for n, t in cfg.teachers.items()),
                  cfg.objectives.to_dict(), cfg.batch_size, cfg.dtype, cfg.data.name,
                  cfg.student_heads))
      if key not in measured:
        measured[key] = benchmarking.step_seconds(cfg)
      step_s = measured[key]
      if steps is None:
        print_fn(f"  estimate: {1000 * step_s:.0f} ms/step (measured here); the number of "
                 f"steps is known once the data set is prepared")
      else:
        estimate = step_s * steps
        print_fn(f"  estimate: {1000 * step_s:.0f} ms/step x {steps:,} steps = "
                 f"{_duration(estimate)} of training steps (measured here; evaluation and "
                 f"compilation not included)")
    out[name] = {"steps": steps, "step_s": step_s, "estimate_s": estimate}
  training = [r for r in out.values() if r["steps"] != 0]
  estimates = [r["estimate_s"] for r in training if r["estimate_s"] is not None]
  if estimates:
    print_fn(f"kd_jax: estimated training time: {_duration(sum(estimates))}"
             f"{'' if len(estimates) == len(training) else ' (runs of unknown length not counted)'}")
  return out

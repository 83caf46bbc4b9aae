"""Figures of a finished (or running) run or job, from its TensorBoard events and results.json.

``python -m kd_jax.plot --workdir=<dir> --out=<png>`` writes one PNG with every panel that
the workdir has data for; ``--out=<folder>`` (no ``.png``) writes one PNG per figure there:

* ``curves.png``: training loss and evaluation accuracy against the step, one line per run;
* ``accuracy.png``: final test accuracy per run (a job's seed groups: mean with sample std);
* ``tasks.png``: accuracy per evaluation task (``eval_tasks``: each teacher's task), per run;
* ``downstream.png``: downstream top-1 per run and protocol (linear probe, fine-tune);
* ``published.png``: a table job's measured accuracy (mean, sample std) against the
  published one (``table.json``), one point per cell, the diagonal where they agree.

From Python (notebooks): ``runs = plot.load(workdir)``, then ``plot.curves(runs, ax)``,
``plot.final_accuracy(runs, ax)``, ``plot.task_accuracy(runs, ax)``,
``plot.downstream(runs, ax)``, ``plot.published(read_table(workdir), ax)``, or
``plot.report(workdir, out)``.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import sys
from typing import Any, Sequence

import numpy as np

FIGURES = ("curves", "accuracy", "tasks", "downstream", "published")
_PROTOCOL_NAMES = {"linear_probe": "linear probe", "finetune": "fine-tune"}


@dataclasses.dataclass
class Run:
  """One run: its name, ``results.json`` (``{}`` while it is still training) and scalars
  (``{tag: (steps [n] int, values [n] float)}``, steps ascending, from its event files)."""
  name: str
  results: dict[str, Any]
  scalars: dict[str, tuple[np.ndarray, np.ndarray]]


def read_scalars(run_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Every scalar in the TensorBoard event files directly in ``run_dir`` (not its
  subfolders). A step written twice (a resumed run) keeps the value written last (by the
  events' wall time: file names do not order them, counter 10 sorts before 9)."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  points: dict[str, dict[int, tuple[float, float]]] = {}  # tag -> step -> (wall time, value)

  def add(tag, event, value):
    seen = points.setdefault(tag, {}).get(event.step)
    if seen is None or event.wall_time >= seen[0]:
      points[tag][event.step] = (event.wall_time, value)

  for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
    acc = event_accumulator.EventAccumulator(
        path, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in tags.get("tensors", []):
      for event in acc.Tensors(tag):
        value = tensor_util.make_ndarray(event.tensor_proto)
        if value.size == 1 and value.dtype.kind in "fiu":
          add(tag, event, float(value.reshape(())))
    for tag in tags.get("scalars", []):
      for event in acc.Scalars(tag):
        add(tag, event, float(event.value))
  out = {}
  for tag, by_step in points.items():
    steps = np.array(sorted(by_step), dtype=np.int64)
    out[tag] = (steps, np.array([by_step[s][1] for s in steps], dtype=np.float64))
  return out


def _read_json(path: str) -> dict[str, Any]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def load(workdir: str) -> list[Run]:
  """The runs of ``workdir``: a job's (its ``results.json`` lists them, or, while it is
  running, the subfolders with event files) in order, or the single run in it."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"no such workdir: {workdir}")
  top = _read_json(os.path.join(workdir, "results.json"))
  if "runs" in top:
    names = list(top["runs"])
  elif top or glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    return [Run(top.get("run") or os.path.basename(workdir), top, read_scalars(workdir))]
  else:  # A job still running: its runs so far, in the order they started.
    dirs = [d for d in glob.glob(os.path.join(workdir, "*"))
            if glob.glob(os.path.join(d, "events.out.tfevents.*"))]
    names = [os.path.basename(d) for d in sorted(dirs, key=os.path.getmtime)]
  runs = []
  for name in names:
    run_dir = os.path.join(workdir, name)
    results = top.get("runs", {}).get(name) or _read_json(os.path.join(run_dir, "results.json"))
    runs.append(Run(name, results, read_scalars(run_dir)))
  if not runs:
    raise FileNotFoundError(f"{workdir} holds no kd_jax run (no results.json, no events)")
  return runs


def _groups(runs: Sequence[Run]) -> list[tuple[str, list[Run]]]:
  """Runs named ``<group>_seed<k>`` together, the others alone, in first-seen order."""
  groups: dict[str, list[Run]] = {}
  for run in runs:
    match = re.fullmatch(r"(.+)_seed\d+", run.name)
    groups.setdefault(match.group(1) if match else run.name, []).append(run)
  return list(groups.items())


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def bars(ax, labels: Sequence[str], series: dict[str, list[tuple[float, float] | None]],
          ylabel: str, title: str) -> None:
  """Grouped bars: one group per label, one bar per series (mean, std); ``None``: no bar."""
  width = 0.8 / max(len(series), 1)
  x = np.arange(len(labels))
  low = 100.0
  for i, (name, values) in enumerate(series.items()):
    pos = [x[j] + (i - (len(series) - 1) / 2) * width for j, v in enumerate(values) if v]
    kept = [v for v in values if v]
    if not kept:
      continue
    means, stds = [m for m, _ in kept], [s for _, s in kept]
    bars = ax.bar(pos, means, width, yerr=stds if any(stds) else None, capsize=3,
                  label=name if len(series) > 1 else None)
    ax.bar_label(bars, labels=[f"{m:.1f}" for m in means], fontsize=7, padding=2)
    low = min(low, min(means))
  ax.set_xticks(x, labels, rotation=20 if max(map(len, labels), default=0) > 10 else 0,
                ha="right" if max(map(len, labels), default=0) > 10 else "center")
  ax.set_ylim(max(0.0, low - 10), 100.5 if low > 10 else None)
  ax.set_ylabel(ylabel)
  only = next(iter(series)) if len(series) == 1 else None
  ax.set_title(f"{title} ({only})" if only and only not in title else title)
  if len(series) > 1:
    ax.legend(fontsize=8)


def curves(runs: Sequence[Run], axes=None, tags: Sequence[str] = ("train/loss", "eval/accuracy")):
  """One panel per tag (default: training loss, evaluation accuracy) against the step,
  one line per run; accuracies in percent. Returns the axes."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  if axes is None:
    _, axes = plt.subplots(1, len(tags), figsize=(5 * len(tags), 3.5))
  axes = np.atleast_1d(axes)
  for ax, tag in zip(axes, tags):
    scale = 100.0 if "accuracy" in tag else 1.0
    for run in runs:
      if tag in run.scalars:
        steps, values = run.scalars[tag]
        ax.plot(steps, scale * values, marker="." if len(steps) < 30 else None, label=run.name)
    ax.set_xlabel("step")
    ax.set_ylabel(tag + (" %" if scale != 1 else ""))
    ax.set_title(tag)
    if "loss" in tag and all(v > 0 for r in runs if tag in r.scalars for v in r.scalars[tag][1]):
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.get_lines():
      ax.legend(fontsize=8)
  return axes


def final_accuracy(runs: Sequence[Run], ax=None):
  """Bar per run (seed groups: mean and sample std) of the final test accuracy %."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  ax = ax or plt.subplots(figsize=(6, 3.5))[1]
  labels, values = [], []
  for name, members in _groups(runs):
    accs = [100 * r.results["test_accuracy"] for r in members
            if r.results.get("test_accuracy") is not None]
    if accs:
      labels.append(f"{name} (x{len(accs)})" if len(accs) > 1 else name)
      values.append(_mean_std(accs))
  bars(ax, labels, {"test": values}, "test accuracy %", "final test accuracy")
  return ax


def _tasks(runs: Sequence[Run]) -> list[str]:
  return sorted({k[len("accuracy_"):] for r in runs for k in (r.results.get("eval") or {})
                 if k.startswith("accuracy_")})


def task_accuracy(runs: Sequence[Run], ax=None):
  """Grouped bars: per run (or seed group), accuracy % on each evaluation task."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  ax = ax or plt.subplots(figsize=(7, 3.5))[1]
  tasks = _tasks(runs)
  groups = [(n, m) for n, m in _groups(runs)
            if any(f"accuracy_{t}" in (r.results.get("eval") or {}) for r in m for t in tasks)]
  series = {}
  for task in tasks:
    series[task] = []
    for _, members in groups:
      accs = [100 * r.results["eval"][f"accuracy_{task}"] for r in members
              if f"accuracy_{task}" in (r.results.get("eval") or {})]
      series[task].append(_mean_std(accs) if accs else None)
  bars(ax, [n for n, _ in groups], series, "accuracy %", "accuracy per task")
  return ax


def downstream_top1(run: Run) -> dict[str, float]:
  """``{protocol: top-1 %}`` of a run's downstream evaluation (empty if it had none)."""
  out = {}
  for task in (run.results.get("downstream") or {}).values():
    for protocol, value in task.items():
      if isinstance(value, dict) and "top1" in value:
        out[protocol] = 100 * value["top1"]
  return out


def downstream(runs: Sequence[Run], ax=None):
  """Grouped bars: per backbone (run or seed group), downstream top-1 % per protocol."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  ax = ax or plt.subplots(figsize=(7, 3.5))[1]
  groups = [(n, m) for n, m in _groups(runs) if any(downstream_top1(r) for r in m)]
  protocols = [p for p in _PROTOCOL_NAMES
               if any(p in downstream_top1(r) for _, m in groups for r in m)]
  series = {}
  for protocol in protocols:
    series[_PROTOCOL_NAMES[protocol]] = []
    for _, members in groups:
      values = [downstream_top1(r)[protocol] for r in members if protocol in downstream_top1(r)]
      series[_PROTOCOL_NAMES[protocol]].append(_mean_std(values) if values else None)
  bars(ax, [n for n, _ in groups], series, "top-1 %", "downstream transfer")
  return ax


def read_table(workdir: str) -> list[dict[str, Any]]:
  """The rows of a table job's ``table.json`` (``[]`` without one)."""
  return _read_json(os.path.join(os.path.abspath(os.path.expanduser(workdir)),
                                 "table.json")).get("rows", [])


def published(rows: Sequence[dict[str, Any]], ax=None):
  """Measured (mean +- sample std over seeds) against published top-1 per table cell, one
  colour per row (method); cells without both numbers are left out."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  ax = ax or plt.gca()
  cells = [r for r in rows if r.get("published") is not None and r.get("measured") is not None]
  names = list(dict.fromkeys(r["row"] for r in cells))
  for name in names:
    mine = [r for r in cells if r["row"] == name]
    ax.errorbar([r["published"] for r in mine], [r["measured"] for r in mine],
                yerr=[r["std"] or 0.0 for r in mine], fmt="o", ms=4, capsize=2, label=name)
  if cells:
    values = [r["published"] for r in cells] + [r["measured"] for r in cells]
    lo, hi = min(values) - 1, max(values) + 1
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
  ax.set_xlabel("published top-1 %")
  ax.set_ylabel("measured top-1 % (mean, std)")
  ax.set_title(f"measured vs published ({len(cells)} cells)")
  if 1 < len(names) <= 20:
    ax.legend(fontsize=7, ncol=2)
  return ax


def available(runs: Sequence[Run], table: Sequence[dict[str, Any]] = ()) -> list[str]:
  """The figures this workdir has data for, in ``FIGURES`` order."""
  have = {"curves": any(r.scalars for r in runs),
          "accuracy": any(r.results.get("test_accuracy") is not None for r in runs),
          "tasks": bool(_tasks(runs)),
          "downstream": any(downstream_top1(r) for r in runs),
          "published": any(r.get("published") is not None and r.get("measured") is not None
                           for r in table)}
  return [f for f in FIGURES if have[f]]


def report(workdir: str, out: str, dpi: int = 120) -> list[str]:
  """Writes the figures of ``workdir``: into one PNG if ``out`` ends in ``.png``, else one
  PNG per figure in the folder ``out``. Returns the paths written."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = load(workdir)
  table = read_table(workdir)
  figures = available(runs, table)
  if not figures:
    raise ValueError(f"{workdir}: nothing to plot yet (no scalars, no results)")
  draw = {"accuracy": final_accuracy, "tasks": task_accuracy, "downstream": downstream,
          "published": lambda _, ax: published(table, ax)}
  if out.lower().endswith(".png"):
    # One row per figure; the curves take two panels, the bar charts one each.
    rows = ["curves"] if "curves" in figures else []
    bars = [f for f in figures if f != "curves"]
    layout = rows + [bars[i:i + 2] for i in range(0, len(bars), 2)]
    fig = plt.figure(figsize=(11, 3.8 * len(layout)), constrained_layout=True)
    grid = fig.add_gridspec(len(layout), 2)
    for row, item in enumerate(layout):
      if item == "curves":
        curves(runs, [fig.add_subplot(grid[row, 0]), fig.add_subplot(grid[row, 1])])
      else:
        for col, name in enumerate(item):
          draw[name](runs, fig.add_subplot(grid[row, col]))
    fig.suptitle(os.path.basename(os.path.abspath(workdir)))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return [out]
  os.makedirs(out, exist_ok=True)
  written = []
  for name in figures:
    if name == "curves":
      fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
      curves(runs, axes)
    else:
      fig, ax = plt.subplots(figsize=(7, 3.8), constrained_layout=True)
      draw[name](runs, ax)
    path = os.path.join(out, f"{name}.png")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    written.append(path)
  return written


def main(argv: Sequence[str] | None = None) -> None:
  from kd_jax import runtime  # pylint: disable=g-import-not-at-top
  runtime.quiet_library_logs()  # Before TensorFlow (TensorBoard's reader) is imported.
  from absl import flags  # pylint: disable=g-import-not-at-top
  from kd_jax.cli import parse_flags, set_log_levels  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "A kd_jax workdir (a run or a job).")
  flags.DEFINE_string("out", None, "A .png file (every panel in one figure) or a folder "
                      "(one PNG per figure).")
  from absl import app  # pylint: disable=g-import-not-at-top,unused-import  (--only_check_args)
  rest = parse_flags(list(argv if argv is not None else sys.argv))
  if len(rest) > 1:
    sys.exit(f"kd_jax: error: unexpected arguments {' '.join(rest[1:])}")
  if flags.FLAGS.only_check_args:  # As absl's app.run: the flags parsed, nothing run.
    return
  if not flags.FLAGS.workdir or not flags.FLAGS.out:
    sys.exit("kd_jax: error: --workdir=<a kd_jax workdir> and --out=<file.png or folder> "
             "are required")
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  set_log_levels()
  runtime.quiet_tensorflow()
  try:
    for path in report(flags.FLAGS.workdir, flags.FLAGS.out):
      print(f"kd_jax: wrote {path}")
  except (FileNotFoundError, ValueError) as err:
    sys.exit(f"kd_jax: error: {err}")


if __name__ == "__main__":
  main()

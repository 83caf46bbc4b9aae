"""A job: one run, or several named runs in order (e.g. teacher, KD student, scratch student)."""
from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from kd_jax import config as config_lib
from kd_jax.training import checkpoint as ckpt_lib
from kd_jax.training.loop import train_and_evaluate


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Validates every run up front, then trains them in order; a finished run (its
  results.json exists) is not trained again, an interrupted one resumes.

  Writes ``<workdir>/results.json`` (all runs) and prints a table of test accuracies.
  """
  runs = config_lib.expand_runs(config)
  names = list(runs)
  for i, (name, cfg) in enumerate(runs.items()):
    config_lib.validate(cfg, run_names=names[:i])
  t0 = time.time()
  results = {}
  for name, cfg in runs.items():
    run_dir = os.path.join(workdir, name) if name else workdir
    os.makedirs(run_dir, exist_ok=True)
    if name and ckpt_lib.is_complete_run(run_dir):
      with open(os.path.join(run_dir, "results.json")) as f:
        results[name] = json.load(f)
      _print(f"[{name}] already finished ({run_dir}/results.json): "
             f"test accuracy {100 * results[name]['test_accuracy']:.2f}%")
      continue
    _print(f"[{name or 'train'}] training {cfg.model} in {run_dir}")
    results[name] = train_and_evaluate(cfg, run_dir, run_name=name, job_workdir=workdir)
  if len(runs) == 1 and "" in results:
    return results[""]
  summary = {"runs": results, "job_time_s": round(time.time() - t0, 1)}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(summary, f, indent=2)
    _print(format_table(results))
    groups = seed_groups(results)
    if groups:
      summary["seed_groups"] = groups
      _print(format_groups(groups))
    _print(f"results: {os.path.join(workdir, 'results.json')}; TensorBoard: "
           f"tensorboard --logdir={workdir}")
  return summary


def format_table(results: dict[str, dict[str, Any]]) -> str:
  rows = [("run", "model", "objectives", "test acc %", "time s")]
  for name, r in results.items():
    objs = " + ".join(f"{w:g}*{n}" for n, w in r["objectives"].items())
    if r.get("init_stages"):
      objs = " then ".join([", ".join(f"{n} stage ({e} ep)" for n, e in r["init_stages"].items()),
                            objs])
    rows.append((name, r["model"], objs, f"{100 * r['test_accuracy']:.2f}",
                 f"{r['train_time_s']:.0f}"))
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def seed_groups(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
  """Runs named ``<group>_seed<k>`` summarised per group: test accuracy mean and sample
  standard deviation (ddof 1) over the seeds, in percent."""
  groups: dict[str, list[float]] = {}
  for name, r in results.items():
    match = re.fullmatch(r"(.+)_seed\d+", name)
    if match:
      groups.setdefault(match.group(1), []).append(100 * r["test_accuracy"])
  return {g: {"runs": len(a), "mean": float(np.mean(a)),
              "std": float(np.std(a, ddof=1)) if len(a) > 1 else 0.0, "accuracies": a}
          for g, a in groups.items()}


def format_groups(groups: dict[str, dict[str, Any]]) -> str:
  rows = [("group", "seeds", "test acc % (mean +- std)")]
  rows += [(g, str(v["runs"]), f"{v['mean']:.2f} +- {v['std']:.2f}") for g, v in groups.items()]
  widths = [max(len(row[i]) for row in rows) for i in range(3)]
  lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def _print(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)

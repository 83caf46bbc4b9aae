"""A job: one run, or several named runs in order (e.g. teacher, KD student, scratch student)."""
from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from kd_jax import checkpoint as ckpt_lib
from kd_jax import config as config_lib
from kd_jax import plan as plan_lib
from kd_jax.evaluation import downstream
from kd_jax.training.loop import train_and_evaluate


def run(config: ml_collections.ConfigDict, workdir: str,
        overrides: Sequence[str] = ()) -> dict[str, Any]:
  """Plans every run first (``kd_jax.plan``: anything a run would refuse is refused before
  the first one trains, with nothing written), then trains them in order; a finished run
  (its results.json exists) is not trained again, an interrupted one resumes.
  ``overrides``: the command line's ``--config.*`` paths, each of which must reach a run.

  Writes ``<workdir>/results.json`` (all runs) and prints a table of test accuracies; with
  ``config.published``, also ``table.md`` and ``table.json``: each published number beside
  the measured one (``published_table``). Prints the budget (runs x epochs) first.
  """
  job = plan_lib.make(config, workdir, overrides)
  runs = {name: p.config for name, p in job.runs.items()}
  _print(f"kd_jax: results go to {workdir}")
  if len(runs) > 1:
    _print(budget_line(runs, workdir))
  if jax.process_index() == 0:
    ckpt_lib.check_writable(workdir)  # Before anything compiles.
  t0 = time.time()
  results = {}
  for name, run_plan in job.runs.items():
    cfg, run_dir = run_plan.config, run_plan.workdir
    if not run_plan.seeds:
      os.makedirs(run_dir, exist_ok=True)
    if run_plan.seeds and run_plan.is_complete():
      for seed_name, seed_dir in zip(config_lib.run_names({name: cfg}),
                                     run_plan.seed_workdirs().values()):
        with open(os.path.join(seed_dir, "results.json")) as f:
          results[seed_name] = json.load(f)
        _print(f"[{seed_name}] already finished ({seed_dir}/results.json)")
    elif run_plan.seeds:
      _print(f"[{name or 'train'}] training {cfg.model}, seeds {list(run_plan.seeds)} side by "
             f"side ({cfg.seed_batches} batches), in "
             f"{', '.join(run_plan.seed_workdirs().values())}")
      results.update(train_and_evaluate(run_plan, job_workdir=workdir))
      continue  # (config.seeds takes no downstream phase: refused by config.validate.)
    elif name and ckpt_lib.is_complete_run(run_dir):
      with open(os.path.join(run_dir, "results.json")) as f:
        results[name] = json.load(f)
      _print(f"[{name}] already finished ({run_dir}/results.json)")
    elif not run_plan.trains:
      # Evaluation only (of a random backbone, or of another run's): nothing to train.
      results[name] = {"run": name, "model": cfg.model, "teachers": [], "objectives": {},
                       "evaluates": cfg.downstream.backbone, "test_accuracy": None,
                       "eval": {}, "steps": 0, "epochs": 0, "train_time_s": 0.0}
    else:
      _print(f"[{name or 'train'}] training {cfg.model} in {run_dir}")
      results[name] = train_and_evaluate(run_plan, job_workdir=workdir)
    changed = downstream.changes(results[name], cfg) if cfg.downstream.data.name else None
    if changed is not None:
      # The downstream phase: the run's results.json gains it once it is done, and it is
      # done again for another downstream config (a finished fine-tuning run of another
      # config was refused by the plan).
      if changed:
        _print(f"[{name or 'train'}] evaluating downstream again: its results were of another "
               f"config ({'; '.join(changed)[:300]})")
      task = config_lib.downstream_task_name(cfg.downstream.data)
      source = cfg.downstream.backbone
      backbone_dir = None if source in ("", "random") else (
          os.path.join(workdir, source) if source in runs else source)
      if backbone_dir and source in results:
        results[name]["model"] = results[source]["model"]
      results[name]["downstream"] = {task: downstream.evaluate(
          cfg, run_dir, run_name=name, backbone_dir=backbone_dir, job_workdir=workdir)}
      if jax.process_index() == 0:
        with open(os.path.join(run_dir, "results.json"), "w") as f:
          json.dump(results[name], f, indent=2)
  if len(runs) == 1 and "" in results:
    return results[""]
  summary = {"runs": results, "job_time_s": round(time.time() - t0, 1)}
  groups = seed_groups(results)
  if groups:
    summary["seed_groups"] = groups
  table = published_table(config.published, results, groups) if config.get("published") else None
  if table is not None:
    summary["published_table"] = table
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(summary, f, indent=2)
    _print(format_table(results))
    if groups:
      _print(format_groups(groups))
    if table is not None:
      source = config.get("published_source", "")
      with open(os.path.join(workdir, "table.json"), "w") as f:
        json.dump({"source": source, "rows": table}, f, indent=2)
      markdown = format_published(table, source)
      with open(os.path.join(workdir, "table.md"), "w") as f:
        f.write(markdown + "\n")
      _print(markdown)
      _print(f"table: {os.path.join(workdir, 'table.md')} and table.json")
    _print(f"results: {os.path.join(workdir, 'results.json')}; TensorBoard: "
           f"tensorboard --logdir={workdir}")
  return summary


def _downstream_top1(r: dict[str, Any], protocol: str) -> float | None:
  """A run's downstream top-1 (percent) for ``protocol``, if it was evaluated."""
  for task in (r.get("downstream") or {}).values():
    if protocol in task:
      return 100 * task[protocol]["top1"]
  return None


_PROTOCOLS = (("linear_probe", "probe %"), ("finetune", "finetune %"))


def format_table(results: dict[str, dict[str, Any]]) -> str:
  shown = [(p, title) for p, title in _PROTOCOLS
           if any(_downstream_top1(r, p) is not None for r in results.values())]
  rows = [("run", "model", "objectives", "test acc %") + tuple(t for _, t in shown) + ("time s",)]
  for name, r in results.items():
    objs = " + ".join(f"{w:g}*{n}" for n, w in r["objectives"].items())
    init = r.get("init_phases") or r.get("init_stages")  # (init_stages: the old name.)
    if init:
      objs = " then ".join([", ".join(f"{n} phase ({e} ep)" for n, e in init.items()), objs])
    extra = tuple("-" if _downstream_top1(r, p) is None else f"{_downstream_top1(r, p):.2f}"
                  for p, _ in shown)
    acc = "-" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}"
    if not objs:
      evaluates = r.get("evaluates", "random")
      objs = "(random init)" if evaluates == "random" else f"(the model of {evaluates})"
    rows.append((name, r["model"], objs, acc) + extra
                + (f"{r['train_time_s']:.0f}",))
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def _summary(values: list[float]) -> dict[str, Any]:
  return {"mean": float(np.mean(values)),
          "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
          "accuracies": values}


def seed_groups(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
  """Runs named ``<group>_seed<k>`` summarised per group: test accuracy mean and sample
  standard deviation (ddof 1) over the seeds, in percent, of the last evaluation; likewise
  the best evaluation of each run (``best``: the best epoch's accuracy), each eval task's
  accuracy (``task/<name>``) and downstream protocol's top-1 (``linear_probe``...)."""
  groups: dict[str, dict[str, list[float]]] = {}
  for name, r in results.items():
    match = re.fullmatch(r"(?:(.+)_)?seed\d+", name)  # (seed<k>: a job's one run's seeds.)
    if not match:
      continue
    g = groups.setdefault(match.group(1) or "train", {"seeds": 0})
    g["seeds"] += 1
    if r["test_accuracy"] is not None:
      g.setdefault("test", []).append(100 * r["test_accuracy"])
    if r.get("best_test_accuracy") is not None:
      g.setdefault("best", []).append(100 * r["best_test_accuracy"])
    for key, value in (r.get("eval") or {}).items():
      if key.startswith("accuracy_"):
        g.setdefault("task/" + key[len("accuracy_"):], []).append(100 * value)
    for protocol, _ in _PROTOCOLS:
      top1 = _downstream_top1(r, protocol)
      if top1 is not None:
        g.setdefault(protocol, []).append(top1)
  out = {}
  for name, metrics in groups.items():
    out[name] = {"runs": metrics.pop("seeds")}
    out[name].update(_summary(metrics.pop("test")) if "test" in metrics else {})
    out[name].update({k: _summary(v) for k, v in metrics.items()})
  return out


def format_groups(groups: dict[str, dict[str, Any]]) -> str:
  extra = sorted({k for v in groups.values() for k in v
                  if k.startswith("task/") or k in dict(_PROTOCOLS)})
  extra = (["best"] if any("best" in v for v in groups.values()) else []) + extra
  rows = [("group", "seeds", "test acc % (mean +- std)")
          + tuple("best epoch %" if k == "best" else f"{k} %" for k in extra)]
  fmt = lambda m: f"{m['mean']:.2f} +- {m['std']:.2f}" if m and "mean" in m else "-"
  rows += [(g, str(v["runs"]), fmt(v)) + tuple(fmt(v.get(k)) for k in extra)
           for g, v in groups.items()]
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def budget_line(runs: dict[str, ml_collections.ConfigDict], workdir: str) -> str:
  """The job's size before it starts: runs that train x their epochs (and how many of them
  are already finished in ``workdir``)."""
  training = {n: cfg for n, cfg in runs.items()
              if not (cfg.downstream.data.name and cfg.downstream.backbone)}
  epochs = sum(cfg.num_epochs for cfg in training.values())
  by_length: dict[int, int] = {}
  for cfg in training.values():
    by_length[cfg.num_epochs] = by_length.get(cfg.num_epochs, 0) + 1
  parts = " + ".join(f"{n} x {e}" for e, n in sorted(by_length.items(), reverse=True))
  done = sum(all(ckpt_lib.is_complete_run(os.path.join(workdir, m))
                 for m in config_lib.run_names({n: cfg}))
             for n, cfg in training.items() if n)
  return (f"budget: {len(training)} runs that train, {parts} epochs = {epochs:,} epochs "
          f"(initialisation phases not counted); {done} already finished")


def published_table(published, results: dict[str, dict[str, Any]],
                    groups: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per published number: ``table``, ``row``, ``group`` (a seed group, or a run),
  ``published`` (None where none was published), ``measured`` (the mean over the seeds of
  the last epoch's accuracy, percent; None if not run), ``std`` (sample std), ``best`` and
  ``best_std`` (the same of each run's best evaluation: papers report either, often
  without saying which), ``seeds`` and ``difference`` (measured - published)."""
  out = []
  for table, row, group, value in published:
    measured, std, n, best, best_std = None, None, 0, None, None
    if group in groups and "mean" in groups[group]:
      g = groups[group]
      measured, std, n = g["mean"], g["std"], g["runs"]
      if "best" in g:
        best, best_std = g["best"]["mean"], g["best"]["std"]
    elif group in results and results[group].get("test_accuracy") is not None:
      measured, std, n = 100 * results[group]["test_accuracy"], 0.0, 1
      if results[group].get("best_test_accuracy") is not None:
        best, best_std = 100 * results[group]["best_test_accuracy"], 0.0
    value = None if value < 0 else float(value)
    out.append({"table": table, "row": row, "group": group, "published": value,
                "measured": measured, "std": std, "best": best, "best_std": best_std,
                "seeds": n,
                "difference": None if measured is None or value is None else measured - value})
  return out


def format_published(rows: list[dict[str, Any]], source: str = "") -> str:
  """``published_table`` as a Markdown table: "measured" is the last epoch's accuracy, "best
  epoch" each run's best evaluation."""
  num = lambda v: "-" if v is None else f"{v:.2f}"
  lines = [f"Published: {source}" if source else "", "",
           "| table | row | published % | measured % (mean ± std) | best epoch % (mean ± std) "
           "| seeds | measured − published |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    measured = "-" if r["measured"] is None else f"{r['measured']:.2f} ± {r['std']:.2f}"
    best = "-" if r.get("best") is None else f"{r['best']:.2f} ± {r['best_std']:.2f}"
    diff = "-" if r["difference"] is None else f"{r['difference']:+.2f}"
    lines.append(f"| {r['table']} | {r['row']} | {num(r['published'])} | {measured} | {best} | "
                 f"{r['seeds']} | {diff} |")
  return "\n".join(lines).lstrip("\n")


def _print(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)

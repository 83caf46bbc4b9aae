"""``python -m kd_jax.train --dry_run``: what a job would do, printed, and nothing trained.

First the plan (``kd_jax.plan``: every run checked as training would check it), for every
run in the order the job trains them: the model, the data (splits, sizes, whether
prepared), the batch size, epochs and steps, each teacher and where it comes from (a run of
this job, a checkpoint, or an evaluation-only backbone), each objective with every field and
hyperparameter (defaults included, marked), initialisation phases, the downstream phase.

Then an estimate of each run's training time. Runs that compile to the same train step
(same models, objectives, batch, dtype: e.g. the seeds of a table) share one measurement. The
distinct steps are measured (a few steps of each, random teachers and batches of the real
shapes), those that weigh most in the job's time first (the first one of at most the median
size), for ``measure_s`` seconds (at least one); each step left is estimated from XLA's cost
analysis (the FLOPs of the student's forward and backward pass and of the teachers' forward
passes, the objectives' own arithmetic not counted) at the FLOP rate measured here, and says
so. Evaluation and compilation are not included. Writes nothing to the workdir (the
embedded data sets are prepared in the TFDS data_dir if they are not).
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from kd_jax import checkpoint as ckpt_lib
from kd_jax import plan as plan_lib
from kd_jax.bench import benchmarking
from kd_jax.data import info as data_info
from kd_jax.distill import objectives as objectives_lib
from kd_jax.distill import teachers as teachers_lib
from kd_jax.models import conv as conv_lib
from kd_jax.training import seeds as seeds_lib

# Seconds of measuring steps before the rest are estimated from their FLOPs.
MEASURE_S = 3.0


def _duration(seconds: float) -> str:
  return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else \
      f"{seconds / 86400:.1f} days"


def _value(v: Any) -> str:
  if isinstance(v, (list, tuple)):
    return "[" + ", ".join(_value(x) for x in v) + "]"
  return repr(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v)


def objective_lines(obj: objectives_lib.Objective) -> list[str]:
  """``name: loss=..., weight=..., teacher=..., features, hyperparameters`` (defaults marked
  ``(default)``) and the initialisation phase, if any."""
  fields = [f"loss={obj.loss}", f"weight={_value(obj.weight)}"]
  if obj.teacher is not None:
    fields.append(f"teacher={_value(obj.teacher)}")
  if obj.reads is not None:
    fields += [f"student_feature={_value(obj.student_feature)}",
               f"teacher_feature={_value(obj.teacher_feature)}"]
  if obj.view:
    fields.append(f"view={_value(obj.view)}")
  for name in obj.method.hparams():
    given = name in obj.given
    fields.append(f"{name}={_value(getattr(obj.method, name))}{'' if given else ' (default)'}")
  lines = [f"{obj.name}: " + ", ".join(fields)]
  if obj.method.views:
    lines.append(f"  makes the view(s) {', '.join(obj.method.views)}: the student and the "
                 f"teachers also run on each, every step")
  if obj.init_epochs:
    lr = "the reference's" if obj.init_lr is None else _value(obj.init_lr)
    lines.append(f"  its initialisation phase: {obj.init_epochs} epochs, learning rate {lr}"
                 f"{'' if obj.main_phase else '; not in the main phase'}")
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


def _teacher_line(teacher: plan_lib.TeacherPlan) -> str:
  if teacher.run:
    where = f"run {teacher.run!r} of this job ({teacher.path})"
  else:
    where = f"checkpoint {teacher.path} ({'found' if teacher.found else 'NOT FOUND'})"
  which = f", its {teacher.which} checkpoint" if teacher.which != "latest" else ""
  head = f", its head {teacher.head!r}" if teacher.head else ""
  return f"{teacher.name}: {teacher.model} from {where}{which}{head}"


def _run_lines(run: plan_lib.RunPlan) -> list[str]:
  cfg, lines = run.config, []
  if not run.trains:
    what = (f"a randomly initialised {cfg.model}" if cfg.downstream.backbone == "random"
            else f"the backbone of {cfg.downstream.backbone!r}")
    lines.append(f"{run.tag} evaluates {what} (no training)")
  else:
    steps, spe = run.num_steps, run.steps_per_epoch
    seeds = f"seed {cfg.seed}" if not run.seeds else (
        f"seeds {', '.join(map(str, run.seeds))} side by side (one step for all; "
        + (f"shared batches: those of seed {cfg.seed}" + (
            ", the teachers run once for all seeds" if run.teachers else "")
           if cfg.seed_batches == "shared" else
           "independent batches: each seed its own" + (
               ", the teachers run on each seed's" if run.teachers else ""))
        + ("; students " + ("vmapped" if seeds_lib.compute(cfg.seed_compute) == seeds_lib.VMAP
                            else "one after the other") + f" (seed_compute {cfg.seed_compute})")
        + f"), written to {', '.join(run.seed_workdirs().values())}")
    lines.append(f"{run.tag} trains {cfg.model}, {seeds}, batch {cfg.batch_size}, "
                 f"{cfg.num_epochs} epochs = {'?' if steps is None else f'{steps:,}'} steps "
                 f"({'?' if spe is None else spe} per epoch), {cfg.dtype}, optimizer "
                 f"{cfg.optimizer.name} lr {cfg.optimizer.lr:g} ({cfg.optimizer.schedule})")
    lines.append(f"  data {_data_line(cfg.data, run.info)}")
    lines += [f"  teacher {_teacher_line(t)}" for t in run.teachers.values()]
    for obj in run.objectives:
      first, *rest = objective_lines(obj)
      lines.append(f"  objective {first}")
      lines += [f"  {line}" for line in rest]
    if cfg.student_heads:
      lines.append(f"  student heads: {', '.join(cfg.student_heads)}")
    if cfg.teacher_cache:
      lines.append(f"  teacher cache: {cfg.teacher_cache}")
  if cfg.downstream.data.name:
    d = cfg.downstream
    lines.append(f"  downstream: {', '.join(d.protocols)} on {d.data.name} "
                 f"({d.data.train_split} / {d.data.eval_split})")
  return lines


def describe(config: ml_collections.ConfigDict, workdir: str, measure: bool = True,
             print_fn: Callable[[str], None] = print, overrides: Sequence[str] = (),
             measure_s: float = MEASURE_S) -> dict[str, dict[str, Any]]:
  """Prints the job (see the module docstring); returns ``{run: {steps, step_s, estimate_s,
  how}}`` (``how``: 'measured' or 'estimated'; None where nothing trains or nothing was
  measured). What would stop the job at its start on this machine (a data set that cannot be
  had, a teacher checkpoint not there, a workdir it cannot write) is printed last, one line
  each."""
  job = plan_lib.make(config, workdir, overrides, missing=True)
  print_fn(f"kd_jax: dry run of {len(job.runs)} run(s) in {workdir} (nothing is trained or "
           f"written)")
  for run in job.runs.values():
    for line in _run_lines(run):
      print_fn(line)
  out = {name: {"steps": run.num_steps, "step_s": None, "estimate_s": None, "how": None}
         for name, run in job.runs.items()}
  if measure:
    _estimate(job, out, print_fn, measure_s)
  writable = ckpt_lib.writable_problem(workdir)
  for problem in job.problems + ((writable,) if writable else ()):
    print_fn(f"kd_jax: training here would stop at its start: {problem}")
  return out


def _estimate(job: plan_lib.JobPlan, out: dict[str, dict[str, Any]],
              print_fn: Callable[[str], None], measure_s: float) -> None:
  """Measures distinct steps for ``measure_s`` seconds, estimates the rest from their FLOPs
  (see the module docstring), prints a line per run and the total, fills ``out``."""
  groups: dict[str, list[str]] = {}
  for name, run in job.runs.items():
    if run.trains:
      groups.setdefault(run.step_key(), []).append(name)
  if not groups:
    return
  print_fn(f"kd_jax: estimating {sum(map(len, groups.values()))} run(s) that train: "
           f"{len(groups)} distinct train step(s), measured for up to {measure_s:g} s, the "
           f"rest estimated from XLA's cost analysis")
  flops: dict[str, float | None] = {}
  cache: dict[str, float | None] = {}
  if len(groups) > 1:
    flops = {key: _step_flops(job.runs[names[0]], cache) for key, names in groups.items()}
  # The steps that weigh most in the job's time first: FLOPs x steps x runs.
  weight = lambda key: (flops.get(key) or 0.0) * sum(
      out[n]["steps"] or 0 for n in groups[key])
  order = sorted(groups, key=weight, reverse=True)
  if flops and all(flops.values()):
    # The first measurement calibrates the FLOP rate: the heaviest group among the steps of
    # at most the median size (a big model's step would cost the dry run a minute).
    median = statistics.median(flops.values())
    first = next(k for k in order if flops[k] <= median)
    order = [first] + [k for k in order if k != first]
  measured: dict[str, float] = {}
  t0 = time.perf_counter()
  for key in order:
    if measured and time.perf_counter() - t0 >= measure_s:
      break
    measured[key] = benchmarking.step_seconds(job.runs[groups[key][0]])
  rates = [flops[k] / s for k, s in measured.items() if flops.get(k) and s > 0]
  rate = statistics.median(rates) if rates else None
  for key, names in groups.items():
    if key in measured:
      step_s, how, note = measured[key], "measured", "measured here"
    elif flops[key] and rate:
      step_s, how = flops[key] / rate, "estimated"
      note = (f"estimated: {flops[key] / 1e9:.3g} GFLOP/step by XLA's cost analysis at the "
              f"{rate / 1e9:.3g} GFLOP/s measured here")
    else:
      continue
    for name in names:
      steps = out[name]["steps"]
      out[name].update(step_s=step_s, how=how,
                       estimate_s=None if steps is None else step_s * steps)
      tag = job.runs[name].tag
      if steps is None:
        print_fn(f"{tag} estimate: {1000 * step_s:.0f} ms/step ({note}); the number of steps "
                 f"is known once the data set is prepared")
      else:
        print_fn(f"{tag} estimate: {1000 * step_s:.0f} ms/step x {steps:,} steps = "
                 f"{_duration(step_s * steps)} of training steps ({note})")
  training = [r for r in out.values() if r["steps"] != 0]
  estimates = [r["estimate_s"] for r in training if r["estimate_s"] is not None]
  if estimates:
    print_fn(f"kd_jax: estimated training time: {_duration(sum(estimates))} (evaluation and "
             f"compilation not included)"
             f"{'' if len(estimates) == len(training) else ' (runs of unknown length not counted)'}")


def _model_flops(module, input_shape, batch: int, train: bool,
                 cache: dict[str, float | None]) -> float | None:
  """FLOPs of one forward pass (``train``: forward and backward in training mode) of
  ``module`` on a batch, by XLA's cost analysis of its native convolutions (lowered, not
  compiled); None where the backend gives none."""
  key = repr((module, tuple(input_shape), batch, train))
  if key in cache:
    return cache[key]
  x = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
  with conv_lib.native():
    variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0),
                                                   jnp.zeros((1, *input_shape)), train=False))
    if train:
      def fn(v, x):
        def loss(params):
          (logits, _), _ = module.apply({**v, "params": params}, x, train=True,
                                        mutable=["batch_stats"],
                                        rngs={"dropout": jax.random.PRNGKey(0)})
          return jnp.sum(logits.astype(jnp.float32))
        return jax.grad(loss)(v["params"])
    else:
      fn = lambda v, x: module.apply(v, x, train=False)
    try:
      analysis = jax.jit(fn).lower(variables, x).cost_analysis()
    except Exception:  # pylint: disable=broad-except  (a backend without cost analysis)
      analysis = None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  cache[key] = float(analysis["flops"]) if analysis and analysis.get("flops") else None
  return cache[key]


def _step_flops(run: plan_lib.RunPlan, cache: dict[str, float | None]) -> float | None:
  """FLOPs of the run's main train step: the student forward and backward, and the forward
  pass of each teacher its main-phase objectives read (for seeds side by side: the student's
  per seed, the teachers' once in shared mode, per seed in independent mode)."""
  batch, shape = run.config.batch_size, run.info.input_shape
  seeds = max(1, len(run.seeds))  # Seeds side by side: the student per seed; the teachers
  once = not run.seeds or run.config.seed_batches == "shared"  # once in shared mode.
  student = _model_flops(run.student(), shape, batch, True, cache)
  total = None if student is None else seeds * student
  modules = run.teacher_modules()
  for name in teachers_lib.used(run.objectives):
    f = _model_flops(modules[name], shape, batch, False, cache)
    total = None if total is None or f is None else total + f * (1 if once else seeds)
  return total

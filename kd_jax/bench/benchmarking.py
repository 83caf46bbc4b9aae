"""Speed measurements of a config's train step (``python -m kd_jax.benchmark``; see there).

``run(config, ...)`` returns one record (a flat dict) per measurement; ``json_line`` writes
one as JSON. Timing (``timing.time_windows``): ``windows`` windows of ``steps`` steps after
compilation and ``warmup`` steps; each window ends by waiting for its last result (steps are
chained through the state, so the device ran every step of the window); windows that spread
more than ``max_spread`` are measured again (at most ``attempts`` times); the median window
is reported with the slowest and fastest, the spread and the attempts.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import statistics
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kd_jax import methods as methods_lib
from kd_jax import models, recipes, runtime
from kd_jax import plan as plan_lib
from kd_jax.data import pipelines
from kd_jax.distill import host_inputs
from kd_jax.distill import objectives as objectives_lib
from kd_jax.distill import teachers as teachers_lib
from kd_jax.distill.objectives import Outputs
from kd_jax.distill.step import make_train_step
from kd_jax.errors import KdJaxError
from kd_jax.models import conv as conv_lib
from kd_jax.recipes import baselines
from kd_jax.bench import host as host_lib
from kd_jax.bench import timing
from kd_jax.training import build, optim, sharding
from kd_jax.training import seeds as seeds_lib



def json_line(record: dict[str, Any]) -> str:
  return json.dumps(record, sort_keys=False)


def bench_plan(config: ml_collections.ConfigDict, batch_size: int | None = None
               ) -> "plan_lib.RunPlan":
  """The plan of the run a benchmark measures: the config's single run, or the last run of a
  job that reads a teacher (else its last run); ``batch_size`` for every run if given.
  Teacher checkpoints need not exist (the benchmark's teachers are random)."""
  if batch_size:
    config = ml_collections.ConfigDict(config.to_dict())
    config.batch_size = batch_size
    for run in (config.get("runs") or {}).values():
      if "batch_size" in run:
        run.batch_size = batch_size
  job = plan_lib.make(config, "", missing=True)
  trained = [r for r in job.runs.values() if r.trains]
  with_teacher = [r for r in trained if r.teachers]
  return (with_teacher or trained or list(job.runs.values()))[-1]


def _compile(fn, *args, **jit_kw):
  t0 = time.perf_counter()
  compiled = jax.jit(fn, **jit_kw).lower(*args).compile()
  return compiled, time.perf_counter() - t0


def _flops(fn, *args) -> float | None:
  """FLOPs of one call of ``fn`` by XLA's cost analysis of its lowered program with native
  convolutions (the CPU path's chunked matmuls and Winograd transforms are not what a
  convolution costs); None where the backend gives none."""
  with conv_lib.native():
    try:  # A fresh function: no trace cached with the CPU path's convolutions is reused.
      analysis = jax.jit(lambda *a: fn(*a)).lower(*args).cost_analysis()
    except Exception:  # pylint: disable=broad-except  (a backend without cost analysis)
      return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  return float(analysis["flops"]) if analysis and analysis.get("flops") else None


def _memory(compiled) -> dict[str, Any]:
  out: dict[str, Any] = {}
  try:
    m = compiled.memory_analysis()
    out["memory_bytes"] = int(m.argument_size_in_bytes + m.output_size_in_bytes
                              + m.temp_size_in_bytes - m.alias_size_in_bytes)
  except Exception:  # pylint: disable=broad-except  (not every backend implements it)
    out["memory_bytes"] = None
  stats = jax.local_devices()[0].memory_stats() or {}
  out["device_peak_bytes"] = stats.get("peak_bytes_in_use")  # Process-wide peak so far.
  return out


class _Bench:
  """What every measurement of one benchmark shares: the config, devices, random batch."""

  def __init__(self, plan, steps, windows, warmup, attempts, max_spread, print_fn):
    config = plan.config
    self.plan, self.config, self.steps, self.windows, self.warmup = (plan, config, steps,
                                                                      windows, warmup)
    self.attempts, self.max_spread = attempts, max_spread
    self.noisy: list[str] = []
    self.print = print_fn
    self.batch_size = batch_size = config.batch_size
    self.info = plan.info
    self.num_classes = plan.num_classes
    self.index_size = plan.index_size
    self.dtype = plan.dtype
    self.mesh = sharding.data_mesh()
    self.repl = sharding.replicated(self.mesh)
    self.batch_sh = sharding.batch_sharding(self.mesh)
    rng = np.random.RandomState(0)
    local = batch_size // jax.process_count()
    # The data's device augmentation (``data.augment_on``) is part of the step: the batch
    # is then uint8, as the pipeline ships it.
    self.augment = self.info.device_augment
    images = rng.normal(size=(local, *self.info.input_shape)).astype(np.float32)
    self.float_images = sharding.shard_batch({"image": images}, self.batch_sh)["image"]
    if self.augment is not None:
      images = rng.randint(0, 256, images.shape).astype(np.uint8)
    host = {"image": images,
            "label": rng.randint(0, self.num_classes, local).astype(np.int32),
            "index": rng.randint(0, self.index_size, local).astype(np.int32)}
    if not plan.has_labels:
      del host["label"]
    if not plan.all_labeled:
      host["label_mask"] = np.ones(local, np.float32)
    self.host, self.batch = host, sharding.shard_batch(host, self.batch_sh)
    self.teacher_modules = plan.teacher_modules()
    self.teacher_vars = {
        name: jax.device_put(models.init(module, jax.random.PRNGKey(100 + i),
                                         self.info.input_shape), self.repl)
        for i, (name, module) in enumerate(sorted(self.teacher_modules.items()))}
    self.student = plan.student()
    spe = max(1, self.index_size // batch_size)
    self.schedule = optim.make_schedule(config.optimizer, spe, config.num_epochs, batch_size)
    self.spe = spe
    devices = jax.devices()
    self.common = {
        "device_kind": devices[0].device_kind, "device_count": len(devices),
        "backend": jax.default_backend(), "jax_version": jax.__version__,
        "batch_size": batch_size, "dtype": config.dtype, "model": config.model,
        "teachers": ",".join(f"{n}={t['model']}" for n, t in sorted(config.teachers.items())),
        "input_shape": list(self.info.input_shape),
        "cpu_conv": ("native" if jax.default_backend() != "cpu" or
                     not conv_lib.use_patch_matmuls() else
                     "patch_matmuls+winograd" if conv_lib.use_winograd() else "patch_matmuls"),
        "huge_pages": runtime.huge_pages(),
        **host_lib.describe(),
        "steps_per_window": steps, "windows": windows, "max_spread": max_spread,
    }

  def time_steps(self, run_step: Callable[[Any], Any], carry) -> tuple[list[float], int]:
    """Seconds per step of each window (``timing.time_windows``), and the attempts made.
    ``last_timed`` keeps the step and where it ended, to be timed again (``again``)."""
    per_step, attempts, carry = timing.time_windows(
        run_step, carry, steps=self.steps, windows=self.windows, warmup=self.warmup,
        wait=jax.block_until_ready, attempts=self.attempts, max_spread=self.max_spread)
    self.last_timed = (run_step, carry)
    return per_step, attempts

  def again(self, measurement: str, method: str, timed_step) -> dict[str, Any]:
    """A record of ``timed_step`` (a ``(run_step, carry)`` kept from ``time_steps``) timed
    anew, marked ``repeat``."""
    run_step, carry = timed_step
    return self.record(measurement, method, self.time_steps(run_step, carry), None, {},
                       repeat=True)

  def record(self, measurement: str, method: str, timed: tuple[Sequence[float], int],
             compile_s: float | None, memory: dict[str, Any], **extra) -> dict[str, Any]:
    per_step, attempts = timed
    spread = timing.spread(per_step)
    rec = {"measurement": measurement, "method": method,
           **timing.summary(self.batch_size, per_step, attempts),
           "compile_s": None if compile_s is None else round(compile_s, 2),
           **memory, **extra, **self.common}
    mem = rec.get("device_peak_bytes") or rec.get("memory_bytes")
    noisy = spread > self.max_spread
    if noisy:
      self.noisy.append(f"{measurement} {method}")
    self.print(f"{measurement:<16} {method:<8} {rec['images_per_s']:>9.1f} "
               f"({rec['images_per_s_min']:.1f}-{rec['images_per_s_max']:.1f}) "
               f"{rec['step_ms']:>10.1f} {'' if compile_s is None else f'{compile_s:.1f}':>9} "
               f"{'' if not mem else f'{mem / 2**20:.0f}':>9} {100 * spread:>7.1f}"
               f"{f' (x{attempts})' if attempts > 1 else ''}{' noisy' if noisy else ''}")
    return rec

  def parse(self, objectives_cfg, measurement_only: bool = False
            ) -> list[objectives_lib.Objective]:
    """The objectives of ``objectives_cfg`` on this run (planned and checked like any run's;
    ``measurement_only``: see ``RunPlan.with_objectives``)."""
    return list(self.plan.with_objectives(objectives_cfg, measurement_only).objectives)

  def samplers(self, objectives, data=None) -> dict[str, Any]:
    """The objectives' host samplers, from ``data``'s train labels or (no data) random labels
    of ``index_size`` examples, as random as the batch's."""
    labeled = self.plan.has_labels
    if data is not None:
      split = methods_lib.TrainSplit(data.index_size, data.has_labels, data.train_labels)
    else:
      labels = lambda: np.random.RandomState(2).randint(0, self.num_classes, self.index_size)
      split = methods_lib.TrainSplit(self.index_size, labeled, labels)
    return host_inputs.build(objectives, split)

  def with_host_inputs(self, samplers) -> dict[str, Any]:
    """The device-resident batch with what ``samplers`` draw for it."""
    drawn = host_inputs.draw(samplers, self.host, self.config.seed, 0, 0)
    return {**self.batch, **sharding.shard_batch(drawn, self.batch_sh)} if drawn else self.batch

  def state_and_step(self, objectives, samplers, seeds: Sequence[int] = ()):
    used = teachers_lib.used(objectives)
    tx = build.main_optimizer(self.config, objectives, self.schedule)
    teachers = {n: self.teacher_modules[n] for n in used}
    # RunPhase-only objectives (AB, FSP) build their heads from the teacher too.
    read = teachers_lib.used(objectives, main_phase_only=False)
    state = build.create_train_state(
        self.student, {n: self.teacher_modules[n] for n in read},
        {n: self.teacher_vars[n] for n in read}, objectives, tx, self.info.input_shape,
        self.index_size, self.config.seed, self.repl, samplers, seeds=seeds)
    step = make_train_step(self.student, teachers, objectives, tx,
                           has_labels="label" in self.batch, steps_per_epoch=self.spe,
                           augment=self.augment)
    return state, step, used

  def seeds_batch(self, samplers, n: int, mode: str) -> dict[str, Any]:
    """The batch of ``n`` seeds side by side: the device-resident one with each seed's host
    draws stacked (``shared``), or (``independent``) every array stacked, one per seed."""
    draws = [host_inputs.draw(samplers, self.host, k, 0, 0) for k in range(n)]
    host = {**self.host, **{k: np.stack([d[k] for d in draws]) for k in draws[0]}}
    if mode == seeds_lib.INDEPENDENT:
      host = {k: v if host_inputs.is_host_key(k) else np.stack([v] * n) for k, v in host.items()}
    return sharding.shard_batch(host, self.batch_sh,
                                stacked=lambda k: seeds_lib.is_stacked(k, mode))

  def measure_step(self, measurement: str, method: str, objectives,
                   cached: bool = False, seeds: int = 0, mode: str = seeds_lib.SHARED,
                   how: str = seeds_lib.VMAP) -> tuple[dict, Any]:
    """The train step on the device-resident batch; ``cached``: with the teachers' outputs
    read from the batch (a teacher cache) instead of computed; ``seeds``: the step of that
    many seeds side by side (``training/seeds.py``) with their batches ``mode``, computed
    ``how`` (``seeds.seeded_step``)."""
    samplers = self.samplers(objectives)
    state, step, used = self.state_and_step(objectives, samplers, tuple(range(seeds)))
    rng = jax.device_put(jax.random.PRNGKey(1), self.repl)
    batch, extra = self.with_host_inputs(samplers), {}
    if cached:
      step, batch, extra = self._cached_step(objectives, state, rng, used, batch)
    shardings = dict(in_shardings=(self.repl, self.batch_sh, self.repl))
    counted = step  # FLOPs: of the vmapped form (XLA counts a loop's body once).
    if seeds:
      step = seeds_lib.seeded_step(step, mode, rng, how)
      counted = seeds_lib.seeded_step(counted, mode, rng, seeds_lib.VMAP)
      rng = jax.device_put(seeds_lib.keys(range(seeds), 1), self.repl)
      batch, shardings = self.seeds_batch(samplers, seeds, mode), {}
      extra = {"seeds": seeds, "seed_batches": mode, "seed_compute": how}
    compiled, compile_s = _compile(step, state, batch, rng, **shardings,
                                   out_shardings=(self.repl, self.repl), donate_argnums=(0,))
    memory = _memory(compiled)
    flops = _flops(counted, state, batch, rng)
    timed = self.time_steps(lambda s: compiled(s, batch, rng)[0], state)
    return self.record(measurement, method, timed, compile_s, memory, flops=flops,
                       **extra), (step, used)

  def _cached_step(self, objectives, state, rng, used, batch):
    """The step reading ``used`` teachers' outputs from the batch, and ``batch`` with the
    outputs that step reads (random values of the right shapes)."""
    from kd_jax.training import teacher_cache  # pylint: disable=g-import-not-at-top
    x = self.float_images
    shapes = {n: Outputs(*jax.eval_shape(
        lambda x, n=n: self.teacher_modules[n].apply(self.teacher_vars[n], x, train=False), x))
        for n in used}
    tx = build.main_optimizer(self.config, objectives, self.schedule)
    teachers = {n: self.teacher_modules[n] for n in used}
    make = lambda cached: make_train_step(self.student, teachers, objectives, tx,
                                         has_labels="label" in self.batch,
                                         steps_per_epoch=self.spe, augment=self.augment,
                                         cached_teachers={n: shapes[n] for n in cached})
    needed = teacher_cache.needed_outputs(make, state, batch, rng, shapes)
    rs = np.random.RandomState(1)
    local = self.batch_size // jax.process_count()
    host = {teacher_cache.batch_key(t, o): rs.normal(
        size=(local, *(shapes[t].logits if o == "logits" else shapes[t].features[o]).shape[1:])
    ).astype(np.float32) for t, outs in needed.items() for o in outs}
    batch = {**batch, **sharding.shard_batch(host, self.batch_sh)}
    return make(used), batch, {"cached_outputs": {t: o for t, o in needed.items()}}

  def measure_teachers(self, used: Sequence[str]) -> dict[str, Any]:
    modules = {n: self.teacher_modules[n] for n in used}

    def forward(tvars, images, token):
      outs = {n: Outputs(*m.apply(tvars[n], images, train=False)) for n, m in modules.items()}
      # A data dependency between consecutive calls: they run one after the other.
      token = token + sum(o.logits[0, 0].astype(jnp.float32) for o in outs.values()) * 0
      return outs, token

    tvars = {n: self.teacher_vars[n] for n in used}
    token = jax.device_put(jnp.zeros((), jnp.float32), self.repl)
    compiled, compile_s = _compile(forward, tvars, self.float_images, token,
                                   in_shardings=(self.repl, self.batch_sh, self.repl))
    flops = _flops(forward, tvars, self.float_images, token)
    timed = self.time_steps(lambda t: compiled(tvars, self.float_images, t)[1], token)
    return self.record("teacher_forward", "+".join(used), timed, compile_s, _memory(compiled),
                       flops=flops)

  def measure_pipeline(self, method: str, objectives, mock_data: bool,
                       with_step: bool = True) -> list[dict]:
    """``pipeline_only`` (the input pipeline alone) and, ``with_step``, ``pipeline`` (the
    step fed by it through device prefetch); [] where the data cannot be read."""
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    needed = self.warmup + self.steps * self.windows * max(1, self.attempts) + 2
    ctx = (tfds.testing.mock_data(num_examples=self.batch_size * (needed + 1))
           if mock_data else contextlib.nullcontext())
    data_cfg = ml_collections.ConfigDict(self.config.data.to_dict())
    if mock_data:
      data_cfg.num_train_examples = self.batch_size * (needed + 1)
      data_cfg.num_eval_examples = self.batch_size
    with ctx:
      try:
        data = pipelines.create_dataset(data_cfg, self.batch_size)
      except KdJaxError as err:
        self.print(f"pipeline: skipped: {err}")
        return []

      samplers = self.samplers(objectives, data)

      def batches() -> Iterator[dict]:  # As the train loop reads them, host inputs drawn.
        step = 0
        for epoch in itertools.count():
          for batch in data.train_batches(epoch, 0, self.config.seed):
            yield {**batch, **host_inputs.draw(samplers, batch, self.config.seed, 0, step)}
            step += 1

      records = []
      it = batches()
      first = next(it)
      # What the host hands the device per example (image, index, label, host inputs).
      local = self.batch_size // jax.process_count()
      sizes = {"host_bytes_per_image": sum(np.asarray(v).nbytes for v in first.values())
                                       // local,
               "image_dtype": str(first["image"].dtype),
               "augment_on": "device" if self.augment is not None else "host"}
      timed = self.time_steps(lambda _: next(it)["image"], None)
      records.append(self.record("pipeline_only", method, timed, None, {}, **sizes))
      if not with_step:
        return records
      state, step, _ = self.state_and_step(objectives, samplers)
      rng = jax.device_put(jax.random.PRNGKey(1), self.repl)
      jitted = jax.jit(step, in_shardings=(self.repl, self.batch_sh, self.repl),
                       out_shardings=(self.repl, self.repl), donate_argnums=(0,))
      on_device = sharding.prefetch_to_device(batches(), self.batch_sh)
      state = jitted(state, next(on_device), rng)[0]  # Compiles: not in a timed window.
      timed = self.time_steps(lambda s: jitted(s, next(on_device), rng)[0], state)
      records.append(self.record("pipeline", method, timed, None, {}, **sizes))
    return records


def step_seconds(plan, steps: int = 5, warmup: int = 2) -> float:
  """Seconds per train step of a run (a ``kd_jax.plan.RunPlan``; its teachers random), from
  one window of ``steps`` steps after compilation and ``warmup`` steps (the step of all its
  seeds, for a run of seeds side by side)."""
  bench = _Bench(plan, steps, 1, warmup, 1, timing.MAX_SPREAD, lambda _: None)
  rec, _ = bench.measure_step("distill_step", "config", list(plan.objectives),
                              seeds=len(plan.seeds), mode=plan.config.seed_batches,
                              how=seeds_lib.compute(plan.config.seed_compute))
  return rec["step_ms"] / 1000.0


def run(config: ml_collections.ConfigDict, *, steps: int = 5, windows: int = 5,
        warmup: int = 2, batch_size: int | None = None, methods: str = "",
        pipeline: bool = True, mock_data: bool = False, teacher_cache: bool = False,
        only_pipeline: bool = False, attempts: int = timing.ATTEMPTS,
        max_spread: float = timing.MAX_SPREAD,
        print_fn: Callable[[str], None] = print, seeds: int = 0,
        rounds: int = 1) -> list[dict[str, Any]]:
  """Measures ``config`` (see the module docstring); returns the records, printing a table.
  Compile times are of real compilations: JAX's persistent compilation cache is off here.
  ``only_pipeline``: the input pipeline alone, no network step. ``seeds`` > 1: also each
  method's step of that many seeds side by side, in both modes (``_measure_seeds``).
  ``rounds`` > 1: the networks and every method's step timed again in that many rounds in
  turn, the overheads from the medians (``_measure_methods``)."""
  with runtime.without_persistent_compilation_cache():
    return _run(config, steps=steps, windows=windows, warmup=warmup, batch_size=batch_size,
                methods=methods, pipeline=pipeline, mock_data=mock_data,
                teacher_cache=teacher_cache, only_pipeline=only_pipeline, attempts=attempts,
                max_spread=max_spread, print_fn=print_fn, seeds=seeds, rounds=rounds)


def _method_objectives(methods: str, run_name: str, config) -> dict[str, Any]:
  """``{method: config.objectives}`` for ``--methods`` (RepDistiller's weights; the logit
  baselines' CIFAR-100 settings for resnet32x4 -> resnet8x4), or the config's own
  objectives."""
  known = (*recipes.METHODS, *baselines.METHODS)
  if methods == "all":
    return {m: recipes.method_objectives(m) for m in known}
  if methods:
    names = [m.strip() for m in methods.split(",") if m.strip()]
    bad = [m for m in names if m not in known]
    if bad:
      raise KdJaxError(f"--methods: unknown {', '.join(bad)}; valid: all, {', '.join(known)}")
    return {m: recipes.method_objectives(m) for m in names}
  return {run_name or "config": dict(config.objectives)}


def _measure_methods(bench: "_Bench", method_cfgs, student_rec: dict, student_timer,
                     teacher_cache: bool, print_fn, rounds: int = 1) -> list[dict]:
  """Each method's distill step (and, with ``teacher_cache``, its cached step) and the
  teacher forward it needs; then the student step and the teacher forwards timed again
  (a busy host drifts within a benchmark); with ``rounds`` > 1, then rounds - 1 more rounds
  timing the networks and every distill step again, one after the other. Overhead ratios
  from the median of each one's timings (for the networks with one round, the mean of the
  two), printed; the records."""
  records = []
  teacher_recs: dict[tuple[str, ...], dict] = {}
  teacher_timers: dict[tuple[str, ...], Any] = {}
  method_timers: dict[str, Any] = {}
  measured, cached_recs = [], {}
  for method, objectives_cfg in method_cfgs.items():
    objectives = bench.parse(objectives_cfg)
    used = tuple(teachers_lib.used(objectives))
    if used and used not in teacher_recs:
      teacher_recs[used] = bench.measure_teachers(used)
      teacher_timers[used] = bench.last_timed
      records.append(teacher_recs[used])
    rec, _ = bench.measure_step("distill_step", method, objectives)
    method_timers[method] = bench.last_timed
    rec["teacher_in_step"] = bool(used)
    records.append(rec)
    measured.append((method, rec, used))
    if teacher_cache and used:
      cached, _ = bench.measure_step("cached_step", method, objectives, cached=True)
      cached["speedup_vs_distill_step"] = round(rec["step_ms"] / cached["step_ms"], 3)
      cached_recs[method] = cached
      records.append(cached)
  # The networks alone again after the methods, then (rounds > 1) everything in turn.
  student_all = [student_rec["step_ms"]]
  teacher_all = {used: [rec["step_ms"]] for used, rec in teacher_recs.items()}
  method_all = {method: [rec["step_ms"]] for method, rec, _ in measured}
  for r in range(rounds):
    rep = bench.again("student_step", "ce", student_timer)
    student_timer = bench.last_timed  # (The step donates its state: time the newest.)
    records.append({**rep, "round": r + 1})
    student_all.append(rep["step_ms"])
    for used, rec in teacher_recs.items():
      rep = bench.again("teacher_forward", rec["method"], teacher_timers[used])
      teacher_timers[used] = bench.last_timed
      records.append({**rep, "round": r + 1})
      teacher_all[used].append(rep["step_ms"])
    if r + 1 == rounds:
      break
    for method, _, _ in measured:
      rep = bench.again("distill_step", method, method_timers[method])
      method_timers[method] = bench.last_timed
      records.append({**rep, "round": r + 2})
      method_all[method].append(rep["step_ms"])
  student_ms = statistics.median(student_all)
  teacher_ms = {used: statistics.median(ms) for used, ms in teacher_all.items()}
  for method, rec, used in measured:
    base_ms = student_ms + (teacher_ms[used] if used else 0.0)
    step_ms = statistics.median(method_all[method])
    if rounds > 1:
      rec["rounds"], rec["step_ms_median"] = rounds, round(step_ms, 2)
    rec["overhead"] = round(step_ms / base_ms, 3)
    base_flops = [student_rec["flops"]] + ([teacher_recs[used]["flops"]] if used else [])
    if rec["flops"] and all(base_flops):
      # The arithmetic the method adds (adapters, other views, the loss) beside the two
      # networks', and the time per FLOP of the step beside theirs.
      rec["flop_ratio"] = round(rec["flops"] / sum(base_flops), 3)
      rec["overhead_per_flop"] = round(rec["overhead"] / rec["flop_ratio"], 3)
    if method in cached_recs:
      # The cached step is the student step plus the objectives' own arithmetic.
      rec["overhead_beyond_objectives"] = round(
          step_ms / (teacher_ms[used] + cached_recs[method]["step_ms"]), 3)
  if cached_recs:
    print_fn("teacher cache: distill_step / cached_step (teacher outputs read from the batch):")
    for method, cached in cached_recs.items():
      print_fn(f"  {method:<8} {cached['speedup_vs_distill_step']:.2f}x")
  timings = ("each network timed before and after the methods: their mean" if rounds == 1
             else f"medians: the networks' {rounds + 1} timings, each distill step's "
                  f"{rounds}, timed in {rounds} rounds in turn")
  print_fn(f"overhead = distill_step / (teacher_forward + student_step) in time ({timings}); "
           "flops: the same ratio in FLOPs "
           "(XLA's count: what the method adds, e.g. adapters, other views); per flop: "
           "overhead / flops" + (
               "; beyond objectives: distill_step / (teacher_forward + cached_step)"
               if cached_recs else "") + ":")
  print_fn(f"  {'method':<8} {'overhead':>8} {'flops':>6} {'per flop':>8}"
           f"{'  beyond objectives' if cached_recs else ''}")
  for method, rec, used in measured:
    note = "" if used else "  (no teacher in the main step: its objective acts in a phase)"
    beyond = rec.get("overhead_beyond_objectives")
    ratio, per = rec.get("flop_ratio"), rec.get("overhead_per_flop")
    print_fn(f"  {method:<8} {rec['overhead']:>8.3f} {'-' if ratio is None else f'{ratio:.3f}':>6}"
             f" {'-' if per is None else f'{per:.3f}':>8}"
             f"{'' if beyond is None else f'  {beyond:>18.3f}'}{note}")
  return records


def _measure_seeds(bench: "_Bench", method_cfgs, records: list[dict], n: int,
                   print_fn) -> list[dict]:
  """Each method's step of ``n`` seeds side by side in both modes, vmapped and looped
  (``seeds_step``), its images/s per seed and ``gain`` = ``n`` x the one-seed step's time /
  its time (what one program of ``n`` seeds saves over ``n`` runs of one), printed; the
  records."""
  one = {r["method"]: r for r in records if r["measurement"] == "distill_step"
         and not r.get("repeat")}
  out = []
  for method, objectives_cfg in method_cfgs.items():
    for mode in (seeds_lib.SHARED, seeds_lib.INDEPENDENT):
      for how in (seeds_lib.VMAP, seeds_lib.LOOP):
        rec, _ = bench.measure_step("seeds_step", f"{method}/{mode[:5]}/{how}",
                                    bench.parse(objectives_cfg), seeds=n, mode=mode, how=how)
        rec["images_per_s_all_seeds"] = round(n * rec["images_per_s"], 2)
        rec["gain"] = round(n * one[method]["step_ms"] / rec["step_ms"], 3)
        out.append(rec)
  print_fn(f"{n} seeds side by side (seeds_step: images/s per seed; gain = {n} x distill_step "
           f"/ seeds_step in time, over {n} runs of one seed):")
  print_fn(f"  {'method':<8} {'batches':<11} {'students':<8} {'images/s per seed':>17} "
           f"{'gain':>6}")
  for rec in out:
    method = rec["method"].split("/")[0]
    print_fn(f"  {method:<8} {rec['seed_batches']:<11} {rec['seed_compute']:<8} "
             f"{rec['images_per_s']:>17.1f} {rec['gain']:>6.2f}")
  return out


def _run(config, *, steps, windows, warmup, batch_size, methods, pipeline, mock_data,
         teacher_cache, only_pipeline, attempts, max_spread, print_fn, seeds=0, rounds=1):
  if (steps < 1 or windows < 1 or warmup < 0 or attempts < 1 or max_spread < 0
      or rounds < 1):
    raise KdJaxError("--steps, --windows, --attempts and --rounds must be >= 1, --warmup and "
                     "--max_spread >= 0")
  plan = bench_plan(config, batch_size)
  config = plan.config
  method_cfgs = _method_objectives(methods, plan.name, config)
  if methods and len(config.teachers) != 1:
    raise KdJaxError("--methods needs a config with exactly one teacher")
  bench = _Bench(plan, steps, windows, warmup, attempts, max_spread, print_fn)
  c = bench.common
  print_fn(f"kd_jax.benchmark: {c['device_count']} x {c['device_kind']} ({c['backend']}), "
           f"jax {c['jax_version']}, batch {config.batch_size}, {config.dtype}, "
           f"student {config.model}, teachers {c['teachers'] or 'none'}, "
           f"input {tuple(bench.info.input_shape)}, CPU convolutions: {c['cpu_conv']}, "
           f"host malloc on huge pages: {'yes' if c['huge_pages'] else 'no'}")
  print_fn(host_lib.header(c))
  if bench.info.num_train_examples is None:
    print_fn(f"(train split size unknown without the prepared data: index/memory bank size "
             f"{plan_lib.DEFAULT_INDEX_SIZE})")
  print_fn(f"{'measurement':<16} {'method':<8} {'images/s':>9} (min-max) {'ms/step':>10} "
           f"{'compile s':>9} {'memory MB':>9} {'spread %':>7}")
  if only_pipeline:
    first = next(iter(method_cfgs))
    records = bench.measure_pipeline(first, bench.parse(method_cfgs[first]), mock_data,
                                     with_step=False)
    for r in records:
      print_fn(f"input pipeline alone: augmented on the {r['augment_on']}, "
               f"{r['host_bytes_per_image']} host bytes per image, {r['image_dtype']} images"
               f"{', mock data' if mock_data else ''}")
    return records
  records = []
  student_rec, _ = bench.measure_step("student_step", "ce",
                                      bench.parse({"ce": {"weight": 1.0}},
                                                  measurement_only=True))
  student_timer = bench.last_timed
  records.append(student_rec)
  records += _measure_methods(bench, method_cfgs, student_rec, student_timer, teacher_cache,
                              print_fn, rounds)
  if seeds > 1:
    records += _measure_seeds(bench, method_cfgs, records, seeds, print_fn)
  if pipeline:
    first = next(iter(method_cfgs))
    pipe = bench.measure_pipeline(first, bench.parse(method_cfgs[first]), mock_data)
    if pipe:
      device = next(r for r in records if r["measurement"] == "distill_step")
      pipe[1]["vs_device_resident"] = round(pipe[1]["images_per_s"] / device["images_per_s"], 3)
      print_fn(f"pipeline-fed step / device-resident step: {pipe[1]['vs_device_resident']:.3f}"
               f" (input pipeline alone: {pipe[0]['images_per_s']:.0f} images/s"
               f"{', mock data' if mock_data else ''}; augmented on the "
               f"{pipe[0]['augment_on']}, {pipe[0]['host_bytes_per_image']} host bytes per "
               f"image, {pipe[0]['image_dtype']} images)")
    records += pipe
  if bench.noisy:
    print_fn(f"noisy: the windows of {', '.join(bench.noisy)} spread more than "
             f"{100 * max_spread:.0f}% in each of {attempts} attempt(s): the host was busy; "
             f"their numbers (and the ratios built on them) are not comparable")
  return records

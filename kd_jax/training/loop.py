"""The training loop of one run: its phases (initialisation phases, then the main phase)
trained one after the other by one loop, into one checkpoint folder, with evaluation and
writers.

``train_and_evaluate(plan)`` trains a run's ``config.model`` with its objectives (reading its
teachers) in its workdir, resumes from the newest intact checkpoint in ``workdir``
when there is one (in whichever phase it was written), evaluates every
``eval_every_epochs`` and writes ``<workdir>/results.json``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from clu import metric_writers

from kd_jax import checkpoint as ckpt_lib
from kd_jax import config as config_lib
from kd_jax.distill import host_inputs
from kd_jax.distill import teachers as teachers_lib
from kd_jax.distill.state import TrainState
from kd_jax.distill.step import make_eval_step, make_train_step
from kd_jax.errors import Preempted, TrainingDiverged
from kd_jax.training import build
from kd_jax.training import metrics as metrics_lib
from kd_jax.training import faults, optim, sharding, phases, teacher_cache
from kd_jax.training import seeds as seeds_lib
from kd_jax.training.preemption import Preemption
from kd_jax.training.phases import RunPhase


def _log(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


@dataclasses.dataclass
class _Out:
  """Where one seed of a run writes: its workdir (checkpoints, events, results.json). A run
  without ``config.seeds`` has one, its own workdir; a run of seeds one per seed, each
  written as a run of that seed alone would be."""
  name: str
  workdir: str
  ckpts: ckpt_lib.Checkpoints
  meta: dict[str, Any]
  writer: Any
  tensorboard: Any
  time_before: float = 0.0  # Training time of earlier, interrupted invocations of this run.
  eval_result: dict[str, float] = dataclasses.field(default_factory=dict)

  @property
  def tag(self) -> str:
    return f"[{self.name}] " if self.name else ""

  def log(self, msg: str) -> None:
    _log(self.tag + msg)


@dataclasses.dataclass
class _Run:
  """What every phase of one run shares: where it writes, how it evaluates and saves."""
  config: ml_collections.ConfigDict
  name: str
  parts: build.Parts
  outs: list[_Out]
  batch_sharding: Any
  eval_step: Callable
  t_start: float
  seeds: tuple[int, ...] = ()  # config.seeds: the state has their axis (training/seeds.py).

  @property
  def tag(self) -> str:
    return f"[{self.name}] " if self.name else ""

  @property
  def mode(self) -> str:
    return self.config.seed_batches

  def log(self, msg: str) -> None:
    _log(self.tag + msg)

  def stacked(self, key: str) -> bool:
    """Whether the batch array ``key`` has the seed axis (``seeds.is_stacked``)."""
    return bool(self.seeds) and seeds_lib.is_stacked(key, self.mode)

  def computed(self, acc) -> list[dict[str, float]]:
    """A clu Collection of the step's metrics (with the seeds' axis for a run with seeds)
    computed: one dict per output (``outs``)."""
    acc = sharding.host_value(acc)
    each = [acc] if not self.seeds else [seeds_lib.take(acc, i) for i in range(len(self.outs))]
    return [{k: float(v) for k, v in a.compute().items()} for a in each]

  def evaluate(self, state: TrainState) -> list[dict[str, float]]:
    acc = None
    for batch in sharding.prefetch_to_device(self.parts.data.eval_batches(), self.batch_sharding):
      m = self.eval_step(state, batch)
      acc = m if acc is None else acc.merge(m)
    return self.computed(acc)

  def seed_items(self, items: dict[str, Any], i: int) -> dict[str, Any]:
    """Seed ``i``'s part of checkpointed items (the step counter is the seeds' one)."""
    if not self.seeds:
      return items
    return {k: v if k == "step" else seeds_lib.take(v, i) for k, v in items.items()}

  def each_seeds_items(self, items: dict[str, Any]) -> list[dict[str, Any]]:
    """``[seed_items(items, i) for each output i]``, the arrays sliced in one dispatch."""
    if not self.seeds:
      return [items]
    shared = {k: v for k, v in items.items() if k == "step"}
    return [{**part, **shared} for part in seeds_lib.unstack(
        {k: v for k, v in items.items() if k not in shared}, len(self.outs))]

  def save(self, phase: RunPhase, step: int, state: TrainState, rng) -> None:
    spe = self.parts.data.steps_per_epoch
    items = {**state.checkpoint_items(), "rng": rng}
    for out, seed_items in zip(self.outs, self.each_seeds_items(items)):
      out.ckpts.save(phase.offset + step, seed_items,
                     {**out.meta, "phase": phase.name, "step": step, "epoch": step // spe,
                      "batch_in_epoch": step % spe,
                      "train_time_s": out.time_before + time.time() - self.t_start})

  def wait(self) -> None:
    for out in self.outs:
      out.ckpts.wait()

  def latest_step(self) -> int | None:
    steps = [out.ckpts.latest_step() for out in self.outs]
    return None if None in steps else min(steps)

  def check_finite(self, phase: RunPhase, state: TrainState,
                   train_metrics: list[dict[str, float]] | None) -> None:
    """Raises TrainingDiverged (one line, with the fix) once a step was not finite (in any
    seed: the seeds stop together)."""
    bads = np.atleast_1d(sharding.host_value(state.bad_step))
    if (bads < 0).all():
      return
    i = int(np.argmax(bads >= 0))
    bad, out = int(bads[i]), self.outs[i]
    self.wait()
    if not phase.is_main:
      name = phase.objective.name
      raise TrainingDiverged(f"{out.tag}the initialisation phase of {name!r} stopped: its "
                             f"loss became non-finite at phase step {bad}; lower "
                             f"config.objectives.{name}.init_lr (now {phase.lr:g})")
    metrics = None if train_metrics is None else train_metrics[i]
    culprits = [k for k, v in (metrics or {}).items() if not math.isfinite(v)]
    if culprits:
      what = f"the loss became non-finite ({', '.join(culprits)})"
    elif metrics is None:  # Checked before a checkpoint: the losses were not read.
      what = "the loss or its gradients became non-finite"
    else:
      what = "the gradients became non-finite (the losses were finite)"
    last = self.latest_step()
    kept = f"the last good checkpoint (step {last}) is kept in {out.ckpts.dir}" \
        if last is not None else "no checkpoint had been written yet"
    # Steps are counted as the console and TensorBoard count them: bad_step 0 is step 1.
    raise TrainingDiverged(
        f"[{out.name or 'train'}] stopped at step {bad + 1}: {what}; nothing from that step "
        f"on was applied; {kept}. Lower config.optimizer.lr (now {self.config.optimizer.lr}), "
        f"check the data, or set config.skip_nonfinite_steps=True to skip such steps")

  def preempted(self, phase: RunPhase, step: int) -> Preempted:
    dirs = ", ".join(f"{out.ckpts.dir}/{phase.offset + step}" for out in self.outs)
    where = f"{dirs}; run the same command to resume"
    if phase.is_main:
      return Preempted(f"{self.tag}preempted at step {step}/{phase.num_steps}: checkpoint "
                       f"saved in {where}")
    return Preempted(f"{self.tag}preempted in the initialisation phase of "
                     f"{phase.objective.name!r} at phase step {step}/{phase.num_steps}: "
                     f"checkpoint saved in {where}")


def _report(run: _Run, phase: RunPhase, step: int, computed: list[dict[str, float]],
            schedule, progress) -> None:
  """Writes a phase's train metrics, each seed's to its writer (and the main phase's
  learning rate and progress line, with the mean loss over the seeds)."""
  spe = run.parts.data.steps_per_epoch
  for out, metrics in zip(run.outs, computed):
    if phase.is_main:
      metrics["learning_rate"] = float(schedule(step - 1))
      out.writer.write_scalars(step, {f"train/{k}": v for k, v in metrics.items()})
    else:
      out.writer.write_scalars(step, {f"{phase.name}/loss": metrics["loss"]})
      out.log(f"{phase.name} epoch {step // spe}/{phase.num_steps // spe}: "
              f"loss {metrics['loss']:.4g}")
  if phase.is_main:
    progress(step, float(np.mean([m["loss"] for m in computed])))


def run_phase(run: _Run, phase: RunPhase, state: TrainState, rng, step: int,
              preemption: Preemption, cache=None, schedule=None, progress=None) -> TrainState:
  """Trains ``phase`` from ``step`` to its end: metrics, evaluation (main phase), checkpoints
  and, within an entered ``preemption``, SIGTERM (a checkpoint after the current step, then
  ``Preempted``; the same command resumes there)."""
  data, config = run.parts.data, run.config
  spe = data.steps_per_epoch
  samplers = {n: s for n, s in run.parts.samplers.items()
              if n in ([phase.objective.name] if phase.objective else
                       [o.name for o in run.parts.objectives if o.main_phase])}
  acc = None
  while step < phase.num_steps:
    epoch, start = divmod(step, spe)
    if run.seeds:
      batches = seeds_lib.batches(data, epoch, start, run.seeds, run.mode, config.seed,
                                  samplers, phase.stream, step)
    else:
      batches = data.train_batches(epoch, start, config.seed, stream=phase.stream)
      if cache is not None:
        batches = cache.attach(batches)
      batches = host_inputs.attach(batches, samplers, config.seed, phase.stream, step)
    for batch in sharding.prefetch_to_device(batches, run.batch_sharding, stacked=run.stacked):
      state, m = phase.step_fn(state, batch, rng)
      acc = m if acc is None else acc.merge(m)
      step += 1
      faults.at(phase.fault, step)
      if progress is not None:
        progress.tick(step)
      end_of_epoch = step % spe == 0
      if step % phase.log_every == 0 or end_of_epoch:
        computed = run.computed(acc)
        acc = None
        run.check_finite(phase, state, computed)
        _report(run, phase, step, computed, schedule, progress)
      if phase.is_main and end_of_epoch and (
          (step // spe) % config.eval_every_epochs == 0 or step == phase.num_steps):
        model = {"params": state.params["student"], "batch_stats": state.batch_stats}
        for out, result, seed_model in zip(run.outs, run.evaluate(state),
                                           run.each_seeds_items(model)):
          out.eval_result = result
          out.writer.write_scalars(step, {f"eval/{k}": v for k, v in result.items()})
          out.ckpts.save_best(step, seed_model,  # orbax keeps the best.
                              {**out.meta, "step": step}, result["accuracy"])
      saved = step % phase.checkpoint_every == 0 or step == phase.num_steps
      if saved:
        run.check_finite(phase, state, None)
        run.save(phase, step, state, rng)
        if phase.is_main:
          faults.at("save", step)
      if preemption.reached(phase.offset + step, run.outs[0].ckpts.latest):
        run.check_finite(phase, state, None)
        if not saved:
          run.save(phase, step, state, rng)
        run.wait()
        for out in run.outs:
          out.ckpts.close()
          out.writer.flush()
        raise run.preempted(phase, step)
  return state


def _train_main(run: _Run, phase: RunPhase, state: TrainState, rng, step: int,
                preemption: Preemption, cache, schedule) -> TrainState:
  """The main phase, with its progress line (and the run's hyperparameters written first)."""
  config = run.config
  if step == 0:
    for out in run.outs:
      out.writer.write_hparams({k: v for k, v in config.to_dict().items()
                                if not isinstance(v, dict)})
  tensorboard = run.outs[0].tensorboard if len(run.outs) == 1 else \
      metric_writers.MultiWriter([out.tensorboard for out in run.outs])
  with metrics_lib.Progress(phase.num_steps, run.parts.data.steps_per_epoch, config.batch_size,
                            tensorboard, run.name, step, config.log_every_steps) as progress:
    return run_phase(run, phase, state, rng, step, preemption, cache, schedule, progress)


def _main_step(config, parts: build.Parts, state: TrainState, tx, rng, log):
  """The main phase's jitted train step, and the teacher cache it reads (None if off)."""
  data, teachers = parts.data, parts.teachers
  teacher_shapes: dict[str, Any] = {}  # Of the cached teachers.
  make_step = lambda cached=(): make_train_step(
      parts.student, parts.teacher_modules, parts.objectives, tx, data.has_labels,
      data.steps_per_epoch, cached_teachers={n: teacher_shapes[n] for n in cached},
      skip_nonfinite=config.skip_nonfinite_steps, augment=data.device_augment)
  cache, step_fn = None, None
  if config.teacher_cache:
    used = teachers_lib.used(parts.objectives)
    x = jax.ShapeDtypeStruct((data.local_batch_size, *data.input_shape), jnp.float32)
    teacher_shapes.update(teachers_lib.output_shapes({n: teachers[n][0] for n in used},
                                                     {n: teachers[n][1] for n in used}, x))
    image = jax.ShapeDtypeStruct(x.shape, jnp.uint8) if data.device_augment else x
    example = {"image": image, "index": jax.ShapeDtypeStruct(x.shape[:1], jnp.int32),
               **host_inputs.specs(parts.samplers, data.local_batch_size)}
    if data.has_labels:
      example["label"] = jax.ShapeDtypeStruct(x.shape[:1], jnp.int32)
    if data.labeled_fraction < 1.0:
      example["label_mask"] = jax.ShapeDtypeStruct(x.shape[:1], jnp.float32)
    needed = teacher_cache.needed_outputs(make_step, state, example, rng, teacher_shapes)
    cache = teacher_cache.build(config, data, teachers, parts.teacher_metas, needed, log)
    step_fn = make_step(used)
  else:
    step_fn = make_step()
  return step_fn, cache


def _start_state(phase: RunPhase, state: TrainState, repl) -> TrainState:
  """The state ``phase`` starts from, given the run's fresh state (the main phase's own)."""
  return state if phase.is_main else phase.enter(state, repl)


def _restore(run: _Run, run_phases: list[RunPhase], state: TrainState, repl):
  """``(phase index, state, rng, step in that phase)`` of the newest intact checkpoint, or
  None when there is none."""
  by_name = {s.name: i for i, s in enumerate(run_phases)}
  index_of = lambda meta: by_name[meta.get("phase", phases.MAIN)]  # No phase: written before
  templates: dict[int, TrainState] = {}                            # phases were recorded.

  def items(meta):
    i = index_of(meta)
    if i not in templates:
      templates[i] = _start_state(run_phases[i], state, repl)
    return {**templates[i].checkpoint_items(), "rng": run_phases[i].rng}

  found = _restore_seeds(run, items)
  if found is None:
    return None
  restored, saved = found
  index = index_of(saved)
  step = int(saved["step"])
  if run_phases[index].is_main:
    spe = run.parts.data.steps_per_epoch
    dirs = ", ".join(str(out.ckpts.dir) for out in run.outs)
    run.log(f"resuming from the checkpoint at step {step} (epoch {step // spe + 1}, batch "
            f"{step % spe}) in {dirs}")
  return index, templates[index].replace_checkpointed(restored), restored["rng"], step


def _restore_seeds(run: _Run, items: Callable[[dict], dict[str, Any]]
                   ) -> tuple[dict[str, Any], dict[str, Any]] | None:
  """``(state items, meta)`` of the newest intact checkpoint of every seed (their items
  stacked on the seeds' axis), or None when a seed has none. A kill between the seeds'
  saves leaves some seeds a step ahead: all resume from the newest step they share and the
  later checkpoints are deleted, so that the steps after it are trained and saved anew."""
  limit = None
  while True:
    found = []
    for i, out in enumerate(run.outs):
      seed_items = lambda meta, i=i: run.seed_items(items(meta), i)
      found.append(out.ckpts.restore_latest_intact(seed_items, out.meta, out.log, limit))
    steps = {f[0] if f else None for f in found}
    if len(steps) == 1:
      break
    if None in steps:
      for out in run.outs:
        out.ckpts.delete_after(None)
      return None
    limit = min(steps)
  if found[0] is None:
    return None
  for out, (_, _, meta) in zip(run.outs, found):
    out.time_before = float(meta.get("train_time_s", 0.0))
    out.ckpts.delete_after(found[0][0])
  if not run.seeds:
    return found[0][1], found[0][2]
  restored = [f[1] for f in found]
  step_counter = restored[0]["step"]
  stacked = seeds_lib.stack([{k: v for k, v in r.items() if k != "step"} for r in restored])
  return {**stacked, "step": step_counter}, found[0][2]


def _results(run: _Run, out: _Out, config, step: int,
             best: tuple[int, float] | None) -> dict[str, Any]:
  """One output's results (a seed's, of a run with seeds), written to its results.json."""
  objectives = run.parts.objectives
  results = {
      "run": out.name, "model": config.model, "teachers": sorted(run.parts.teachers),
      "objectives": {o.name: o.weight for o in objectives if o.main_phase},
      "init_phases": {o.name: o.init_epochs for o in objectives if o.init_epochs},
      "test_accuracy": out.eval_result["accuracy"], "eval": out.eval_result,
      "steps": step, "epochs": config.num_epochs,
      # The best of the evaluations (every eval_every_epochs): what some papers report.
      "best_test_accuracy": best[1] if best else None,
      "best_epoch": best[0] // run.parts.data.steps_per_epoch if best else None,
      "train_time_s": round(out.time_before + time.time() - run.t_start, 1),
  }
  if run.seeds:
    results.update(seed=out.meta["seed"], trained_with={"run": run.name, "seeds": list(run.seeds),
                                                        "seed_batches": run.mode})
  if jax.process_index() == 0:
    with open(os.path.join(out.workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  out.log(f"done: test accuracy {100 * results['test_accuracy']:.2f}% "
          f"({os.path.join(out.workdir, 'results.json')})")
  return results


def train_and_evaluate(plan, job_workdir: str | None = None) -> dict[str, Any]:
  """Trains one run (a ``kd_jax.plan.RunPlan``) to its ``num_epochs`` in its workdir
  (resuming if possible); returns the results dict. ``job_workdir``: where the runs named
  by ``config.init_from`` live. A run with ``config.seeds`` trains them side by side
  (``training/seeds.py``), each seed written to its own folder (``RunPlan.seed_workdirs``);
  it returns ``{seed's run name: its results}``."""
  t_start = time.time()
  config, workdir, run_name = plan.config, plan.workdir, plan.name
  seeds = plan.seeds
  parts = build.parts(plan)
  data, spe = parts.data, parts.data.steps_per_epoch
  mesh = sharding.data_mesh()
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  schedule = optim.make_schedule(config.optimizer, spe, config.num_epochs, config.batch_size)
  tx = build.main_optimizer(config, parts.objectives, schedule)
  state = build.create_train_state(parts.student, parts.teacher_modules,
                                   parts.teacher_variables, parts.objectives, tx,
                                   data.input_shape, data.index_size, config.seed, repl,
                                   parts.samplers, parts.output_shapes, seeds)
  rng = jax.jit(lambda: seeds_lib.keys(seeds, 1) if seeds else
                jax.random.PRNGKey(config.seed + 1), out_shardings=repl)()
  # The seeds' step in shared mode reads one data key (device augmentation): the key a run
  # of config.seed alone has in that phase (PRNGKey(seed + 1) main, seed + 2 initialisation).
  how = seeds_lib.compute(config.seed_compute)
  seeded = (lambda fn, offset=1: seeds_lib.seeded_step(
      fn, config.seed_batches, jax.random.PRNGKey(config.seed + offset), how)) if seeds else None

  run_phases = phases.initialisation_phases(parts.objectives, parts.student,
                                            parts.teacher_modules, config, spe, repl, batch_sh,
                                            data.device_augment, seeded)
  eval_classes = parts.heads[config.eval_head] if config.eval_head else parts.num_classes
  meta = {"model": config.model, "num_classes": parts.num_classes, "run": run_name,
          "heads": parts.heads, "checkpoint_version": ckpt_lib.VERSION,
          "adapters": sorted({*state.params["adapters"], *state.objective_state}),
          "data": data.name,
          "steps_per_epoch": spe, "seed": config.seed, "batch_size": config.batch_size,
          # The main phase may be lengthened on a resume (more epochs), not the others.
          "phases": [[s.name, s.num_steps] for s in run_phases]}
  where = {run_name: (workdir, meta)}
  if seeds:  # Each seed's meta as a run of it alone (+ the data seed it read).
    where = {config_lib.seed_run_name(run_name, k): (d, {
        **meta, "run": config_lib.seed_run_name(run_name, k), "seed": k,
        "data_seed": config.seed if config.seed_batches == seeds_lib.SHARED else k})
        for k, d in plan.seed_workdirs().items()}
  if jax.process_index() == 0:  # Room for the kept checkpoints, one being written, the best.
    per_checkpoint = ckpt_lib.checkpoint_bytes(state.checkpoint_items()) // max(1, len(seeds))
    for d, _ in where.values():
      ckpt_lib.check_writable(d, (config.keep_checkpoints + 2) * per_checkpoint)
  changed = []
  if jax.process_index() == 0 and not seeds:  # What a later command is compared with.
    changed = ckpt_lib.run_config_differences(workdir, plan.trained_config(), epochs=False)
    ckpt_lib.save_run_config(workdir, plan.trained_config())
  outs = [_Out(name, d, ckpt_lib.Checkpoints(d, config.keep_checkpoints), m,
               *metrics_lib.create_writers(d, name)) for name, (d, m) in where.items()]
  eval_fn = make_eval_step(parts.student, eval_classes, config.eval_head or None,
                           dict(config.eval_tasks))
  eval_step = jax.jit(seeds_lib.seeded_eval(eval_fn, how), out_shardings=repl) if seeds else \
      jax.jit(eval_fn, in_shardings=(repl, batch_sh), out_shardings=repl)
  run = _Run(config, run_name, parts, outs, batch_sh, eval_step, t_start, seeds)
  main_fn, cache = _main_step(config, parts, state, tx, rng, run.log)
  main = RunPhase(name=phases.MAIN, num_steps=spe * config.num_epochs,
               offset=sum(s.num_steps for s in run_phases), tx=tx, rng=rng, stream=0,
               step_fn=jax.jit(seeded(main_fn), out_shardings=(repl, repl),
                               donate_argnums=(0,)) if seeds else
               jax.jit(main_fn, in_shardings=(repl, batch_sh, repl),
                       out_shardings=(repl, repl), donate_argnums=(0,)),
               checkpoint_every=config.checkpoint_every_steps if config.checkpoint_every_steps > 0 else spe,
               log_every=config.log_every_steps, fault="step")
  run_phases.append(main)
  resumed = _restore(run, run_phases, state, repl)
  if resumed is not None and changed:  # Allowed (e.g. a lower learning rate), but said.
    run.log(f"resumed with another config than the run was trained with so far: "
            f"{'; '.join(changed)}")
  if resumed is None:
    if config.init_from:
      state = build.init_from(state, config, parts.heads, job_workdir, repl, run.log)
    index, state, phase_rng, step = (0, _start_state(run_phases[0], state, repl),
                                     run_phases[0].rng, 0)
  else:
    index, state, phase_rng, step = resumed
  with Preemption(run.tag) as preemption:
    for i, phase in enumerate(run_phases[index:], index):
      if i > index:
        state, phase_rng, step = phase.enter(state, repl), phase.rng, 0
      if phase.is_main:
        state = _train_main(run, phase, state, phase_rng, step, preemption, cache, schedule)
      else:
        if step < phase.num_steps:
          obj = phase.objective
          run.log(f"initialisation phase of {obj.name!r} ({obj.method.phase.loss}): "
                  f"{obj.init_epochs} epochs, lr {phase.lr:g}"
                  + (f", resuming at step {step}" if step else ""))
        state = run_phase(run, phase, state, phase_rng, step, preemption)
  if not run.outs[0].eval_result:  # Resumed after the last step's checkpoint but before
    for out, result in zip(run.outs, run.evaluate(state)):  # results were written.
      out.eval_result = result
  results = {}
  for out in run.outs:
    out.ckpts.wait()
    best = out.ckpts.best_accuracy()
    out.ckpts.close()
    out.writer.flush()
    results[out.name] = _results(run, out, config, main.num_steps, best)
  return results if seeds else results[run_name]

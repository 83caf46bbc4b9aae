"""The training loop of one run: data, state, the jitted step, eval, checkpoints, writers.

``train_and_evaluate(config, workdir)`` trains ``config.model`` with ``config.objectives``
(reading ``config.teachers``), resumes from the latest checkpoint in ``workdir`` when
there is one, evaluates every ``eval_every_epochs`` and writes ``<workdir>/results.json``.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from kd_jax import methods
from kd_jax.data import pipelines
from kd_jax.distill import objectives as objectives_lib
from kd_jax.distill import student as student_lib
from kd_jax.distill import teachers as teachers_lib
from kd_jax.distill.state import TrainState
from kd_jax.distill.step import make_eval_step, make_train_step
from kd_jax.errors import KdJaxError, Preempted, TrainingDiverged  # noqa: F401 (re-exported)
from kd_jax.training import checkpoint as ckpt_lib
from kd_jax.training import metrics as metrics_lib
from kd_jax.training import faults, optim, sharding, stages, teacher_cache
from kd_jax.training.preemption import Preemption


def _log(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


def load_teachers(config, input_shape, job_workdir: str | None, metas: dict | None = None):
  """``{name: (module, variables)}``: each teacher's model and frozen variables (and, into
  ``metas``, where each came from)."""
  out = {}
  for name, t in config.teachers.items():
    path = t.get("checkpoint") or os.path.join(job_workdir or ".", t["run"])
    variables, meta = ckpt_lib.load_model_variables(path, t.get("which", "latest"))
    if metas is not None:
      metas[name] = {"model": t["model"], "checkpoint": os.path.abspath(path),
                     "which": t.get("which", "latest"), "step": meta.get("step")}
    num_classes = t.get("num_classes") or meta.get("num_classes")
    if meta.get("model") not in (None, t["model"]):
      raise KdJaxError(f"config.teachers.{name}.model is {t['model']!r} but {path} holds a "
                       f"{meta['model']!r}")
    try:  # A consolidated student (heads in its meta) is a teacher too.
      module = student_lib.as_teacher(t["model"], num_classes, meta.get("heads"),
                                      t.get("head", ""), dtype=jnp.dtype(config.dtype))
    except ValueError as err:
      raise KdJaxError(f"config.teachers.{name}.head: the student in {path} {err}") from None
    expected = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0),
                                                  jnp.zeros((1, *input_shape)), train=False))
    if t.get("head"):  # HeadAsLogits nests the student's variables one level down.
      variables = {k: {"student": v} for k, v in variables.items()}
    got = jax.tree.map(lambda x: x.shape, variables)
    want = jax.tree.map(lambda x: x.shape, dict(expected))
    if got != want:
      raise KdJaxError(f"config.teachers.{name}: the variables in {path} do not fit a "
                       f"{t['model']} with {num_classes} classes on input {input_shape}")
    out[name] = (module, variables)
  return out


def _init_from(state: TrainState, config, heads, job_workdir, repl, tag) -> TrainState:
  """The state with the student's weights (all but its classifier; heads stay new) taken
  from the run in ``config.init_from``."""
  path = config.init_from
  if not os.path.isabs(path) and job_workdir and not os.path.exists(path):
    path = os.path.join(job_workdir, path)
  pretrained, meta = ckpt_lib.load_backbone_variables(path, "latest")
  if meta.get("model") not in (None, config.model):
    raise KdJaxError(f"config.init_from: {path} holds a {meta['model']!r}, this run trains a "
                     f"{config.model!r}")
  variables = {"params": state.params["student"], "batch_stats": state.batch_stats}
  own = student_lib.backbone_variables(variables, heads)
  merged = ckpt_lib.merge_pretrained(jax.device_get(own), pretrained, path)
  if heads:
    merged = {k: {**variables[k], student_lib.BACKBONE: v} for k, v in merged.items()}
  merged = jax.device_put(merged, repl)
  _log(f"{tag}initialised from {path} (every layer but the classifier)")
  return state.replace(params={**state.params, "student": merged["params"]},
                       batch_stats=merged.get("batch_stats", state.batch_stats))


def main_optimizer(config, objectives, schedule):
  """The main stage's optimiser: ``config.optimizer``, with the parameters that an
  objective freezes (or trains only in its initialisation stage) held fixed."""
  frozen = any(o.method.frozen or not o.main_stage for o in objectives)
  return optim.make_optimizer(
      config.optimizer, schedule,
      trainable=(lambda p: stages.main_stage_trainable(objectives, p)) if frozen else None)


def create_train_state(student, teachers: dict, teacher_variables: dict, objectives, tx,
                       input_shape, index_size: int, seed: int, sharding) -> TrainState:
  """The initial ``TrainState`` (placed with ``sharding``): the student's variables, the
  objectives' heads and state built from the output shapes of the student and each teacher
  (no teacher forward is run), checked against one example batch."""
  x_shape = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
  s_shapes = jax.eval_shape(
      lambda x: student.apply(student.init(jax.random.PRNGKey(0), x, train=False), x,
                              train=False), x_shape)
  t_shapes = teachers_lib.output_shapes(teachers, teacher_variables, x_shape)

  def init_state(rng):
    k_student, k_aux = jax.random.split(rng)
    x = jnp.zeros(x_shape.shape)
    variables = student.init(k_student, x, train=False)
    # Zeros of the outputs' shapes stand in for outputs.
    zeros = lambda tree: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), tree)
    s_out = objectives_lib.Outputs(*zeros(s_shapes))
    t_out = {n: objectives_lib.Outputs(*zeros(tuple(o))) for n, o in t_shapes.items()}
    aux_params, aux_state = objectives_lib.init_aux(objectives, s_out, t_out, k_aux, index_size)
    example = {"image": x, "label": jnp.zeros((2,), jnp.int32), "index": jnp.arange(2)}
    objectives_lib.check_shapes(objectives, s_out, t_out, aux_params, aux_state, example,
                                teacher_variables)
    params = {"student": variables["params"], "aux": aux_params}
    return TrainState(step=jnp.array(0, jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                      bad_step=jnp.array(-1, jnp.int32), teachers=dict(teacher_variables),
                      aux_state=aux_state)

  return jax.jit(init_state, out_shardings=sharding)(jax.random.PRNGKey(seed))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       run_name: str = "", job_workdir: str | None = None) -> dict[str, Any]:
  """Trains one run to ``config.num_epochs`` (resuming if possible); returns the results dict."""
  t_start = time.time()
  tag = f"[{run_name}] " if run_name else ""
  sharding.check_batch_size(config.batch_size)
  eval_batch = config.eval_batch_size if config.eval_batch_size > 0 else config.batch_size
  sharding.check_batch_size(eval_batch, "config.eval_batch_size")
  data = pipelines.create_dataset(config.data, config.batch_size, eval_batch)
  if 0 < config.num_classes < (data.num_classes or 0) and data.has_labels:
    raise KdJaxError(f"config.num_classes is {config.num_classes} but {data.name!r} has "
                     f"{data.num_classes} classes (labels 0..{data.num_classes - 1}); set -1 to "
                     f"take the data set's")
  num_classes = config.num_classes if config.num_classes > 0 else data.num_classes
  if not num_classes:
    raise KdJaxError("config.num_classes must be set: the data set has no labels")
  dtype = jnp.dtype(config.dtype)
  teacher_metas: dict[str, Any] = {}
  teachers = load_teachers(config, data.input_shape, job_workdir, teacher_metas)
  heads = {t: int(teachers[t][0].num_classes) for t in config.student_heads}
  student = student_lib.create(config.model, num_classes, heads, dtype=dtype)
  methods.import_modules(config.method_modules)
  objectives = objectives_lib.parse(config.objectives, list(teachers), data.has_labels,
                                    all_labeled=data.labeled_fraction >= 1.0)
  if not data.has_labels and data.num_classes is None:
    raise KdJaxError("config.data: evaluation needs a labelled eval split")

  mesh = sharding.data_mesh()
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  spe = data.steps_per_epoch
  total_steps = spe * config.num_epochs
  schedule = optim.make_schedule(config.optimizer, spe, config.num_epochs, config.batch_size)
  tx = main_optimizer(config, objectives, schedule)

  state = create_train_state(student, {n: m for n, (m, _) in teachers.items()},
                             {n: v for n, (_, v) in teachers.items()}, objectives, tx,
                             data.input_shape, data.index_size, config.seed, repl)
  step_rng = jax.jit(lambda: jax.random.PRNGKey(config.seed + 1), out_shardings=repl)()

  per_checkpoint = ckpt_lib.checkpoint_bytes(state.checkpoint_items())
  if jax.process_index() == 0:  # Room for the kept checkpoints, one being written, the best.
    ckpt_lib.check_writable(workdir, (config.keep_checkpoints + 2) * per_checkpoint)
  ckpts = ckpt_lib.Checkpoints(workdir, config.keep_checkpoints)
  meta = {"model": config.model, "num_classes": int(num_classes), "run": run_name,
          "heads": heads,
          "checkpoint_version": ckpt_lib.VERSION,
          "aux": sorted({*state.params["aux"], *state.aux_state}), "data": data.name,
          "steps_per_epoch": spe, "seed": config.seed, "batch_size": config.batch_size}
  time_before = 0.0  # Training time of earlier, interrupted invocations of this run.
  found = ckpts.restore_latest_intact({**state.checkpoint_items(), "rng": step_rng}, meta,
                                      lambda m: _log(tag + m))
  latest = found[0] if found else None
  if latest is None and config.init_from:
    state = _init_from(state, config, heads, job_workdir, repl, tag)
  if found:
    _, restored, saved_meta = found
    time_before = float(saved_meta.get("train_time_s", 0.0))
    state, step_rng = state.replace_checkpointed(restored), restored["rng"]
    _log(f"{tag}resuming from the checkpoint at step {latest} "
         f"(epoch {latest // spe + 1}, batch {latest % spe}) in {ckpts.dir}")

  teacher_modules = {n: m for n, (m, _) in teachers.items()}
  teacher_shapes: dict[str, objectives_lib.Outputs] = {}  # Of the cached teachers.
  make_step = lambda cached=(): make_train_step(
      student, teacher_modules, objectives, tx, data.has_labels, spe,
      cached_teachers={n: teacher_shapes[n] for n in cached},
      skip_nonfinite=config.skip_nonfinite_steps)
  cache = None
  if config.teacher_cache:
    teacher_cache.check_config(config, data)
    used = teachers_lib.used(objectives)
    x = jax.ShapeDtypeStruct((data.local_batch_size, *data.input_shape), jnp.float32)
    teacher_shapes = teachers_lib.output_shapes({n: teachers[n][0] for n in used},
                                                {n: teachers[n][1] for n in used}, x)
    example = {"image": x, "index": jax.ShapeDtypeStruct(x.shape[:1], jnp.int32)}
    if data.has_labels:
      example["label"] = jax.ShapeDtypeStruct(x.shape[:1], jnp.int32)
    if data.labeled_fraction < 1.0:
      example["label_mask"] = jax.ShapeDtypeStruct(x.shape[:1], jnp.float32)
    needed = teacher_cache.needed_outputs(make_step, state, example, step_rng, teacher_shapes)
    cache = teacher_cache.build(config, data, teachers, teacher_metas, needed,
                                lambda m: _log(tag + m))
    step_fn = make_step(used)
  else:
    step_fn = make_step()
  train_step = jax.jit(step_fn, in_shardings=(repl, batch_sh, repl), out_shardings=(repl, repl),
                       donate_argnums=(0,))
  eval_classes = heads[config.eval_head] if config.eval_head else num_classes
  eval_step = jax.jit(make_eval_step(student, eval_classes, config.eval_head or None,
                                     dict(config.eval_tasks)),
                      in_shardings=(repl, batch_sh), out_shardings=repl)

  writer, tensorboard = metrics_lib.create_writers(workdir, run_name)
  step = int(sharding.host_value(state.step))
  ckpt_every = config.checkpoint_every_steps if config.checkpoint_every_steps > 0 else spe
  eval_result: dict[str, float] = {}

  def check_finite(train_metrics):
    bad = int(sharding.host_value(state.bad_step))
    if bad >= 0:
      ckpts.wait()
      culprits = [k for k, v in (train_metrics or {}).items() if not math.isfinite(v)]
      what = (f"the loss became non-finite ({', '.join(culprits)})" if culprits else
              "the gradients became non-finite (the losses were finite)")
      last = ckpts.latest_step()
      kept = f"the last good checkpoint (step {last}) is kept in {ckpts.dir}" if last is not None \
          else "no checkpoint had been written yet"
      # Steps are counted as the console and TensorBoard count them: bad_step 0 is step 1.
      raise TrainingDiverged(
          f"[{run_name or 'train'}] stopped at step {bad + 1}: {what}; nothing from that step "
          f"on was applied; {kept}. Lower config.optimizer.lr (now {config.optimizer.lr}), "
          f"check the data, or set config.skip_nonfinite_steps=True to skip such steps")

  def evaluate() -> dict[str, float]:
    acc = None
    for batch in sharding.prefetch_to_device(data.eval_batches(), batch_sh):
      m = eval_step(state, batch)
      acc = m if acc is None else acc.merge(m)
    return {k: float(v) for k, v in sharding.host_value(acc).compute().items()}

  def save_checkpoint():
    ckpts.save(step, {**state.checkpoint_items(), "rng": step_rng},
               {**meta, "step": step, "epoch": step // spe, "batch_in_epoch": step % spe,
                "train_time_s": time_before + time.time() - t_start})

  acc_metrics = None
  # SIGTERM, in an initialisation stage or the main stage: a checkpoint after the current
  # step, then Preempted.
  with Preemption(tag) as preemption:
    if latest is None and any(o.init_epochs for o in objectives):
      state = stages.run_init_stages(state, objectives, student,
                                     {n: m for n, (m, _) in teachers.items()}, data, config,
                                     workdir, mesh, writer, _log, tag, preemption)
    if step == 0:
      writer.write_hparams({k: v for k, v in config.to_dict().items() if not isinstance(v, dict)})
    with metrics_lib.Progress(total_steps, spe, config.batch_size, tensorboard, run_name,
                              step, config.log_every_steps) as progress:
      while step < total_steps:
        epoch, start = divmod(step, spe)
        batches = data.train_batches(epoch, start, config.seed)
        if cache is not None:
          batches = cache.attach(batches)
        for batch in sharding.prefetch_to_device(batches, batch_sh):
          state, m = train_step(state, batch, step_rng)
          acc_metrics = m if acc_metrics is None else acc_metrics.merge(m)
          step += 1
          faults.at("step", step)
          progress.tick(step)
          end_of_epoch = step % spe == 0
          if step % config.log_every_steps == 0 or end_of_epoch:
            computed = {k: float(v) for k, v in sharding.host_value(acc_metrics).compute().items()}
            acc_metrics = None
            check_finite(computed)
            computed["learning_rate"] = float(schedule(step - 1))
            writer.write_scalars(step, {f"train/{k}": v for k, v in computed.items()})
            progress(step, computed["loss"])
          if end_of_epoch and ((step // spe) % config.eval_every_epochs == 0 or step == total_steps):
            eval_result = evaluate()
            writer.write_scalars(step, {f"eval/{k}": v for k, v in eval_result.items()})
            ckpts.save_best(step, {"params": state.params["student"],  # orbax keeps the best.
                                   "batch_stats": state.batch_stats},
                            {**meta, "step": step}, eval_result["accuracy"])
          saved = step % ckpt_every == 0 or step == total_steps
          if saved:
            check_finite(None)
            save_checkpoint()
            faults.at("save", step)
          if preemption.reached(step, ckpts.latest):
            check_finite(None)
            if not saved:
              save_checkpoint()
            ckpts.wait()
            ckpts.close()
            writer.flush()
            raise Preempted(f"{tag}preempted at step {step}/{total_steps}: checkpoint saved in "
                            f"{ckpts.dir}/{step}; run the same command to resume")
  if not eval_result:  # Resumed after the last step's checkpoint but before results were written.
    eval_result = evaluate()
  ckpts.wait()
  ckpts.close()
  writer.flush()
  results = {
      "run": run_name, "model": config.model, "teachers": sorted(teachers),
      "objectives": {o.name: o.weight for o in objectives if o.main_stage},
      "init_stages": {o.name: o.init_epochs for o in objectives if o.init_epochs},
      "test_accuracy": eval_result["accuracy"], "eval": eval_result,
      "steps": step, "epochs": config.num_epochs, "train_time_s": round(time_before + time.time() - t_start, 1),
  }
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  _log(f"{tag}done: test accuracy {100 * results['test_accuracy']:.2f}% "
       f"({os.path.join(workdir, 'results.json')})")
  return results


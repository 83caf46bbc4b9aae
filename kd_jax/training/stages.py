"""Initialisation stages (FT, AB, FSP) run before the main stage, from the same config.

An objective with ``init_epochs > 0`` first minimises its stage loss alone for that many
epochs (its method's ``phase`` says what the stage trains and at which learning rate), then the main stage starts from the parameters the stage produced.
A stage checkpoints at every epoch's end in ``<workdir>/init_stages/<objective>/`` and
resumes from there; once the main stage has a checkpoint, stages are not run again.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import optax
import orbax.checkpoint as ocp
from etils import epath

from kd_jax import models
from kd_jax.distill.objectives import Objective
from kd_jax.distill.state import TrainState
from kd_jax.distill.step import make_stage_step
from kd_jax.errors import Preempted, TrainingDiverged
from kd_jax.methods import ALL_ADAPTERS, STUDENT_FEATURES
from kd_jax.training import checkpoint as ckpt_lib
from kd_jax.training import faults, optim, sharding
from kd_jax.training.preemption import Preemption

_STAGE_ITEMS = ("step", "params", "opt_state", "bad_step", "aux_state")


def _aux_mask(params: Mapping[str, Any], value: Callable[[str, tuple[str, ...]], bool]):
  """A bool mask over ``params['aux']``: ``value(objective, path of the sub-module)``."""
  return {obj: {k: jax.tree.map(lambda _, obj=obj, k=k: value(obj, (k,)), sub)
                for k, sub in tree.items()}
          for obj, tree in params["aux"].items()}


def main_stage_trainable(objectives: Sequence[Objective], params: Mapping[str, Any]):
  """What the main stage optimises: the student and every head, except FT's paraphraser
  (frozen after its stage) and the heads of objectives that act only in their stage."""
  by_name = {o.name: o for o in objectives}

  def trainable(obj_name, path):
    obj = by_name[obj_name]
    frozen = obj.method.frozen
    return obj.main_stage and ALL_ADAPTERS not in frozen and path[0] not in frozen

  return {"student": jax.tree.map(lambda _: True, params["student"]),
          "aux": _aux_mask(params, trainable)}


def stage_trainable(objective: Objective, params: Mapping[str, Any]):
  """What ``objective``'s stage optimises (``Phase.trains``): adapter sub-modules by name
  (every adapter parameter for ``ALL_ADAPTERS``) and/or every student parameter but the
  classifier (``STUDENT_FEATURES``)."""
  trains = objective.method.phase.trains
  student = {k: jax.tree.map(lambda _, k=k: STUDENT_FEATURES in trains
                             and not models.is_classifier(k), v)
             for k, v in params["student"].items()}

  def aux(obj_name, path):
    if obj_name != objective.name:
      return False
    return ALL_ADAPTERS in trains or (path[0] in trains)

  return {"student": student, "aux": _aux_mask(params, aux)}


def stage_learning_rate(objective: Objective, config) -> float:
  """The stage's learning rate for the global batch (linearly scaled like the main one)."""
  lr = objective.init_lr if objective.init_lr is not None else \
      objective.method.phase_lr(config.model, config.optimizer.lr)
  opt = ml_collections.ConfigDict({"lr": lr, "lr_reference_batch":
                                   config.optimizer.lr_reference_batch})
  return optim.learning_rate(opt, config.batch_size)


def stage_optimizer(obj: Objective, opt_cfg, lr: float) -> optax.GradientTransformation:
  """An initialisation stage's optimiser, as the references train their stages: SGD at the
  constant ``lr`` with the main optimiser's momentum and weight decay (no Nesterov), only
  the stage's parameters trained."""
  sgd = ml_collections.ConfigDict(dict(name="sgd", momentum=opt_cfg.momentum, nesterov=False,
                                       weight_decay=opt_cfg.weight_decay))
  return optim.make_optimizer(sgd, lr, trainable=lambda p: stage_trainable(obj, p))


def run_init_stages(state: TrainState, objectives: Sequence[Objective], student, teachers,
                    data, config, workdir: str, mesh, writer, log: Callable[[str], None],
                    tag: str = "", preemption: Preemption | None = None) -> TrainState:
  """Runs every objective's initialisation stage in order; returns the state to start the
  main stage from (its params and the heads' state changed, nothing else). Within an
  entered ``preemption``, SIGTERM checkpoints the stage after its current step and raises
  ``Preempted`` (the same command resumes the stage at that step)."""
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  spe = data.steps_per_epoch
  for index, obj in enumerate(o for o in objectives if o.init_epochs > 0):
    lr = stage_learning_rate(obj, config)
    tx = stage_optimizer(obj, config.optimizer, lr)
    step_fn = jax.jit(make_stage_step(student, teachers, obj, tx),
                      in_shardings=(repl, batch_sh, repl), out_shardings=(repl, repl),
                      donate_argnums=(0,))
    # The stage's steps donate its state: keep the main stage's own step and optimiser
    # state aside (they are not part of the stage state) and take the rest back after.
    main_step, main_opt_state = state.step, state.opt_state
    stage_state = state.replace(
        step=jax.device_put(jax.numpy.zeros((), jax.numpy.int32), repl),
        opt_state=jax.jit(tx.init, out_shardings=repl)(state.params))
    total = obj.init_epochs * spe
    name = f"init_{obj.name}"
    directory = epath.Path(workdir) / "init_stages" / obj.name
    ckpt_lib.remove_partial_checkpoints(directory)
    mngr = ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True,
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                barrier_sync_key_prefix=name)),
        item_names=("state",))
    items = lambda s: {k: getattr(s, k) for k in _STAGE_ITEMS}
    latest = mngr.latest_step()
    if latest is not None:
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, items(stage_state))
      try:
        with ckpt_lib.quiet_failed_reads():
          restored = mngr.restore(latest, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract)))["state"]
        stage_state = stage_state.replace(**restored)
      except Exception as err:  # pylint: disable=broad-except  (any read failure = damage)
        target = ckpt_lib.move_damaged(directory / str(latest), workdir,
                                       f"init_stages_{obj.name}_{latest}")
        log(f"{tag}checkpoint {directory}/{latest} of the initialisation stage of {obj.name!r} "
            f"is damaged and cannot be read ({ckpt_lib.first_line(err)[:200]}): moved to "
            f"{target}; the stage starts over")
        mngr.reload()
    step = int(sharding.host_value(stage_state.step))
    if step < total:
      log(f"{tag}initialisation stage of {obj.name!r} ({obj.method.phase.loss}): {obj.init_epochs} epochs"
          f", lr {lr:g}" + (f", resuming at step {step}" if step else ""))
    rng = jax.device_put(jax.random.PRNGKey(config.seed + 2), repl)
    acc = None
    while step < total:
      epoch, start = divmod(step, spe)
      for batch in sharding.prefetch_to_device(
          data.train_batches(epoch, start, config.seed, stream=index + 1), batch_sh):
        stage_state, m = step_fn(stage_state, batch, rng)
        acc = m if acc is None else acc.merge(m)
        step += 1
        faults.at("stage", step)
        if preemption is not None and preemption.reached(step, mngr):
          _check_finite(stage_state, obj, lr, tag)
          _save(mngr, step, items(stage_state))
          mngr.wait_until_finished()
          mngr.close()
          raise Preempted(f"{tag}preempted in the initialisation stage of {obj.name!r} at "
                          f"stage step {step}/{total}: checkpoint saved in {mngr.directory}/"
                          f"{step}; run the same command to resume")
      loss = float(sharding.host_value(acc).compute()["loss"])  # (Since a resume, if mid-epoch.)
      acc = None
      _check_finite(stage_state, obj, lr, tag)
      writer.write_scalars(step, {f"{name}/loss": loss})
      log(f"{tag}{name} epoch {step // spe}/{obj.init_epochs}: loss {loss:.4g}")
      _save(mngr, step, items(stage_state))
    mngr.wait_until_finished()
    mngr.close()
    state = stage_state.replace(step=main_step, opt_state=main_opt_state)
  return state


def _check_finite(stage_state: TrainState, obj: Objective, lr: float, tag: str) -> None:
  bad = int(sharding.host_value(stage_state.bad_step))
  if bad >= 0:
    raise TrainingDiverged(f"{tag}the initialisation stage of {obj.name!r} stopped: its loss "
                           f"became non-finite at stage step {bad}; lower "
                           f"config.objectives.{obj.name}.init_lr (now {lr:g})")


def _save(mngr: ocp.CheckpointManager, step: int, items: dict[str, Any]) -> None:
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(items)), force=True)

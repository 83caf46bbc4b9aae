"""Optimiser and learning-rate schedule from ``config.optimizer`` (optax)."""
from __future__ import annotations

from typing import Any, Mapping

import jax
import optax


def learning_rate(opt_cfg, global_batch_size: int) -> float:
  """The peak learning rate: ``lr * global_batch / lr_reference_batch`` (linear scaling)."""
  if opt_cfg.lr_reference_batch:
    return opt_cfg.lr * global_batch_size / opt_cfg.lr_reference_batch
  return opt_cfg.lr


def make_schedule(opt_cfg, steps_per_epoch: int, num_epochs: int,
                  global_batch_size: int) -> optax.Schedule:
  """step: ``lr * factor^(#milestones passed)``, the decay taking effect at the first step of
  the epoch after each milestone (PyTorch MultiStepLR stepped per epoch); cosine: to 0 over
  the run; both after an optional linear warm-up."""
  lr = learning_rate(opt_cfg, global_batch_size)
  total = steps_per_epoch * num_epochs
  warmup = int(round(opt_cfg.warmup_epochs * steps_per_epoch))
  if opt_cfg.schedule == "step":
    boundaries = {int(e * steps_per_epoch): opt_cfg.decay_factor for e in opt_cfg.decay_epochs
                  if e * steps_per_epoch - warmup > 0}
    main = optax.piecewise_constant_schedule(lr, {b - warmup: f for b, f in boundaries.items()})
  elif opt_cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(1, total - warmup))
  else:
    main = optax.constant_schedule(lr)
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def lr_multipliers(params: Any, lr_scale: Mapping[str, float]) -> Any:
  """A pytree like ``params`` holding each parameter's learning-rate multiplier: that of
  the longest ``lr_scale`` key that prefixes its path (``student/fc``, ``adapters/cfl``...;
  params are ``{'student': ..., 'adapters': {<objective>: ...}}``), else 1. A key starting
  ``aux/`` (the adapters' name before checkpoint format 3) means ``adapters/``."""
  lr_scale = {("adapters" + k[3:] if k == "aux" or k.startswith("aux/") else k): v
              for k, v in lr_scale.items()}
  keys = sorted(lr_scale, key=len, reverse=True)

  def multiplier(path, _):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    for k in keys:
      if name == k or name.startswith(k.rstrip("/") + "/"):
        return float(lr_scale[k])
    return 1.0

  return jax.tree_util.tree_map_with_path(multiplier, params)


def scale_by_lr_multipliers(lr_scale: Mapping[str, float]) -> optax.GradientTransformation:
  """Multiplies each update by its parameter's ``lr_multipliers``: per-group learning rates
  (PyTorch parameter groups with their own ``lr``)."""
  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, m: u * m, updates, lr_multipliers(updates, lr_scale)), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


# timm's ``no_weight_decay()`` of a ViT: its tokens and position embedding.
NO_DECAY_NAMES = ("cls_token", "dist_token", "pos_embed")


def timm_decay_mask(params: Any) -> Any:
  """timm's ``param_groups_weight_decay`` (DeiT's optimiser): True (decayed) for every
  parameter of 2 or more dimensions but the tokens and position embeddings; biases and
  norm scales (1-D) are not decayed."""
  def decayed(path, leaf):
    return leaf.ndim > 1 and getattr(path[-1], "key", None) not in NO_DECAY_NAMES
  return jax.tree_util.tree_map_with_path(decayed, params)


def make_optimizer(opt_cfg, schedule: optax.Schedule | float,
                   trainable: Any = None) -> optax.GradientTransformation:
  """sgd: PyTorch ``SGD(momentum, weight_decay)`` (decay added to the gradient, on every
  parameter); adam: PyTorch ``Adam(weight_decay)`` (L2 added to the gradient); adamw:
  decoupled decay (optax's: scaled by the learning rate). ``opt_cfg.decay`` = "timm": no decay
on 1-D parameters, tokens and position embeddings (``timm_decay_mask``). ``opt_cfg.clip_norm`` > 0 clips the
  gradients to that global norm first (over the parameters it optimises). ``opt_cfg.lr_scale`` (``{path prefix: multiplier}``) gives parameter
  groups their own learning rate.

  trainable: None (every parameter), or a pytree of bools with the parameters' structure
  (or a function of the parameters giving it): parameters marked False are not optimised
  (no update, no decay, no optimiser state beyond an empty one)."""
  mask = timm_decay_mask if opt_cfg.get("decay", "all") == "timm" else None
  if opt_cfg.name == "sgd":
    tx = optax.chain(
        optax.add_decayed_weights(opt_cfg.weight_decay, mask),
        optax.sgd(schedule, momentum=opt_cfg.momentum or None, nesterov=opt_cfg.nesterov))
  elif opt_cfg.name == "adam":
    tx = optax.chain(optax.add_decayed_weights(opt_cfg.weight_decay, mask),
                     optax.adam(schedule))
  else:
    tx = optax.adamw(schedule, weight_decay=opt_cfg.weight_decay, mask=mask)
  if opt_cfg.get("clip_norm"):
    tx = optax.chain(optax.clip_by_global_norm(opt_cfg.clip_norm), tx)
  if opt_cfg.get("lr_scale"):
    tx = optax.chain(tx, scale_by_lr_multipliers(dict(opt_cfg.lr_scale)))
  if trainable is None:
    return tx
  labels = (lambda params: jax.tree.map(lambda t: "train" if t else "frozen",
                                        trainable(params) if callable(trainable) else trainable))
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)

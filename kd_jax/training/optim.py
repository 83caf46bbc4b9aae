"""Optimiser and learning-rate schedule from ``config.optimizer`` (optax)."""
from __future__ import annotations

from typing import Any

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


def make_optimizer(opt_cfg, schedule: optax.Schedule | float,
                   trainable: Any = None) -> optax.GradientTransformation:
  """sgd: PyTorch ``SGD(momentum, weight_decay)`` (decay added to the gradient, on every
  parameter); adamw: decoupled decay.

  trainable: None (every parameter), or a pytree of bools with the parameters' structure
  (or a function of the parameters giving it): parameters marked False are not optimised
  (no update, no decay, no optimiser state beyond an empty one)."""
  if opt_cfg.name == "sgd":
    tx = optax.chain(
        optax.add_decayed_weights(opt_cfg.weight_decay),
        optax.sgd(schedule, momentum=opt_cfg.momentum or None, nesterov=opt_cfg.nesterov))
  else:
    tx = optax.adamw(schedule, weight_decay=opt_cfg.weight_decay)
  if trainable is None:
    return tx
  labels = (lambda params: jax.tree.map(lambda t: "train" if t else "frozen",
                                        trainable(params) if callable(trainable) else trainable))
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)

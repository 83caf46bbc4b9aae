"""Distillation objectives as pure functions over arrays (NHWC feature maps).

Each function documents its shapes, reductions and the paper it comes from.
"""
from kd_jax.losses.logits import cross_entropy, kd

__all__ = ["cross_entropy", "kd"]

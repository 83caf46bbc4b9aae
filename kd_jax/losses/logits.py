"""Losses on logits."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0,
                  mask: jax.Array | None = None) -> jax.Array:
  """Softmax cross-entropy, mean over the batch (over ``mask == 1`` rows when given).

  logits [B, C] (computed in float32), labels int [B]. With label smoothing ``e`` the
  target is ``(1 - e) * onehot + e / C`` (``torch.nn.CrossEntropyLoss(label_smoothing=e)``).
  """
  logits = logits.astype(jnp.float32)
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
  per_example = -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)
  if mask is None:
    return jnp.mean(per_example)
  return jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def kd(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float = 4.0) -> jax.Array:
  """Hinton KD (RepDistiller ``DistillKL``): ``T^2 * (1/B) * sum_i KL(p_T,i || p_S,i)``
  with ``p = softmax(logits / T)``; sum over classes, mean over the batch.

  student_logits, teacher_logits [B, C]; float32 arithmetic; the teacher side gets no gradient.
  """
  t = temperature
  log_ps = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)
  log_pt = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32) / t, axis=-1)
  kl = jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1)
  return t * t * jnp.mean(kl)

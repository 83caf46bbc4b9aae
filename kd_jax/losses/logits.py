"""Losses on logits."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from kd_jax.losses.common import LABELS, LOGITS, Array, expects, float32


@expects(logits=LOGITS, labels=LABELS, mask=Array("[B]", (1,)))
def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0,
                  mask: jax.Array | None = None) -> jax.Array:
  """Softmax cross-entropy, mean over the batch (over ``mask == 1`` rows when given).

  logits [B, C] (computed in float32), labels int [B]. With label smoothing ``e`` the
  target is ``(1 - e) * onehot + e / C`` (``torch.nn.CrossEntropyLoss(label_smoothing=e)``).
  """
  logits = float32(logits)
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
  per_example = -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)
  if mask is None:
    return jnp.mean(per_example)
  return jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@expects(student_logits=LOGITS, teacher_logits=LOGITS)
def kd(student_logits: jax.Array, teacher_logits: jax.Array, *, temperature: float) -> jax.Array:
  """Hinton KD (RepDistiller ``DistillKL``): ``T^2 * (1/B) * sum_i KL(p_T,i || p_S,i)``
  with ``p = softmax(logits / T)``; sum over classes, mean over the batch.

  student_logits, teacher_logits [B, C]; float32 arithmetic; the teacher side gets no gradient.
  """
  t = temperature
  log_ps = jax.nn.log_softmax(float32(student_logits) / t, axis=-1)
  log_pt = jax.nn.log_softmax(float32(jax.lax.stop_gradient(teacher_logits)) / t, axis=-1)
  kl = jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1)
  return t * t * jnp.mean(kl)


@expects(student_logits=LOGITS, teacher_logits=LOGITS)
def soft_cross_entropy(student_logits: jax.Array, teacher_logits: jax.Array, *,
                       temperature: float) -> jax.Array:
  """Cross-entropy with the teacher's soft targets (CFL's ``soft_cross_entropy``):
  ``T^2 * mean_i sum_c -softmax(z_T/T)_c * log_softmax(z_S/T)_c``. Equal to ``kd`` plus the
  teacher's entropy (a constant): the same gradients, another value.

  student_logits, teacher_logits [B, C]; float32; the teacher side gets no gradient."""
  t = temperature
  log_ps = jax.nn.log_softmax(float32(student_logits) / t, axis=-1)
  pt = jax.nn.softmax(float32(jax.lax.stop_gradient(teacher_logits)) / t, axis=-1)
  return t * t * jnp.mean(-jnp.sum(pt * log_ps, axis=-1))


@expects(student_logits=LOGITS, teacher_logits=LOGITS)
def logit_l2(student_logits: jax.Array, teacher_logits: jax.Array) -> jax.Array:
  """``(1/B) sum_i ||z_S,i - z_T,i||^2``: squared error of logits, summed over classes and
  averaged over the batch (representation consolidation's L2 ablation)."""
  zs, zt = float32(student_logits, jax.lax.stop_gradient(teacher_logits))
  return jnp.mean(jnp.sum(jnp.square(zs - zt), axis=-1))


@expects(student_logits=LOGITS, teacher_logits=LOGITS, labels=LABELS)
def dkd(student_logits: jax.Array, teacher_logits: jax.Array, labels: jax.Array, *,
        alpha: float, beta: float, temperature: float, warmup: float,
        epoch: jax.Array | float | None = None) -> jax.Array:
  """Decoupled KD (Zhao et al., CVPR 2022; mdistiller ``dkd_loss``): ``alpha*TCKD + beta*NCKD``.

  student_logits, teacher_logits [B, C], labels int [B]. With ``p = softmax(z/T)``:
  TCKD = ``T^2 * mean_i KL(b_T || b_S)`` over the binary ``[p_gt, sum_{c!=gt} p_c]``
  (log without epsilon, as the reference); NCKD = ``T^2 * mean_i KL(q_T || q_S)`` with
  ``q = softmax(z/T - 1000*onehot(y))``. Sum over classes, mean over the batch.
  ``epoch`` (counted from 1) multiplies the result by the warm-up factor
  ``min(epoch / warmup, 1)``; ``None`` leaves it out. The teacher side gets no gradient.
  """
  t = temperature
  zs = float32(student_logits) / t
  zt = float32(jax.lax.stop_gradient(teacher_logits)) / t
  gt = jax.nn.one_hot(labels, zs.shape[-1], dtype=zs.dtype)

  def binary(p):
    p_gt = jnp.sum(p * gt, axis=-1)
    return jnp.stack([p_gt, jnp.sum(p * (1.0 - gt), axis=-1)], axis=-1)

  bs, bt = binary(jax.nn.softmax(zs, axis=-1)), binary(jax.nn.softmax(zt, axis=-1))
  # torch.kl_div's target * (log target - input), with 0 * log 0 = 0.
  tckd = jnp.sum(jax.scipy.special.xlogy(bt, bt) - bt * jnp.log(bs), axis=-1)
  log_qs = jax.nn.log_softmax(zs - 1000.0 * gt, axis=-1)
  log_qt = jax.nn.log_softmax(zt - 1000.0 * gt, axis=-1)
  qt = jnp.exp(log_qt)
  nckd = jnp.sum(jax.scipy.special.xlogy(qt, qt) - qt * log_qs, axis=-1)
  loss = t * t * (alpha * jnp.mean(tckd) + beta * jnp.mean(nckd))
  if epoch is not None:
    loss = loss * jnp.minimum(float32(epoch) / warmup, 1.0)
  return loss

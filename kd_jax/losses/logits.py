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


def _xlogx(p: jax.Array) -> jax.Array:
  """``p log p`` with ``0 log 0 = 0`` and a gradient of 0 there (``xlogy``'s is NaN at 0:
  DKD's masked class has p = 0 exactly, which matters when the temperature is learned)."""
  positive = p > 0
  return jnp.where(positive, p * jnp.log(jnp.where(positive, p, 1.0)), 0.0)


@expects(student_logits=LOGITS, teacher_logits=LOGITS, labels=LABELS)
def dkd(student_logits: jax.Array, teacher_logits: jax.Array, labels: jax.Array, *,
        alpha: float, beta: float, temperature: float, warmup: float,
        epoch: jax.Array | float | None = None) -> jax.Array:
  """Decoupled KD (Zhao et al., CVPR 2022; mdistiller ``dkd_loss``): ``alpha*TCKD + beta*NCKD``.

  student_logits, teacher_logits [B, C], labels int [B]. With ``p = softmax(z/T)``:
  TCKD = ``T^2 * mean_i KL(b_T || b_S)`` over the binary ``[p_gt, sum_{c!=gt} p_c]``
  (no epsilon, as the reference; computed from log-probabilities, so that a probability
  that underflows to 0 gives the finite value, not the reference's inf or NaN); NCKD =
  ``T^2 * mean_i KL(q_T || q_S)`` with ``q = softmax(z/T - 1000*onehot(y))``. Sum over
  classes, mean over the batch. ``epoch`` (counted from 1) multiplies the result by the
  warm-up factor ``min(epoch / warmup, 1)``; ``None`` leaves it out. The teacher side gets
  no gradient; ``temperature`` may be a traced scalar (CTKD), with a finite gradient where
  the reference's is NaN (the masked class's p = 0).
  """
  t = temperature
  zs = float32(student_logits) / t
  zt = float32(jax.lax.stop_gradient(teacher_logits)) / t
  gt = jax.nn.one_hot(labels, zs.shape[-1], dtype=zs.dtype)

  def log_binary(z):
    """``log [p_gt, sum_{c!=gt} p_c]`` [B, 2] from logits: finite where a probability
    underflows to 0 (the reference's ``log`` of it is -inf: an infinite or NaN loss)."""
    log_p = jax.nn.log_softmax(z, axis=-1)
    return jnp.stack([jnp.sum(log_p * gt, axis=-1),
                      jax.nn.logsumexp(log_p, axis=-1, where=gt == 0)], axis=-1)

  log_bs, log_bt = log_binary(zs), log_binary(zt)
  # torch.kl_div's target * (log target - input); a target that underflows to 0 adds 0.
  tckd = jnp.sum(jnp.exp(log_bt) * (log_bt - log_bs), axis=-1)
  log_qs = jax.nn.log_softmax(zs - 1000.0 * gt, axis=-1)
  log_qt = jax.nn.log_softmax(zt - 1000.0 * gt, axis=-1)
  qt = jnp.exp(log_qt)
  nckd = jnp.sum(_xlogx(qt) - qt * log_qs, axis=-1)
  loss = t * t * (alpha * jnp.mean(tckd) + beta * jnp.mean(nckd))
  if epoch is not None:
    loss = loss * jnp.minimum(float32(epoch) / warmup, 1.0)
  return loss


@expects(logits=LOGITS)
def logit_standardize(logits: jax.Array) -> jax.Array:
  """Logit standardization (Sun et al., CVPR 2024; the authors' ``normalize``):
  ``(z - mean_c z) / (1e-7 + std_c z)`` per row, with the unbiased standard deviation (N - 1,
  torch's default) and the epsilon added to it, not under the square root, as the reference.
  A row of equal logits has a finite gradient (the reference's is NaN).

  logits [B, C] -> [B, C] in float32 (float64 stays float64)."""
  z = float32(logits)
  centered = z - jnp.mean(z, axis=-1, keepdims=True)
  var = jnp.sum(jnp.square(centered), axis=-1, keepdims=True) / (z.shape[-1] - 1)
  # A row of equal logits (var 0): the reference's gradient is NaN (0/0 in torch.std's
  # backward); the limit is finite (the std term's contribution is 0 there): keep it.
  positive = var > 0
  std = jnp.where(positive, jnp.sqrt(jnp.where(positive, var, 1.0)), 0.0)
  return centered / (1e-7 + std)


def _row_norms(x: jax.Array) -> jax.Array:
  """``||x||`` per row of [N, D], with torch's gradient at a row of zeros (0; autodiff's is
  NaN: 0/0)."""
  sq = jnp.sum(jnp.square(x), axis=1)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _pearson(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Per row of [N, D]: ``<a - mean a, b - mean b> / (||a - mean a|| ||b - mean b|| + eps)``.
  A constant row (e.g. a class whose softmax is 0 for the whole batch) has correlation 0 and
  a finite gradient, as in the reference."""
  a = a - jnp.mean(a, axis=1, keepdims=True)
  b = b - jnp.mean(b, axis=1, keepdims=True)
  return jnp.sum(a * b, axis=1) / (_row_norms(a) * _row_norms(b) + eps)


@expects(student_logits=LOGITS, teacher_logits=LOGITS)
def dist(student_logits: jax.Array, teacher_logits: jax.Array, *, beta: float, gamma: float,
         temperature: float) -> jax.Array:
  """DIST (Huang et al., NeurIPS 2022; hunto's ``DIST``): with ``y = softmax(z / tau)``,
  ``tau^2 * (beta * inter + gamma * intra)``, inter = ``1 - mean_b pearson(y_S[b], y_T[b])``
  over the rows (classes of one example), intra = the same over the columns (one class
  across the batch); the Pearson correlation's eps (1e-8) is added to the product of the
  norms, as the reference.

  student_logits, teacher_logits [B, C]; float32; the teacher side gets no gradient."""
  t = temperature
  ys = jax.nn.softmax(float32(student_logits) / t, axis=-1)
  yt = jax.nn.softmax(float32(jax.lax.stop_gradient(teacher_logits)) / t, axis=-1)
  inter = 1.0 - jnp.mean(_pearson(ys, yt))
  intra = 1.0 - jnp.mean(_pearson(ys.T, yt.T))
  return t * t * (beta * inter + gamma * intra)


def _without_target(z: jax.Array, labels: jax.Array) -> jax.Array:
  """[B, C] -> [B, C - 1]: each row without its target column, the others in order."""
  keep = jnp.arange(z.shape[-1] - 1)[None, :]
  keep = keep + (keep >= labels[:, None]).astype(keep.dtype)
  return jnp.take_along_axis(z, keep, axis=-1)


@expects(student_logits=LOGITS, teacher_logits=LOGITS, labels=LABELS)
def nkd(student_logits: jax.Array, teacher_logits: jax.Array, labels: jax.Array, *,
        temperature: float, gamma: float) -> jax.Array:
  """Normalized KD (Yang et al., ICCV 2023; yzd-v/cls_KD ``NKDLoss``):
  ``-mean_b p_T(y) log p_S(y) - gamma * T^2 * mean_b sum_{c != y} q_T(c) log q_S(c)``, with
  ``p = softmax(z)`` over all classes at temperature 1 and ``q = softmax(z_{c != y} / T)``
  over the C - 1 non-target logits (the target column removed, not masked). Both terms
  are cross-entropies (the teacher's entropy included, as the reference).

  student_logits, teacher_logits [B, C], labels int [B]; float32; the teacher side gets no
  gradient."""
  zs = float32(student_logits)
  zt = float32(jax.lax.stop_gradient(teacher_logits))
  log_ps_y = jnp.take_along_axis(jax.nn.log_softmax(zs, axis=-1), labels[:, None], axis=-1)
  pt_y = jnp.take_along_axis(jax.nn.softmax(zt, axis=-1), labels[:, None], axis=-1)
  target = -jnp.mean(pt_y * log_ps_y)
  t = temperature
  log_qs = jax.nn.log_softmax(_without_target(zs, labels) / t, axis=-1)
  qt = jax.nn.softmax(_without_target(zt, labels) / t, axis=-1)
  non_target = -gamma * t * t * jnp.mean(jnp.sum(qt * log_qs, axis=-1))
  return target + non_target


@expects(student_logits=LOGITS, teacher_logits=LOGITS)
def wttm(student_logits: jax.Array, teacher_logits: jax.Array, *, gamma: float) -> jax.Array:
  """Weighted transformed teacher matching (Zheng and Yang, ICLR 2024; zkxufo/TTM ``WTTM``):
  ``mean_b [(sum_c p_T^gamma) * KL(p~_T || softmax(z_S))]`` with ``p_T = softmax(z_T)`` and
  the power-transformed teacher ``p~_T = p_T^gamma / sum_c p_T^gamma`` (= softmax(gamma z_T));
  no T^2 factor. Sum over classes, mean over the batch.

  Computed in the log domain: the reference's ``softmax(z_T) ** gamma`` loses the classes
  whose probability underflows in float32 (teacher logit gaps above ~87 with gamma < 1);
  here they keep their ``p^gamma``, as the float64 reference does.

  student_logits, teacher_logits [B, C]; float32; the teacher side gets no gradient."""
  log_ps = jax.nn.log_softmax(float32(student_logits), axis=-1)
  log_pt_gamma = gamma * jax.nn.log_softmax(float32(jax.lax.stop_gradient(teacher_logits)),
                                            axis=-1)
  weight = jnp.sum(jnp.exp(log_pt_gamma), axis=-1)
  log_pt = jax.nn.log_softmax(log_pt_gamma, axis=-1)
  pt = jnp.exp(log_pt)
  kl = jnp.sum(jnp.where(pt > 0, pt * (log_pt - log_ps), 0.0), axis=-1)
  return jnp.mean(weight * kl)


def _gram_loss(student_logits, teacher_logits, temperature, axis_of_products: int, divisor):
  ps = jax.nn.softmax(float32(student_logits) / temperature, axis=-1)
  pt = jax.nn.softmax(float32(jax.lax.stop_gradient(teacher_logits)) / temperature, axis=-1)
  if axis_of_products == 0:  # Class level: [C, C] = P^T P.
    gs, gt = ps.T @ ps, pt.T @ pt
  else:                      # Batch level: [B, B] = P P^T.
    gs, gt = ps @ ps.T, pt @ pt.T
  return jnp.sum(jnp.square(gt - gs)) / divisor


@expects(student_logits=LOGITS, teacher_logits=LOGITS)
def class_consistency(student_logits: jax.Array, teacher_logits: jax.Array, *,
                      temperature: float) -> jax.Array:
  """MLKD's class-level alignment (Jin et al., CVPR 2023; ``cc_loss``): with ``P =
  softmax(z / T)`` [B, C], ``||P_t^T P_t - P_s^T P_s||_F^2 / C``. No T^2 factor."""
  return _gram_loss(student_logits, teacher_logits, temperature, 0, student_logits.shape[-1])


@expects(student_logits=LOGITS, teacher_logits=LOGITS)
def batch_consistency(student_logits: jax.Array, teacher_logits: jax.Array, *,
                      temperature: float) -> jax.Array:
  """MLKD's batch-level alignment (``bc_loss``): ``||P_t P_t^T - P_s P_s^T||_F^2 / B``."""
  return _gram_loss(student_logits, teacher_logits, temperature, 1, student_logits.shape[0])


@expects(student_logits=LOGITS, teacher_logits=LOGITS, labels=LABELS)
def ofa(student_logits: jax.Array, teacher_logits: jax.Array, labels: jax.Array, *,
        eps: float, temperature: float) -> jax.Array:
  """OFA's adaptive target enhancement (Hao et al., NeurIPS 2023; OFAKD ``ofa_loss``): with
  ``p = softmax(z / T)`` and ``m`` the one-hot label,
  ``mean_i sum_c -((p_T + m)^eps - m)_ic * log p_S,ic``.

  student_logits, teacher_logits [B, C], labels int [B]; float32; the teacher side gets no
  gradient. ``log p_S`` is a log-softmax: finite where the reference's ``log(softmax)``
  underflows to -inf (a logit C/T below the row's maximum by more than ~104 in float32)."""
  t = temperature
  log_ps = jax.nn.log_softmax(float32(student_logits) / t, axis=-1)
  pt = jax.nn.softmax(float32(jax.lax.stop_gradient(teacher_logits)) / t, axis=-1)
  m = jax.nn.one_hot(labels, pt.shape[-1], dtype=pt.dtype)
  return jnp.mean(jnp.sum(-((pt + m) ** eps - m) * log_ps, axis=-1))

"""Contrastive Representation Distillation (Tian, Krishnan, Isola, ICLR 2020).

RepDistiller ``crd/criterion.py`` and ``crd/memory.py``, as pure functions: the memory
bank is a pytree (``CRDMemory``) that lives in the train state and is returned updated by
``crd``; nothing is mutated in place.

Per step, with ``z_S``, ``z_T`` [B, d] the two sides' embeddings (unit rows) and
``contrast_index`` [B, K+1] (column 0 the example's own index, then K negatives):
  teacher anchor: ``a = exp(<M_S[contrast_index], z_T> / tau)``
  student anchor: ``b = exp(<M_T[contrast_index], z_S> / tau)``
read from the memory *before* this step's update. ``Z_a = N * mean(a)`` and ``Z_b = N *
mean(b)`` are set on the first call (the mean over all B*(K+1) entries of that batch,
without gradient) and frozen. ``loss = nce(a / Z_a) + nce(b / Z_b)``. Then
``M_S[i] <- l2n(m M_S[i] + (1 - m) z_S,i)`` and likewise ``M_T`` (no gradient).

Under ``jit`` on a batch sharded across devices every reduction and the memory update see
the global batch (the arrays are global), so the result equals the single-device step.
Memory at ImageNet scale (N = 1,281,167, d = 128, B = 256, K = 2^14; XLA's compile-time
memory analysis of the jitted ``crd`` with the memory donated): the two banks are 1.31 GB
in float32 (0.66 GB with ``dtype=jnp.bfloat16``; scores and updates are computed in
float32 and rounded on write), and the step's temporaries about 5 GB, mostly the two
[B, K+1, d] gathers; so it fits on one 16 GB accelerator.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.losses.common import LABELS, VECTORS, Array, expects, float32

NCE_EPS = 1e-7


class CRDMemory(flax.struct.PyTreeNode):
  """The memory bank: ``student`` (M_S) and ``teacher`` (M_T), [N, d]; the normalisers
  ``z_student`` (Z of the student-anchor scores) and ``z_teacher`` (Z of the teacher-anchor
  scores), float32 scalars, negative until the first call sets them."""

  student: jax.Array
  teacher: jax.Array
  z_student: jax.Array
  z_teacher: jax.Array

  @property
  def num_data(self) -> int:
    return self.student.shape[0]


def crd_memory_init(rng: jax.Array, num_data: int, dim: int,
                    dtype=jnp.float32) -> CRDMemory:
  """Both banks drawn from U(-a, a), ``a = 1/sqrt(dim/3)`` (reference ``ContrastMemory``);
  the normalisers unset (-1)."""
  a = 1.0 / np.sqrt(dim / 3.0)
  k1, k2 = jax.random.split(rng)
  draw = lambda k: jax.random.uniform(k, (num_data, dim), jnp.float32, -a, a).astype(dtype)
  return CRDMemory(draw(k1), draw(k2), jnp.float32(-1.0), jnp.float32(-1.0))


@expects(x=Array("[B, K+1]", (2,)))
def nce(x: jax.Array, num_data: int, eps: float = NCE_EPS) -> jax.Array:
  """RepDistiller ``ContrastLoss`` (Eq. 18): x [B, K+1] normalised scores, positive first.

  With ``m = K`` and ``P_n = 1/N``: ``-(1/B) sum_i [log(x_i0 / (x_i0 + m P_n + eps)) +
  sum_k log(m P_n / (x_ik + m P_n + eps))]``.
  """
  b, m = x.shape[0], x.shape[1] - 1
  mpn = m / float(num_data)
  log_d1 = jnp.log(x[:, 0] / (x[:, 0] + mpn + eps))
  log_d0 = jnp.log(mpn / (x[:, 1:] + mpn + eps))
  return -(jnp.sum(log_d1) + jnp.sum(log_d0)) / b


def _update(bank: jax.Array, index: jax.Array, z: jax.Array, momentum: float) -> jax.Array:
  rows = momentum * bank[index].astype(z.dtype) + (1.0 - momentum) * z
  rows = rows / jnp.sqrt(jnp.sum(jnp.square(rows), axis=1, keepdims=True))
  return bank.at[index].set(rows.astype(bank.dtype), unique_indices=True)


def contrast_scores(bank: jax.Array, contrast_index: jax.Array, z: jax.Array) -> jax.Array:
  """``<bank[contrast_index[b, k]], z[b]>`` [B, K+1] in z's dtype; no gradient to the bank.

  When the bank has at most 8 (K+1) rows (CIFAR: 50,000 vs 16,385) every score of the
  bank is one [B, d] x [d, N] matmul and the K+1 are picked from it: much less memory
  traffic than gathering [B, K+1, d] rows. Larger banks (ImageNet) gather the rows."""
  bank = jax.lax.stop_gradient(bank)
  n, k1 = bank.shape[0], contrast_index.shape[1]
  if n <= 8 * k1:
    every = jnp.dot(z, bank.astype(z.dtype).T)
    return jnp.take_along_axis(every, contrast_index, axis=1)
  return jnp.einsum("bkd,bd->bk", bank[contrast_index].astype(z.dtype), z)


@expects(z_s=VECTORS, z_t=VECTORS, index=LABELS, contrast_index=Array("int [B, K+1]", (2,)))
def crd(z_s: jax.Array, z_t: jax.Array, memory: CRDMemory, index: jax.Array,
        contrast_index: jax.Array, *, temperature: float,
        momentum: float) -> tuple[jax.Array, CRDMemory]:
  """The CRD loss and the updated memory (see the module docstring).

  z_s, z_t: [B, d] embeddings, unit rows (``kd_jax.methods.crd.CRDEmbed``). index: int [B], the examples'
  positions in the training set (unique within the batch). contrast_index: int [B, K+1],
  column 0 the positive (``index`` in the reference's "exact" mode), then K negatives
  (``sample_contrast_index``, or drawn on the host: ``kd_jax.methods.crd``). Returns ``(nce(b/Z_b) + nce(a/Z_a),
  new_memory)``; gradients reach z_s through the student-anchor term and z_t through
  the teacher-anchor term only. temperature, momentum: the reference's ``nce_t``, ``nce_m``.
  """
  z_s, z_t = float32(z_s, z_t)
  n = memory.num_data
  out_t = jnp.exp(contrast_scores(memory.student, contrast_index, z_t) / temperature)
  out_s = jnp.exp(contrast_scores(memory.teacher, contrast_index, z_s) / temperature)

  def normaliser(z, out):
    first = n * jnp.mean(jax.lax.stop_gradient(out))
    return jnp.where(z < 0, first.astype(z.dtype), z)

  z_student = normaliser(memory.z_student, out_s)
  z_teacher = normaliser(memory.z_teacher, out_t)
  loss = nce(out_s / z_student, n) + nce(out_t / z_teacher, n)
  new_memory = CRDMemory(
      student=_update(memory.student, index, jax.lax.stop_gradient(z_s), momentum),
      teacher=_update(memory.teacher, index, jax.lax.stop_gradient(z_t), momentum),
      z_student=z_student, z_teacher=z_teacher)
  return loss, new_memory


def sample_contrast_index(rng: jax.Array, index: jax.Array, num_negatives: int,
                          num_data: int) -> jax.Array:
  """Contrast indices int [B, K+1] drawn in the step: column 0 ``index``, then K negatives
  uniform over all N examples with replacement (own class included): the reference's
  ``is_sample=False``. (Its default draws other-class negatives from the labels on the
  host: ``kd_jax.methods.crd``.) num_negatives: the reference's ``nce_k``."""
  neg = jax.random.randint(rng, (index.shape[0], num_negatives), 0, num_data)
  return jnp.concatenate([index[:, None].astype(neg.dtype), neg], axis=1)


__all__ = ["CRDMemory", "contrast_scores", "crd", "crd_memory_init", "nce",
           "sample_contrast_index"]

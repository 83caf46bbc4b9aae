"""MLKD: multi-level logit distillation (Jin et al., CVPR 2023; Jin-Ying/Multi-Level-Logit-
Distillation ``KD_ours.py``), as its authors' code computes it.

The student and the teacher read two views of each batch: the loader's (``weak``: CIFAR's
crop and flip) and a ``strong`` one the method makes on the device from the same uint8
images (another crop and flip, then ``RandAugment(2)`` and Cutout: ``kd_jax.data.
randaugment``). With ``P = softmax(z / T)`` and the temperatures ``Ts = (T, 3, 5, 2, 6)``,
the loss (times the objective's weight, the reference's KD weight) is

  f * sum_Ts kd_weak(T) + kd_strong(T) + kd_strong(3) + kd_strong(5) + kd_weak(2) + kd_weak(6)
  + f_c * sum_Ts cc_weak(T) + f * sum_Ts bc_weak(T)

(``kd``: Hinton's KD with T^2; ``cc``/``bc``: ``losses.class_consistency`` /
``batch_consistency``). The reference's quirks are kept: its masks multiply losses already
reduced to scalars, so they act as the fractions ``f`` (examples whose weak-view teacher
confidence is at most its median, numpy's ``percentile(., 50)``) and ``f_c`` (classes whose
summed teacher probability is at most its median); the last two "strong" KD terms read the
weak view; the strong view's cc and bc terms are computed there but not returned (left out
here). The strong view's cross-entropy is an objective of its own (``ce`` with
``view="strong"``), as the recipes set it. ``logit_stand``: the logit-standardization authors'
MLKD, which standardizes the KD terms' logits only (not cc, bc or the masks).
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from kd_jax import losses
from kd_jax.data import device_augment, randaugment
from kd_jax.methods.base import POSITIVE, Context, Method, register

STRONG = "strong"


def below_median_fraction(x: jax.Array) -> jax.Array:
  """The fraction of ``x`` [N] at most its median as numpy's ``percentile(x, 50)`` computes
  it (linear interpolation: ``b - (b - a) * 0.5`` of the middle values, in x's dtype)."""
  s = jnp.sort(x)
  n = x.shape[0]
  a, b = s[(n - 1) // 2], s[n // 2]
  threshold = b - (b - a) * jnp.asarray(0.5, x.dtype)
  return jnp.mean((x <= threshold).astype(jnp.result_type(float)))


def confidence_fractions(teacher_logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """MLKD's masks as the fractions they act as: ``(f, f_c)`` from the weak view's teacher
  logits [B, C] (softmax at T = 1): f over the examples' max probability, f_c over the
  classes' summed probability. No gradient."""
  p = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits), axis=-1)
  return below_median_fraction(jnp.max(p, axis=-1)), below_median_fraction(jnp.sum(p, axis=0))


@register("mlkd")
class MLKD(Method):
  """Multi-level logit distillation on a weak and a strong view. Defaults: the authors'
  CIFAR-100 config (T 4; the objective's weight is their KD weight, 0.9, beside CE 0.1 on
  each view). ``logit_stand``: their KD terms on standardized logits (the logit-
  standardization authors' MLKD)."""
  temperature: float = 4.0
  logit_stand: bool = False
  ranges = {"temperature": POSITIVE}
  views = (STRONG,)

  def check_view(self, view: str, augment: Any) -> None:
    if augment is None:
      raise ValueError("mlkd draws its strong view on the device from the loader's uint8 "
                       "images: it needs config.data.augment_on='device' (CIFAR's default; "
                       "not for inception crops or unions of data sets)")

  def make_view(self, view: str, batch: Mapping[str, jax.Array], rng: jax.Array,
                augment: Any) -> Mapping[str, jax.Array]:
    """The reference's strong transform: RandomCrop(pad) and flip drawn anew, then
    RandAugment(2) with Cutout, then the data's normalisation."""
    k_crop, k_ra = jax.random.split(rng)
    images = device_augment.pad_crop_flip(batch["image"], k_crop, augment.pad, augment.flip)
    images = randaugment.rand_augment(images, k_ra, n=2)
    return {**batch, "image": device_augment.normalize(images, augment.mean, augment.std)}

  def loss(self, ctx: Context):
    zs_w, zt_w = ctx.student.logits, ctx.teacher.logits
    strong_student, strong_teacher = ctx.views[STRONG]
    zs_s, zt_s = strong_student.logits, strong_teacher.logits
    f, f_c = confidence_fractions(zt_w)
    stand = losses.logit_standardize if self.logit_stand else (lambda z: z)
    # Standardized once per view (MLKD+LS); the reference's weak terms at T = 2, 6, counted
    # twice, are computed once.
    ks_w, kt_w, ks_s, kt_s = stand(zs_w), stand(zt_w), stand(zs_s), stand(zt_s)
    ts = (self.temperature, 3.0, 5.0, 2.0, 6.0)
    weak = [losses.kd(ks_w, kt_w, temperature=t) for t in ts]
    strong = [losses.kd(ks_s, kt_s, temperature=t) for t in ts[:3]]
    loss_kd = f * sum(weak) + sum(strong) + weak[3] + weak[4]
    loss_cc = f_c * sum(losses.class_consistency(zs_w, zt_w, temperature=t) for t in ts)
    loss_bc = f * sum(losses.batch_consistency(zs_w, zt_w, temperature=t) for t in ts)
    return loss_kd + loss_cc + loss_bc

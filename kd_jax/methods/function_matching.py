"""Function matching: "Knowledge distillation: A good teacher is patient and consistent"
(Beyer, Zhai, Royer, Markeeva, Anil, Kolesnikov, CVPR 2022; big_vision's distill trainer).

Teacher and student are made to agree on the *same* view of each image, and on many of
them: the host's aggressive crop (``config.data.train_augment='inception'``: inception crop
+ flip, per example, before the batch reaches the step), then mixup between the images of
the batch, drawn once per step inside the step (``transform_batch``) before the teacher
and the student run, so both read one array; the loss is KL(teacher || student) at T=1,
no labels, and the schedule is long (the paper trains for thousands of epochs).

Mixup is big_vision's ``utils.mixup`` with ``fold_in=None``: one weight vector for the whole
(global) batch, drawn from Dirichlet(p, ..., p) with ``n`` entries and sorted in decreasing
order, and image ``i`` becomes ``sum_k w_k * image[(i - k) mod B]`` (``jnp.roll`` by k); with
big_vision's ``mixup=dict(p=1.0, n=2)`` the weight of the image itself is uniform on [0.5, 1].
Labels are not mixed: a label-reading objective beside this one reads the label of the
image that dominates each mix.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from kd_jax import losses
from kd_jax.methods.base import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Context, Method, register


def mixup(rng: jax.Array, images: jax.Array, *, p: float, n: int
          ) -> tuple[jax.Array, jax.Array]:
  """``(mixed [B, ...], weights [n])``: each image mixed with the ``n - 1`` before it in the
  batch (cyclically), at weights ~ Dirichlet(p * ones(n)) sorted in decreasing order, one
  draw for the batch (big_vision ``utils.mixup``, ``fold_in=None``)."""
  weights = -jnp.sort(-jax.random.dirichlet(rng, jnp.full((n,), p, jnp.float32)))
  mixed = sum(weights[k].astype(images.dtype) * jnp.roll(images, k, axis=0) for k in range(n))
  return mixed, weights


@register("function_matching")
class FunctionMatching(Method):
  """``temperature**2 * KL(softmax(t / T) || softmax(s / T))``, summed over classes and
  averaged over the batch (``losses.kd``; big_vision's ``distance='kl'``), on the mixed view
  both networks read. mixup_p: the Dirichlet concentration (0: no mixup); mixup_n: how many
  images each mix holds."""
  temperature: float = 1.0
  mixup_p: float = 1.0
  mixup_n: int = 2
  ranges = {"temperature": POSITIVE, "mixup_p": NON_NEGATIVE, "mixup_n": AT_LEAST_ONE}

  def transform_batch(self, batch: Mapping[str, jax.Array], rng: jax.Array
                      ) -> Mapping[str, jax.Array]:
    if not self.mixup_p or self.mixup_n == 1:
      return batch
    return {**batch, "image": mixup(rng, batch["image"], p=self.mixup_p, n=self.mixup_n)[0]}

  def loss(self, ctx: Context):
    return losses.kd(ctx.student.logits, ctx.teacher.logits, temperature=self.temperature)

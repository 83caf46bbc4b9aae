"""Contrastive Representation Distillation (Tian, Krishnan, Isola, ICLR 2020; RepDistiller
``crd/``): unit embeddings of both sides' pooled features (``feat_dim``), a memory bank of
every training example per side, ``nce_k`` negatives per example, NCE at temperature
``nce_t``, memory momentum ``nce_m`` (the reference's defaults below).

Negatives (``mode``), as RepDistiller's ``CIFAR100InstanceSample`` draws them:
  exact    the positive is the example itself; the K negatives are examples of the other
           classes, without replacement (with replacement when fewer than K exist). The
           reference's default.
  relax    the positive is a random example of the example's class; negatives as exact.
  uniform  the positive is the example itself; negatives uniform over the whole train
           split with replacement, own class included (the reference's ``is_sample=False``).
exact and relax are drawn on the host from the class index (the train labels, read once at
start-up); uniform is drawn in the step. With ``labeled_fraction`` < 1 the class index holds
the labelled examples: an anchor whose label is not used draws as in uniform.
"""
from __future__ import annotations

from typing import Mapping

import jax
import numpy as np

from kd_jax import losses
from kd_jax.methods.base import (AT_LEAST_ONE, FRACTION, POSITIVE, Context, Method, TrainSplit,
                                 register)
from kd_jax.methods.relations import EmbedPair

MODES = ("exact", "relax", "uniform")


class ClassSampler:
  """The class index of a train split (``labels``: int [N] by example index, -1 unknown)
  and the reference's per-example draw of a positive and ``nce_k`` negatives."""

  def __init__(self, labels: np.ndarray, nce_k: int, mode: str):
    labels = np.asarray(labels)
    self.num_data, self.nce_k, self.mode = len(labels), nce_k, mode
    known = np.flatnonzero(labels >= 0)
    # Indices sorted by class: class c holds order[start[c]:start[c] + count[c]].
    self.order = known[np.argsort(labels[known], kind="stable")].astype(np.int32)
    self.count = np.bincount(labels[known], minlength=1).astype(np.int64)
    self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])
    self.labels = labels

  def specs(self, batch_size: int) -> Mapping[str, jax.ShapeDtypeStruct]:
    return {"contrast_index": jax.ShapeDtypeStruct((batch_size, self.nce_k + 1), np.int32)}

  def draw(self, index: int, rng: np.random.Generator) -> np.ndarray:
    """int32 [nce_k + 1]: the positive, then ``nce_k`` negatives, for the example ``index``."""
    c = self.labels[index]
    if c < 0:  # No label known: the uniform rule.
      return np.concatenate([[index], rng.integers(0, self.num_data, self.nce_k)]).astype(np.int32)
    start, count = self.start[c], self.count[c]
    pool = len(self.order) - count  # Examples of the other classes.
    if pool <= 0:
      raise ValueError(f"every labelled example is of class {c}: there are no negatives")
    u = rng.choice(pool, self.nce_k, replace=self.nce_k > pool)
    neg = self.order[np.where(u < start, u, u + count)]
    pos = index if self.mode == "exact" else self.order[start + rng.integers(count)]
    return np.concatenate([[pos], neg]).astype(np.int32)

  def __call__(self, batch: Mapping[str, np.ndarray],
               rng: np.random.Generator) -> Mapping[str, np.ndarray]:
    return {"contrast_index": np.stack([self.draw(int(i), rng) for i in batch["index"]])}


@register("crd")
class CRD(Method):
  """CRD; ``mode`` chooses how the positive and the negatives are drawn (module docstring)."""
  feat_dim: int = 128
  nce_k: int = 16384
  nce_t: float = 0.07
  nce_m: float = 0.5
  mode: str = "exact"
  ranges = {"feat_dim": AT_LEAST_ONE, "nce_k": AT_LEAST_ONE, "nce_t": POSITIVE,
            "nce_m": FRACTION}
  reads = "pooled"

  def __post_init__(self):
    super().__post_init__()
    if self.mode not in MODES:
      raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

  def adapter(self):
    return EmbedPair(self.feat_dim, normalize=True)

  def init_state(self, rng, num_data):
    return {"memory": losses.crd_memory_init(rng, num_data, self.feat_dim)}

  def host_sampler(self, split: TrainSplit):
    if self.mode == "uniform":
      return None
    if not split.labeled:
      raise ValueError(f"mode={self.mode!r} draws negatives from the other classes, but the "
                       f"training data is unlabelled; set mode='uniform'")
    return ClassSampler(split.labels(), self.nce_k, self.mode)

  def loss(self, ctx: Context):
    memory, index = ctx.state["memory"], ctx.batch["index"]
    if self.mode == "uniform":
      contrast = losses.sample_contrast_index(ctx.rng, index, self.nce_k, memory.num_data)
    elif "contrast_index" in ctx.host:
      contrast = ctx.host["contrast_index"]
    else:
      raise ValueError(f"mode={self.mode!r} reads the contrast indices its host sampler draws "
                       f"(batch without them)")
    loss, memory = losses.crd(ctx.s_maps[0], ctx.t_maps[0], memory, index, contrast,
                              temperature=self.nce_t, momentum=self.nce_m)
    return loss, {"memory": memory}

"""Contrastive Representation Distillation (Tian, Krishnan, Isola, ICLR 2020; RepDistiller
``crd/``): unit embeddings of both sides' pooled features (``feat_dim``), a memory bank of
every training example per side, ``nce_k`` negatives per example, NCE at temperature
``nce_t``, memory momentum ``nce_m`` (the reference's defaults below)."""
from __future__ import annotations

from kd_jax import losses
from kd_jax.methods.base import Context, Method, register
from kd_jax.methods.relations import EmbedPair


@register("crd")
class CRD(Method):
  """Negatives are drawn in the step, uniformly over the train split with replacement
  (the example's own class included)."""
  feat_dim: int = 128
  nce_k: int = 16384
  nce_t: float = 0.07
  nce_m: float = 0.5
  reads = "pooled"

  def adapter(self):
    return EmbedPair(self.feat_dim, normalize=True)

  def init_state(self, rng, num_data):
    return {"memory": losses.crd_memory_init(rng, num_data, self.feat_dim)}

  def loss(self, ctx: Context):
    memory, index = ctx.state["memory"], ctx.batch["index"]
    contrast = losses.sample_contrast_index(ctx.rng, index, self.nce_k, memory.num_data)
    loss, memory = losses.crd(ctx.s_maps[0], ctx.t_maps[0], memory, index, contrast,
                              temperature=self.nce_t, momentum=self.nce_m)
    return loss, {"memory": memory}

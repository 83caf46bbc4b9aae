"""Flow of solution procedure (Yim et al., CVPR 2017; RepDistiller ``FSP``): FSP matrices of
consecutive maps (stem, stage1..3); as in the reference it acts only through its 30-epoch
initialisation phase, which trains the student's feature layers."""
from __future__ import annotations

from kd_jax import losses
from kd_jax.methods.base import STUDENT_FEATURES, Context, Method, Phase, register


@register("fsp")
class FSP(Method):
  """Flow of solution procedure (Yim et al., CVPR 2017; RepDistiller's ``FSP``): the Gram
  matrices between consecutive stage maps, matched by MSE; needs equal channel counts; acts
  in its initialisation phase only, as the reference."""
  reads = "stem_and_stages"
  feature_kind = "maps"
  phase = Phase(loss="fsp", trains=(STUDENT_FEATURES,), in_main=False)

  def loss(self, ctx: Context):
    return losses.fsp(list(ctx.s_maps), list(ctx.t_maps))

"""The learnable part of an objective: one Flax module per objective ("head") that maps the
selected student and teacher maps to what its loss compares, built from the modules in
``kd_jax.losses``. ``__call__(s_maps, t_maps, train)`` takes and returns lists; its
parameters live in ``params['aux'][<objective>]``, its BatchNorm statistics in
``aux_state[<objective>]['batch_stats']``. Shapes come from the maps at ``init``.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from kd_jax import losses


class FitNetHead(nn.Module):
  """FitNet: ``ConvReg`` from the student's hint map to the teacher's shape."""

  @nn.compact
  def __call__(self, s_maps: Sequence[jax.Array], t_maps: Sequence[jax.Array], train: bool):
    t = t_maps[0]
    return [losses.ConvReg(t.shape[-1], t.shape[1:3], name="regressor")(s_maps[0], train)], list(t_maps[:1])


class ABHead(nn.Module):
  """AB: one connector per layer (identity where the shapes already agree)."""

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    out = [losses.ABConnector(t.shape[-1], t.shape[1:3], name=f"connector{i}")(s, train)
           for i, (s, t) in enumerate(zip(s_maps, t_maps))]
    return out, list(t_maps[:len(out)])


class VIDHead(nn.Module):
  """VID: per layer, pool to one size, then the variational regressor: returns
  ``[(mean, variance), ...]`` and the (pooled) teacher maps."""

  init_pred_var: float = 5.0
  eps: float = 1e-5

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    preds, targets = [], []
    for i, (s, t) in enumerate(zip(s_maps, t_maps)):
      s, t = losses.vid_match(s, t)
      preds.append(losses.VIDRegressor(t.shape[-1], init_pred_var=self.init_pred_var,
                                       eps=self.eps, name=f"regressor{i}")(s))
      targets.append(t)
    return preds, targets


class EmbedPairHead(nn.Module):
  """CC (``LinearEmbed``) and CRD (``CRDEmbed``): one embedding per side, both trained."""

  features: int = 128
  normalize: bool = False

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    embed = losses.CRDEmbed if self.normalize else losses.LinearEmbed
    return ([embed(self.features, name="embed_s")(s_maps[0])],
            [embed(self.features, name="embed_t")(t_maps[0])])


class FTHead(nn.Module):
  """FT: the teacher-side ``Paraphraser`` (trained in the initialisation stage, then frozen
  and in eval mode) and the student-side ``Translator``.

  Main stage: ``([translator(s)], [paraphraser factor of t])``. Stage (``stage=True``):
  ``([paraphraser reconstruction of t], [t])``, the paraphraser in training mode.
  """

  rate: float = 0.5

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool, stage: bool = False):
    t = t_maps[0]
    paraphraser = losses.Paraphraser(self.rate, name="paraphraser")
    if stage:
      _, reconstruction = paraphraser(t, train=True)
      return [reconstruction], [t]
    # The reconstruction is unused here (XLA drops it); computing it creates the decoder's
    # parameters at init, so the stage and the main stage share one parameter tree.
    factor_t, _ = paraphraser(t, train=False)
    factor_s = losses.Translator(factor_t.shape[-1], name="translator")(s_maps[0], train)
    return [factor_s], [factor_t]


class AMAHead(nn.Module):
  """Activation map adaptation: the adaptive module (from the teacher's map before its last
  stage to the student's last-stage shape) and its lift to the teacher's pooled width.
  t_maps: ``[teacher map before the last stage, teacher pooled]``; s_maps: ``[student's
  last-stage map]``. Main stage (module frozen, eval mode): ``([s], [hint])``. Stage:
  ``([lifted hint], [teacher pooled])``, in training mode."""

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool, stage: bool = False):
    s, (t_before, t_pooled) = s_maps[0], t_maps
    adapter = losses.AdaptiveModule(s.shape[-1], s.shape[1:3], name="adapter")
    lift = losses.Lift(t_pooled.shape[-1], name="lift")
    hint = adapter(t_before, train=stage)
    lifted = lift(hint, train=stage)  # Unused in the main stage (XLA drops it).
    if stage:
      return [lifted], [t_pooled]
    return [s], [hint]


class ConnectorHead(nn.Module):
  """Feature statistics: SRRL's connector from the student's channels to the teacher's."""

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    return ([losses.StatConnector(t_maps[0].shape[-1], name="connector")(s_maps[0], train)],
            list(t_maps[:1]))


class CFLHead(nn.Module):
  """CFL: the common-feature block over the student's map and one map per teacher.
  Returns ``([h_s], [(h_t, reconstruction, f_t) per teacher])``."""

  hidden: int = 128
  num_blocks: int = 3

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool):
    h_s, h_t, f_hat = losses.CFLBlock(self.hidden, self.num_blocks, name="cfl")(s_maps[0], t_maps)
    return [h_s], list(zip(h_t, f_hat, t_maps))

"""Factor transfer (Kim et al., NeurIPS 2018; RepDistiller ``FactorTransfer``, ``Paraphraser``,
``Translator``): a teacher-side paraphraser is trained first to reconstruct the teacher's
last-stage map (30 epochs), then frozen; the student's translator learns to produce the
paraphraser's factor."""
from __future__ import annotations

import flax.linen as nn

from kd_jax import losses
from kd_jax.methods.base import POSITIVE, Context, Method, Phase, register
from kd_jax.models import layers

# Students for which the reference pre-trains the paraphraser at lr 0.01 instead of 0.05.
_LOW_LR_STUDENTS = ("resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56",
                    "resnet110", "resnet8x4", "resnet32x4", "wrn_16_1", "wrn_16_2",
                    "wrn_40_1", "wrn_40_2")


class Paraphraser(nn.Module):
  """The teacher-side autoencoder. Encoder: conv3x3(C -> C), conv3x3(C -> k*C),
  conv3x3(k*C -> k*C); decoder: three ConvTranspose3x3 back to C; every layer has a bias
  and is followed by (BN if ``use_bn``) and LeakyReLU(0.1). ``__call__(f_t)`` ->
  ``(factor, reconstruction)``; with ``is_factor=True`` only the factor [B, H, W, int(k*C)].
  """

  rate: float
  use_bn: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False, is_factor: bool = False):
    c = x.shape[-1]
    out = int(c * self.rate)

    def act(y, name):
      if self.use_bn:
        y = layers.batch_norm(train, name=f"{name}_bn")(y)
      return nn.leaky_relu(y, 0.1)

    for i, ch in enumerate((c, out, out)):
      x = act(layers.TorchConv(ch, (3, 3), padding=1, name=f"encoder{i}")(x), f"encoder{i}")
    factor = x
    if is_factor:
      return factor
    for i, ch in enumerate((out, c, c)):
      x = act(layers.TorchConvTranspose(ch, 3, 1, 1, name=f"decoder{i}")(x), f"decoder{i}")
    return factor, x


class Translator(nn.Module):
  """The student-side encoder: three conv3x3 (Cs -> Cs -> out -> out, with bias) each
  followed by BN and LeakyReLU(0.1), ``out`` the paraphraser's factor width."""

  out_channels: int
  use_bn: bool = True

  @nn.compact
  def __call__(self, x, train: bool = True):
    for i, ch in enumerate((x.shape[-1], self.out_channels, self.out_channels)):
      x = layers.TorchConv(ch, (3, 3), padding=1, name=f"encoder{i}")(x)
      if self.use_bn:
        x = layers.batch_norm(train, name=f"encoder{i}_bn")(x)
      x = nn.leaky_relu(x, 0.1)
    return x


class FTAdapter(nn.Module):
  """Main phase: ``([translator(s)], [paraphraser factor of t])``, the paraphraser in eval
  mode. Phase: ``([paraphraser reconstruction of t], [t])``, the paraphraser training."""

  rate: float

  @nn.compact
  def __call__(self, s_maps, t_maps, train: bool, phase: bool = False):
    t = t_maps[0]
    paraphraser = Paraphraser(self.rate, name="paraphraser")
    if phase:
      _, reconstruction = paraphraser(t, train=True)
      return [reconstruction], [t]
    # The reconstruction is unused here (XLA drops it); computing it creates the decoder's
    # parameters at init, so the phase and the main phase share one parameter tree.
    factor_t, _ = paraphraser(t, train=False)
    factor_s = Translator(factor_t.shape[-1], name="translator")(s_maps[0], train)
    return [factor_s], [factor_t]


@register("ft")
class FT(Method):
  """Factor transfer (Kim et al., NeurIPS 2018; RepDistiller's ``FactorTransfer``): the
  teacher's last-stage map through a paraphraser (trained first to reconstruct it, then
  frozen), the student's through a translator; the L1 distance of their normalised factors
  (``p1``, ``p2``; ``rate`` sizes the factor)."""
  p1: float = 2.0
  p2: float = 1.0
  rate: float = 0.5
  ranges = {"p1": POSITIVE, "p2": POSITIVE, "rate": POSITIVE}
  reads = "last_stage"
  feature_kind = "maps"
  phase = Phase(loss="paraphraser_reconstruction", trains=("paraphraser",), frozen_after=True)

  def adapter(self):
    return FTAdapter(self.rate)

  def loss(self, ctx: Context):
    return losses.factor_transfer(ctx.s_maps[0], ctx.t_maps[0], p1=self.p1, p2=self.p2)

  def phase_loss(self, ctx: Context):
    return losses.paraphraser_reconstruction(ctx.s_maps[0], ctx.t_maps[0])

  def phase_lr(self, student: str, main_lr: float) -> float:
    return 0.01 if student in _LOW_LR_STUDENTS else main_lr

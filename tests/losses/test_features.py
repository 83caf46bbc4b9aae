"""Feature-map losses: hand-derived values, claimed invariances,
shapes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import losses
from kd_jax.models.layers import TorchConv, TorchConvTranspose
from tests.losses.helpers import run


def rand(seed, shape):
  return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def test_fitnet_is_mean_squared_error():
  f = rand(0, (2, 4, 4, 3))
  assert float(run(losses.fitnet, f, f)) == 0.0
  assert float(run(losses.fitnet, f + 2.0, f)) == pytest.approx(4.0)


def test_attention_map_of_a_single_channel_by_hand():
  f = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)
  want = np.array([1.0, 4.0, 9.0, 16.0]) / np.sqrt(1 + 16 + 81 + 256)
  np.testing.assert_allclose(np.asarray(run(losses.attention_map, f, 2.0))[0], want, rtol=1e-6)
  # Against a uniform teacher map (normalised to 0.5 everywhere): mean squared difference.
  got = run(losses.attention_transfer, f, jnp.ones((1, 2, 2, 7)), p=2.0)
  assert float(got) == pytest.approx(np.mean((want - 0.5) ** 2), rel=1e-6)


def test_attention_transfer_is_invariant_to_channel_permutation_and_scale():
  s, t = rand(1, (2, 8, 8, 6)), rand(2, (2, 8, 8, 4))
  base = float(run(losses.attention_transfer, s, t, p=2.0))
  perm = np.array([3, 0, 5, 1, 4, 2])
  assert float(run(losses.attention_transfer, s[..., perm], t, p=2.0)) == pytest.approx(base, rel=1e-5)
  assert float(run(losses.attention_transfer, 3.0 * s, t, p=2.0)) == pytest.approx(base, rel=1e-5)


def test_factor_transfer_is_l1_between_attention_maps():
  s, t = rand(7, (2, 4, 4, 3)), rand(8, (2, 4, 4, 5))
  want = jnp.mean(jnp.abs(run(losses.attention_map, s, 2.0) - run(losses.attention_map, t, 2.0)))
  assert float(run(losses.factor_transfer, s, t, p1=2.0, p2=1.0)) == pytest.approx(float(want), rel=1e-6)


def test_activation_boundaries_penalties_by_hand():
  # One element each: (s=0.5, t=-1): teacher off, student above -m -> (s+1)^2 = 2.25;
  # (s=0.5, t=1): teacher on, student below m -> (s-1)^2 = 0.25; (s=-2, t=-1) and
  # (s=2, t=1): on the right side of the margin -> 0. Batch 1, times 3/1000.
  s = jnp.array([0.5, 0.5, -2.0, 2.0]).reshape(1, 2, 2, 1)
  t = jnp.array([-1.0, 1.0, -1.0, 1.0]).reshape(1, 2, 2, 1)
  assert float(run(losses.activation_boundaries, [s], [t], margin=1.0)) == pytest.approx(
      2.5 * 3 / 1000, rel=1e-6)


def test_activation_boundaries_weights_layers_by_powers_of_two():
  s = jnp.full((1, 1, 1, 1), 0.5)
  t = jnp.full((1, 1, 1, 1), -1.0)
  one = float(run(losses.activation_boundaries, [s], [t], margin=1.0))
  # Two layers: weights 2^(0-2+1) = 0.5 and 2^(1-2+1) = 1.
  assert float(run(losses.activation_boundaries, [s, s], [t, t], margin=1.0)) == pytest.approx(
      1.5 * one, rel=1e-6)


def test_vid_negative_log_likelihood_by_hand():
  target = jnp.zeros((1, 1, 1, 2))
  mean = jnp.full((1, 1, 1, 2), 2.0)
  var = jnp.array([4.0, 4.0])
  assert float(run(losses.vid, mean, var, target)) == pytest.approx(0.5 * (1.0 + np.log(4.0)), rel=1e-6)


def test_nst_is_zero_for_identical_maps_and_invariant_to_channel_order():
  s, t = rand(9, (2, 4, 4, 5)), rand(10, (2, 4, 4, 3))
  assert float(run(losses.neuron_selectivity_transfer, t, t)) == pytest.approx(0.0, abs=1e-6)
  base = float(run(losses.neuron_selectivity_transfer, s, t))
  perm = np.array([4, 2, 0, 1, 3])
  assert float(run(losses.neuron_selectivity_transfer, s[..., perm], t)) == pytest.approx(base, rel=1e-5)


def test_fsp_matrix_by_hand_on_one_position():
  bottom = jnp.array([1.0, 2.0]).reshape(1, 1, 1, 2)
  top = jnp.array([3.0, 4.0, 5.0]).reshape(1, 1, 1, 3)
  want = np.outer([3.0, 4.0, 5.0], [1.0, 2.0])  # [C_top, C_bottom]
  np.testing.assert_allclose(np.asarray(run(losses.fsp_matrix, bottom, top))[0], want)


def test_fsp_is_zero_for_identical_features_and_needs_equal_channels():
  f = [rand(11, (2, 8, 8, 4)), rand(12, (2, 4, 4, 8))]
  assert float(run(losses.fsp, f, f)) == 0.0
  with pytest.raises(ValueError, match=r"equal channel counts.*\[4, 8\] and \[4, 6\]"):
    run(losses.fsp, f, [f[0], rand(13, (2, 4, 4, 6))])


def test_paraphraser_reconstruction_is_mean_squared_error():
  f = rand(15, (2, 4, 4, 3))
  assert float(run(losses.paraphraser_reconstruction, f + 1.0, f)) == pytest.approx(1.0)


def test_torch_conv_transpose_matches_pytorch():
  import torch
  x = np.random.RandomState(0).randn(2, 5, 5, 3).astype(np.float32)
  module = TorchConvTranspose(4, kernel=4, stride=2, padding=1)
  v = module.init(jax.random.PRNGKey(0), x)
  w = torch.from_numpy(np.asarray(v["params"]["kernel"])).permute(2, 3, 0, 1)  # [Cin, Cout, k, k]
  want = torch.nn.functional.conv_transpose2d(
      torch.from_numpy(x).permute(0, 3, 1, 2), w, torch.from_numpy(np.asarray(v["params"]["bias"])),
      stride=2, padding=1).permute(0, 2, 3, 1).numpy()
  got = module.apply(v, x)
  assert got.shape == (2, 10, 10, 4)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_torch_conv_and_conv_transpose_initialise_as_pytorch():
  x = jnp.ones((1, 4, 4, 50))
  v = jax.jit(TorchConv(64, (3, 3)).init)(jax.random.PRNGKey(0), x)["params"]["Conv_0"]
  bound = 1 / np.sqrt(3 * 3 * 50)  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), weight and bias
  assert float(jnp.abs(v["kernel"]).max()) <= bound and float(jnp.abs(v["bias"]).max()) <= bound
  assert float(v["kernel"].std()) == pytest.approx(bound / np.sqrt(3), rel=0.05)
  v = jax.jit(TorchConvTranspose(20, 4, 2, 1).init)(jax.random.PRNGKey(0), x)["params"]
  bound = 1 / np.sqrt(20 * 4 * 4)  # PyTorch takes fan_in from the weight's dim 1 (C_out)
  assert float(jnp.abs(v["kernel"]).max()) <= bound
  assert float(v["kernel"].std()) == pytest.approx(bound / np.sqrt(3), rel=0.05)

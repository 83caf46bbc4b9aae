"""The methods' adapters (their learnable modules): shapes, initialisation and what they
compute, each as the reference defines it; and a method summing its loss over layers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import losses
from kd_jax.methods import Context
from kd_jax.methods.ab import ABConnector
from kd_jax.methods.attention import AT
from kd_jax.methods.cfl import CFLBlock
from kd_jax.methods.fitnet import ConvReg
from kd_jax.methods.ft import Paraphraser, Translator
from kd_jax.methods.relations import EmbedPair, LinearEmbed
from kd_jax.methods.statistics import StatConnector
from kd_jax.methods.vid import VIDRegressor


def rand(seed, shape):
  return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def test_the_at_method_sums_attention_transfer_over_its_layers():
  s, t = [rand(3, (2, 8, 8, 4)), rand(4, (2, 4, 4, 8))], [rand(5, (2, 8, 8, 2)), rand(6, (2, 4, 4, 2))]
  total = AT().loss(Context(s, t, None, None, {}, None, None, None))
  each = sum(losses.attention_transfer(a, b, p=2.0) for a, b in zip(s, t))
  assert float(total) == pytest.approx(float(each), rel=1e-6)


def test_vid_initial_variance_is_init_pred_var():
  module = VIDRegressor(target_channels=6, init_pred_var=5.0, eps=1e-5)
  v = module.init(jax.random.PRNGKey(0), jnp.ones((1, 4, 4, 3)))
  mean, var = module.apply(v, jnp.ones((1, 4, 4, 3)))
  assert mean.shape == (1, 4, 4, 6) and var.shape == (6,)
  np.testing.assert_allclose(np.asarray(var), 5.0, rtol=1e-6)


@pytest.mark.parametrize("s_hw,t_hw", [(16, 8), (8, 16), (10, 8), (8, 8)])
def test_conv_reg_maps_student_shape_to_teacher_shape(s_hw, t_hw):
  module = ConvReg(12, (t_hw, t_hw))
  x = jnp.ones((2, s_hw, s_hw, 5))
  v = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
  y, _ = jax.eval_shape(lambda v, x: module.apply(v, x, mutable=["batch_stats"]), v, x)
  assert y.shape == (2, t_hw, t_hw, 12)


def test_conv_reg_refuses_a_smaller_student_map_it_cannot_bridge():
  module = ConvReg(4, (8, 8))
  with pytest.raises(ValueError, match="student map of size 6x6 to a teacher map of size 8x8"):
    module.init(jax.random.PRNGKey(0), jnp.ones((1, 6, 6, 2)))


def test_ab_connector_is_identity_when_shapes_already_match():
  module = ABConnector(4, (8, 8))
  x = rand(14, (2, 8, 8, 4))
  v = module.init(jax.random.PRNGKey(0), x)
  assert jax.tree.leaves(v) == []
  np.testing.assert_array_equal(np.asarray(module.apply(v, x)), np.asarray(x))


def test_paraphraser_and_translator_shapes():
  f_t = jnp.ones((2, 8, 8, 10))
  para = Paraphraser(0.5)
  v = jax.eval_shape(para.init, jax.random.PRNGKey(0), f_t)
  factor, rec = jax.eval_shape(para.apply, v, f_t)
  assert factor.shape == (2, 8, 8, 5) and rec.shape == f_t.shape
  assert jax.eval_shape(lambda v, x: para.apply(v, x, is_factor=True), v, f_t).shape == (2, 8, 8, 5)
  assert sorted(v["params"]) == [f"{p}{i}" for p in ("decoder", "encoder") for i in range(3)]
  trans = Translator(out_channels=5)
  x = jnp.ones((2, 8, 8, 3))
  v = jax.eval_shape(trans.init, jax.random.PRNGKey(0), x)
  y, _ = jax.eval_shape(lambda v, x: trans.apply(v, x, mutable=["batch_stats"]), v, x)
  assert y.shape == (2, 8, 8, 5) and len(v["batch_stats"]) == 3


def test_cc_embeds_are_pytorch_linear():
  module = LinearEmbed(128)
  v = module.init(jax.random.PRNGKey(0), jnp.ones((2, 256)))
  kernel = v["params"]["linear"]["Dense_0"]["kernel"]
  assert kernel.shape == (256, 128) and float(jnp.abs(kernel).max()) <= 1 / 16


def test_crd_embed_outputs_unit_rows_of_the_projection_size():
  module = EmbedPair(128, normalize=True)
  x = np.random.RandomState(16).randn(5, 256).astype(np.float32)
  v = module.init(jax.random.PRNGKey(0), [x], [x], True)
  (z,), _ = module.apply(v, [x], [x], True)
  assert z.shape == (5, 128)
  np.testing.assert_allclose(np.asarray(jnp.linalg.norm(z, axis=1)), 1.0, rtol=1e-5)


def test_stat_connector_initialisation_follows_srrl():
  module = StatConnector(64)
  v = module.init(jax.random.PRNGKey(0), jnp.ones((1, 4, 4, 256)))
  kernel = v["params"]["Conv_0"]["kernel"]
  assert kernel.shape == (1, 1, 256, 64) and "bias" not in v["params"]["Conv_0"]
  assert float(kernel.std()) == pytest.approx(np.sqrt(2.0 / 64), rel=0.05)
  assert float(v["params"]["BatchNorm_0"]["scale"].mean()) == 1.0


def test_cfl_block_shares_one_extractor_and_decodes_each_teacher_to_its_width():
  block = CFLBlock(hidden=8, num_blocks=3)
  f_s = jnp.ones((2, 2, 2, 16))
  f_t = [jnp.ones((2, 2, 2, 32)), jnp.ones((2, 1, 1, 64))]
  variables = block.init(jax.random.PRNGKey(0), f_s, f_t)
  names = set(variables["params"])
  assert names == {"align_s", "align_t0", "align_t1", "extractor0", "extractor1",
                   "extractor2", "dec0_conv1", "dec0_conv2", "dec1_conv1", "dec1_conv2"}
  assert variables["params"]["align_s"]["Conv_0"]["kernel"].shape == (1, 1, 16, 16)  # 2h
  assert variables["params"]["extractor0"]["downsample"]["Conv_0"]["kernel"].shape == (1, 1, 16, 8)
  h_s, h_t, f_hat = block.apply(variables, f_s, f_t)
  assert h_s.shape == (2, 2, 2, 8) and [h.shape for h in h_t] == [(2, 2, 2, 8), (2, 1, 1, 8)]
  assert [r.shape for r in f_hat] == [(2, 2, 2, 32), (2, 1, 1, 64)]
  paths = [jax.tree_util.keystr(p) for p, _ in
           jax.tree_util.tree_leaves_with_path(variables["params"])]
  assert not any("bias" in p for p in paths)  # The reference's convolutions have none.

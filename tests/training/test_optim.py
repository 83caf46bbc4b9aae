"""Optimisers: per-group learning rates (``optimizer.lr_scale``) and PyTorch-style Adam."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import config as config_lib
from kd_jax.errors import KdJaxError
from kd_jax.training import optim

PARAMS = {"student": {"fc": {"kernel": jnp.ones(2)}, "conv": {"kernel": jnp.ones(3)}},
          "adapters": {"cfl": {"align_s": jnp.ones(1)}, "crd": {"w": jnp.ones(1)}}}


def _opt(**kw):
  c = config_lib.optimizer_config()
  c.update(dict(lr_reference_batch=0, momentum=0.0, weight_decay=0.0, schedule="constant"))
  c.update(kw)
  return c


def test_the_longest_matching_prefix_decides_the_multiplier():
  m = optim.lr_multipliers(PARAMS, {"student/fc": 10.0, "adapters": 0.5, "adapters/cfl": 5.0})
  assert m == {"student": {"fc": {"kernel": 10.0}, "conv": {"kernel": 1.0}},
               "adapters": {"cfl": {"align_s": 5.0}, "crd": {"w": 0.5}}}


def test_an_aux_prefix_from_before_the_rename_means_the_adapters():
  m = optim.lr_multipliers(PARAMS, {"aux": 0.5, "aux/cfl": 5.0})
  assert m["adapters"] == {"cfl": {"align_s": 5.0}, "crd": {"w": 0.5}}


def test_sgd_updates_are_scaled_per_group():
  cfg = _opt(lr=0.1, lr_scale={"student/fc": 10.0})
  tx = optim.make_optimizer(cfg, 0.1)
  grads = {"student": {"fc": {"kernel": jnp.ones(2)}, "conv": {"kernel": jnp.ones(3)}},
           "adapters": {}}
  params = {"student": PARAMS["student"], "adapters": {}}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["student"]["fc"]["kernel"], -1.0)
  np.testing.assert_allclose(updates["student"]["conv"]["kernel"], -0.1)


def test_adam_adds_the_weight_decay_to_the_gradient_like_pytorch():
  """torch.optim.Adam(weight_decay=wd): g <- g + wd * p before the moments; the first step
  is then -lr * sign(g + wd * p)."""
  tx = optim.make_optimizer(_opt(name="adam", lr=0.01, weight_decay=0.5), 0.01)
  params = jnp.array([1.0, -2.0])
  grads = jnp.array([-0.25, 0.5])  # g + wd*p = [0.25, -0.5]
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates, [-0.01, 0.01], rtol=1e-5)


@pytest.mark.parametrize("lr_scale,message", [
    ({"fc": 10.0}, r"^config\.optimizer\.lr_scale: 'fc' must be a parameter path starting "
                   r"with student or adapters"),
    ({"aux/cfl": -1.0}, r"^config\.optimizer\.lr_scale\.aux/cfl must be a number >= 0"),
    ({"student/fc": True}, r"^config\.optimizer\.lr_scale\.student/fc must be a number >= 0, "
                           r"got True$"),
])
def test_bad_lr_scales_fail_in_one_line(lr_scale, message):
  c = config_lib.base_config()
  c.optimizer.lr_scale = lr_scale
  with pytest.raises(KdJaxError, match=message):
    config_lib.validate(c)


def test_clip_norm_rescales_the_gradients_to_that_global_norm_first():
  """Gradients of global norm 5 (3 and 4) clipped to norm 1: plain SGD at lr 1 moves the
  parameters by -(0.6, 0.8)."""
  tx = optim.make_optimizer(_opt(lr=1.0, clip_norm=1.0), 1.0)
  params = {"student": {"a": jnp.zeros(1), "b": jnp.zeros(1)}}
  grads = {"student": {"a": jnp.array([3.0]), "b": jnp.array([4.0])}}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose([updates["student"]["a"][0], updates["student"]["b"][0]],
                             [-0.6, -0.8], rtol=1e-6)


def test_a_negative_clip_norm_fails_in_one_line():
  c = config_lib.base_config()
  c.optimizer.clip_norm = -1.0
  with pytest.raises(KdJaxError, match=r"^config\.optimizer\.clip_norm must be a number >= 0"):
    config_lib.validate(c)


def test_timm_decay_spares_biases_norms_tokens_and_position_embeddings():
  """AdamW at lr 1 with decay 0.5 and zero gradients: a decayed parameter of ones moves by
  -0.5 (optax's decay is scaled by the learning rate), a spared one not at all."""
  params = {"student": {"pos_embed": jnp.ones((1, 3, 2)), "cls_token": jnp.ones((1, 1, 2)),
                        "blocks_0": {"qkv": {"kernel": jnp.ones((2, 6)), "bias": jnp.ones(6)},
                                     "norm1": {"scale": jnp.ones(2)}}}}
  tx = optim.make_optimizer(_opt(name="adamw", lr=1.0, weight_decay=0.5, decay="timm"), 1.0)
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  moved = jax.tree.map(lambda u: float(jnp.max(jnp.abs(u))), updates)["student"]
  assert moved == {"pos_embed": 0.0, "cls_token": 0.0,
                   "blocks_0": {"qkv": {"kernel": 0.5, "bias": 0.0}, "norm1": {"scale": 0.0}}}
  tx_all = optim.make_optimizer(_opt(name="adamw", lr=1.0, weight_decay=0.5), 1.0)
  updates, _ = tx_all.update(grads, tx_all.init(params), params)
  assert all(float(jnp.max(jnp.abs(u))) == 0.5 for u in jax.tree.leaves(updates))


def test_an_unknown_decay_rule_fails_in_one_line():
  c = config_lib.base_config()
  c.optimizer.decay = "bias"
  with pytest.raises(KdJaxError, match=r"^config\.optimizer\.decay must be all or timm"):
    config_lib.validate(c)

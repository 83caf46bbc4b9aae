"""CIFAR ResNets: the feature contract (parameter counts of the whole zoo: test_zoo.py)."""
import jax
import jax.numpy as jnp
import pytest

from kd_jax import models
from kd_jax.errors import KdJaxError

def test_features_keys_and_shapes():
  model = models.create("resnet8x4", 10)
  x = jnp.zeros((2, 32, 32, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  logits, feats = model.apply(variables, x)
  assert logits.shape == (2, 10)
  assert {k: v.shape for k, v in feats.items()} == {
      "stem": (2, 32, 32, 32), "stage1": (2, 32, 32, 64), "preact/stage1": (2, 32, 32, 64),
      "stage2": (2, 16, 16, 128), "preact/stage2": (2, 16, 16, 128),
      "stage3": (2, 8, 8, 256), "preact/stage3": (2, 8, 8, 256), "pooled": (2, 256)}


def test_stage_output_is_relu_of_preact():
  model = models.create("resnet8", 10)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  _, feats = model.apply(variables, x)
  assert jnp.allclose(feats["stage2"], jax.nn.relu(feats["preact/stage2"]))
  assert float(feats["preact/stage2"].min()) < 0


def test_unknown_model_lists_valid_names():
  with pytest.raises(KdJaxError, match=r"unknown model 'resnet9'; valid names: .*resnet8"):
    models.create("resnet9", 10)

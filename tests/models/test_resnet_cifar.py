"""CIFAR ResNets: exact parameter counts of the PyTorch originals, and the feature contract."""
import jax
import jax.numpy as jnp
import pytest

from kd_jax import models
from kd_jax.errors import KdJaxError

# Trainable parameters with 100 classes (PyTorch RepDistiller models, BN running stats excluded).
PARAMS = {"resnet8": 83_892, "resnet14": 181_108, "resnet20": 278_324, "resnet32": 472_756,
          "resnet44": 667_188, "resnet56": 861_620, "resnet110": 1_736_564,
          "resnet8x4": 1_233_540, "resnet32x4": 7_433_860}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_matches_pytorch(name):
  model = models.create(name, 100)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  assert sum(x.size for x in jax.tree.leaves(shapes["params"])) == PARAMS[name]


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

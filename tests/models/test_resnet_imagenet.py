"""ImageNet ResNets (torchvision layout): exact parameter counts and the feature contract."""
import jax
import jax.numpy as jnp
import pytest

from kd_jax import models

# torchvision, 1000 classes, trainable parameters.
PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_matches_torchvision(name):
  model = models.create(name, 1000)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))
  assert sum(x.size for x in jax.tree.leaves(shapes["params"])) == PARAMS[name]


def test_resnet50_features_on_64px():
  model = models.create("resnet50", 10)
  x = jnp.zeros((1, 64, 64, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  logits, feats = jax.eval_shape(lambda v: model.apply(v, x), variables)
  assert logits.shape == (1, 10)
  assert {k: v.shape for k, v in feats.items()} == {
      "stem": (1, 32, 32, 64),
      "stage1": (1, 16, 16, 256), "preact/stage1": (1, 16, 16, 256),
      "stage2": (1, 8, 8, 512), "preact/stage2": (1, 8, 8, 512),
      "stage3": (1, 4, 4, 1024), "preact/stage3": (1, 4, 4, 1024),
      "stage4": (1, 2, 2, 2048), "preact/stage4": (1, 2, 2, 2048), "pooled": (1, 2048)}

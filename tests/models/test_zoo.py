"""Every zoo model: exact PyTorch parameter count, the feature contract, and a jitted
training step (CIFAR models on 32x32x3, ImageNet models on 64x64x3): compiled (with XLA's
optimisations off: one step does not repay them) and run for one small model of each model
class, traced for the others."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kd_jax import models

# Trainable parameters with 100 classes of the PyTorch originals (RepDistiller/mdistiller model
# files; BN running statistics excluded).
CIFAR_PARAMS = {
    "resnet8": 83_892, "resnet14": 181_108, "resnet20": 278_324, "resnet32": 472_756,
    "resnet44": 667_188, "resnet56": 861_620, "resnet110": 1_736_564,
    "resnet8x4": 1_233_540, "resnet32x4": 7_433_860, "ResNet50": 23_705_252,
    "wrn_16_1": 180_916, "wrn_16_2": 703_284, "wrn_40_1": 569_780, "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028, "vgg11": 9_277_284, "vgg13": 9_462_180, "vgg16": 14_774_436,
    "vgg19": 20_086_692, "MobileNetV2": 812_836, "ShuffleV1": 949_258, "ShuffleV2": 1_355_528,
}
IMAGENET = ("resnet18", "resnet34", "resnet50")
# One small model of each model class compiles and runs its step; the class's other
# models (deeper, wider, other block types of the same file) are traced.
COMPILED = ("resnet8", "resnet8x4", "wrn_16_1", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2",
            "ResNet50", "resnet18")


def test_registry_holds_the_whole_zoo():
  assert set(models.names()) == set(CIFAR_PARAMS) | set(IMAGENET)


@pytest.mark.parametrize("name", sorted(CIFAR_PARAMS))
def test_parameter_count_matches_pytorch(name):
  model = models.create(name, 100)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  assert sum(x.size for x in jax.tree.leaves(shapes["params"])) == CIFAR_PARAMS[name]


@pytest.fixture(scope="module")
def _fast(fast_compilation):
  """XLA optimisations off for the step tests (conftest.fast_compilation)."""


def test_each_model_class_has_a_compiled_model():
  assert set(COMPILED) <= set(models.names())
  families = {models.create(n, 10).__class__.__name__ for n in models.names()}
  assert {models.create(n, 10).__class__.__name__ for n in COMPILED} == families


@pytest.mark.slow  # About 2 minutes for the 25 models on 2 CPU cores.
@pytest.mark.parametrize("name", sorted(CIFAR_PARAMS) + list(IMAGENET))
def test_jitted_training_step_and_feature_contract(name, _fast):
  size = 64 if name in IMAGENET else 32
  model = models.create(name, 10)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 3))
  y = jnp.array([1, 7])
  tx = optax.sgd(0.01, momentum=0.9)

  # One program: initialisation, a training step, then inference.
  def init_step_infer(rng):
    variables = model.init(rng, x[:1])
    params, batch_stats = variables["params"], variables["batch_stats"]

    def loss_fn(p):
      (logits, feats), new = model.apply({"params": p, "batch_stats": batch_stats}, x,
                                         train=True, mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, (feats, new["batch_stats"])
    (loss, (feats, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    params = optax.apply_updates(params, updates)
    logits, _ = model.apply({"params": params, "batch_stats": stats}, x, train=False)
    return loss, feats, logits

  if name in COMPILED:
    loss, feats, logits = jax.jit(init_step_infer)(jax.random.PRNGKey(1))
    assert np.isfinite(float(loss))
  else:
    loss, feats, logits = jax.eval_shape(init_step_infer, jax.random.PRNGKey(1))
    assert loss.shape == ()
  stages = sorted(k for k in feats if k.startswith("stage"))
  assert {"stem", "pooled"} <= set(feats) and len(stages) in (3, 4)
  assert set(feats) == {"stem", "pooled", *stages, *(f"preact/{s}" for s in stages)}
  for s in stages:
    assert feats[s].shape == feats[f"preact/{s}"].shape and feats[s].ndim == 4
  assert feats["pooled"].shape[0] == 2 and feats["pooled"].ndim == 2
  assert logits.shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_1", "vgg8", "MobileNetV2", "ShuffleV1",
                                  "ShuffleV2", "ResNet50"])  # One model of each class.
def test_head_continues_the_last_stage_to_the_logits(name, _fast):
  """``models.apply_head`` on the last-stage map gives the model's own logits (inference)."""
  model = models.create(name, 10)
  size = 16

  @jax.jit
  def both(rng):
    variables = model.init(rng, jnp.zeros((1, size, size, 3)))
    logits, feats = model.apply(variables, jax.random.normal(rng, (2, size, size, 3)))
    last = max((k for k in feats if k.startswith("stage")), key=lambda k: int(k[5:]))
    return logits, models.apply_head(model, variables, feats[last])

  logits, from_head = both(jax.random.PRNGKey(0))
  np.testing.assert_allclose(np.asarray(from_head), np.asarray(logits), rtol=1e-5, atol=1e-6)


# The documented feature shapes (model docstrings) for 32x32x3 input, one model per family.
DOCUMENTED = {
    "resnet8x4": {"stem": (32, 32, 32), "stage1": (32, 32, 64), "stage2": (16, 16, 128),
                  "stage3": (8, 8, 256), "pooled": (256,)},
    "ResNet50": {"stem": (32, 32, 64), "stage1": (32, 32, 256), "stage2": (16, 16, 512),
                 "stage3": (8, 8, 1024), "stage4": (4, 4, 2048), "pooled": (2048,)},
    "wrn_16_2": {"stem": (32, 32, 16), "stage1": (32, 32, 32), "stage2": (16, 16, 64),
                 "stage3": (8, 8, 128), "pooled": (128,)},
    "vgg8": {"stem": (32, 32, 64), "stage1": (16, 16, 128), "stage2": (8, 8, 256),
             "stage3": (4, 4, 512), "stage4": (4, 4, 512), "pooled": (512,)},
    "MobileNetV2": {"stem": (16, 16, 16), "stage1": (16, 16, 12), "stage2": (8, 8, 16),
                    "stage3": (4, 4, 48), "stage4": (2, 2, 160), "pooled": (1280,)},
    "ShuffleV1": {"stem": (32, 32, 24), "stage1": (16, 16, 240), "stage2": (8, 8, 480),
                  "stage3": (4, 4, 960), "pooled": (960,)},
    "ShuffleV2": {"stem": (32, 32, 24), "stage1": (16, 16, 116), "stage2": (8, 8, 232),
                  "stage3": (4, 4, 464), "pooled": (1024,)},
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_feature_shapes_match_documentation(name):
  model = models.create(name, 100)
  x = jnp.zeros((2, 32, 32, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  _, feats = jax.eval_shape(lambda v: model.apply(v, x), variables)
  want = {k: (2, *s) for k, s in DOCUMENTED[name].items()}
  want.update({f"preact/{k}": v for k, v in want.items() if k.startswith("stage")})
  assert {k: v.shape for k, v in feats.items()} == want

"""Every CNN of the zoo: exact PyTorch parameter count, the feature contract, and a jitted
training step (CIFAR models on 32x32x3, ImageNet models on 64x64x3), compiled with XLA's
optimisations off (one step does not repay them) and run. The ViTs: test_vit.py."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kd_jax import models
from kd_jax.models import vit

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
# Model classes whose ``stage<k>`` feature is the ReLU of ``preact/stage<k>`` (their docstrings).
_STAGE_IS_RELU_OF_PREACT = ("CifarResNet", "ImageNetResNet", "VGG", "ShuffleNetV1")


def test_registry_holds_the_whole_zoo():
  assert set(models.names()) == set(CIFAR_PARAMS) | set(IMAGENET) | set(vit.MODELS)


@pytest.mark.parametrize("name", sorted(CIFAR_PARAMS))
def test_parameter_count_matches_pytorch(name):
  model = models.create(name, 100)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  assert sum(x.size for x in jax.tree.leaves(shapes["params"])) == CIFAR_PARAMS[name]


@pytest.fixture(scope="module")
def _fast(fast_compilation):
  """XLA optimisations off for the step tests (conftest.fast_compilation)."""


# The models whose step is compiled and run: each model class, each block layout (one block
# and several per stage, widths x1/x4/x2, basic and bottleneck blocks), CIFAR and ImageNet
# stems. The others build the same blocks in deeper loops (resnet20-110, resnet32x4,
# wrn_16_1/40_2, vgg11/16/19, resnet34) or combine two that are compiled here (resnet50: the
# ImageNet stem of resnet18, the bottlenecks of ResNet50, one class): their structure is
# checked by the parameter counts and their features by test_every_model_has_the_feature_contract,
# without a compilation each.
STEP_MODELS = ("resnet8", "resnet14", "resnet8x4", "wrn_16_2", "wrn_40_1", "vgg8", "vgg13",
               "MobileNetV2", "ShuffleV1", "ShuffleV2", "ResNet50", "resnet18")


def _features(name):
  size = 64 if name in IMAGENET else 32
  model = models.create(name, 10)
  x = jnp.zeros((2, size, size, 3))
  return jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x)[0][1])


@pytest.mark.parametrize("name", sorted(CIFAR_PARAMS) + list(IMAGENET))
def test_every_model_has_the_feature_contract(name):
  """Feature names and shapes (traced, not compiled): stem, 3 or 4 stages each with its
  pre-activation map of the same shape, and the pooled feature."""
  feats = _features(name)
  stages = sorted(k for k in feats if k.startswith("stage"))
  assert len(stages) in (3, 4)
  assert set(feats) == {"stem", "pooled", *stages, *(f"preact/{s}" for s in stages)}
  for s in stages:
    assert feats[s].shape == feats[f"preact/{s}"].shape and len(feats[s].shape) == 4
  assert feats["pooled"].shape[0] == 2 and len(feats["pooled"].shape) == 2


def test_the_step_models_cover_every_model_class():
  classes = lambda names: {type(models.create(n, 10)).__name__ for n in names}
  cnns = [n for n in models.names() if n not in vit.MODELS]
  assert classes(STEP_MODELS) == classes(cnns)


@pytest.mark.slow  # About 2 minutes for the 12 models on 2 CPU cores.
@pytest.mark.parametrize("name", STEP_MODELS)
def test_jitted_training_step_and_feature_contract(name, _fast):
  """Compiled and run: a train-mode step (the loss finite, BatchNorm statistics all
  updated), then every parameter reaches the inference logits (a gradient of exactly zero is
  a layer computed and dropped; train mode cannot say: a bias before a BatchNorm has a zero
  gradient there), ``models.apply_head`` on the last-stage map gives those logits, and each
  stage map is what its class says of its pre-activation."""
  size = 64 if name in IMAGENET else 32
  model = models.create(name, 10)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 3))
  y = jnp.array([1, 7])
  tx = optax.sgd(0.01)

  # One program: initialisation, a training step, then inference.
  @jax.jit
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
    new_params = optax.apply_updates(params, updates)

    def infer(p):
      return model.apply({"params": p, "batch_stats": stats}, x, train=False)
    logits, vjp, infer_feats = jax.vjp(infer, new_params, has_aux=True)
    weights = jax.random.normal(jax.random.PRNGKey(2), logits.shape)
    last = max((k for k in infer_feats if k.startswith("stage")), key=lambda k: int(k[5:]))
    from_head = models.apply_head(model, {"params": new_params, "batch_stats": stats},
                                  infer_feats[last])
    return loss, feats, logits, batch_stats, stats, vjp(weights)[0], from_head

  loss, feats, logits, stats_before, stats, infer_grads, from_head = init_step_infer(
      jax.random.PRNGKey(1))
  assert np.isfinite(float(loss))
  unchanged = [jax.tree_util.keystr(k) for (k, a), b in zip(
      jax.tree_util.tree_leaves_with_path(stats_before), jax.tree.leaves(stats))
               if np.array_equal(np.asarray(a), np.asarray(b))]
  assert not unchanged, f"BatchNorm statistics not updated by the step: {unchanged}"
  dead = [jax.tree_util.keystr(k) for k, g in jax.tree_util.tree_leaves_with_path(infer_grads)
          if not np.any(np.asarray(g))]
  assert not dead, f"parameters that do not reach the logits: {dead}"
  stages = sorted(k for k in feats if k.startswith("stage"))
  assert {"stem", "pooled"} <= set(feats) and len(stages) in (3, 4)
  assert set(feats) == {"stem", "pooled", *stages, *(f"preact/{s}" for s in stages)}
  for s in stages:
    assert feats[s].shape == feats[f"preact/{s}"].shape and feats[s].ndim == 4
    stage, preact = np.asarray(feats[s]), np.asarray(feats[f"preact/{s}"])
    family = type(model).__name__
    if family in _STAGE_IS_RELU_OF_PREACT:
      np.testing.assert_array_equal(stage, np.maximum(preact, 0))
    elif family == "ShuffleNetV2":  # ReLU, then the shuffle of two channel groups.
      relu = np.maximum(preact, 0)
      shuffled = relu.reshape(*relu.shape[:-1], 2, -1).swapaxes(-1, -2).reshape(relu.shape)
      np.testing.assert_array_equal(stage, shuffled)
    elif family == "MobileNetV2":  # Linear bottlenecks: the same map.
      np.testing.assert_array_equal(stage, preact)
    else:  # WideResNet: pre-activation is the next BN (train mode: batch statistics).
      assert family == "WideResNet"
  assert feats["pooled"].shape[0] == 2 and feats["pooled"].ndim == 2
  assert logits.shape == (2, 10)
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

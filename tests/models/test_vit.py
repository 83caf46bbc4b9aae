"""The ViTs against timm's (random weights, no download): parameters one to one, logits and
every token feature equal; the distilled model's two heads; stochastic depth; a jitted
training step."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import timm  # noqa: E402  (the test extra installs it: a broken timm fails, not skips)
import torch
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from kd_jax import models
from kd_jax.errors import KdJaxError
from kd_jax.models import vit

# name -> (timm constructor, image size, channels, classes)
CASES = {
    "deit_tiny_patch16_224": (lambda: timm.create_model("vit_tiny_patch16_224", num_classes=10),
                              224, 3, 10),
    "deit_tiny_distilled_patch16_224": (
        lambda: timm.create_model("deit_tiny_distilled_patch16_224", num_classes=10), 224, 3, 10),
    "vit_tiny_patch4_32": (lambda: VisionTransformer(
        img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, num_classes=100),
                           32, 3, 100),
    "vit_micro_distilled_patch2_8": (lambda: VisionTransformerDistilled(
        img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=4, num_heads=2,
        num_classes=10), 8, 1, 10),
}
# Parameters of timm's models (its registered names and constructors) with 1000 classes.
TIMM_PARAMS = {"deit_tiny_patch16_224": 5_717_416, "deit_small_patch16_224": 22_050_664,
               "deit_base_patch16_224": 86_567_656,
               "deit_tiny_distilled_patch16_224": 5_910_800,
               "deit_small_distilled_patch16_224": 22_436_432,
               "deit_base_distilled_patch16_224": 87_338_192}


def _rel(a, b):
  return float(np.linalg.norm(np.asarray(a) - b) / max(np.linalg.norm(b), 1e-12))


def _randomized(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
  """Every parameter drawn anew (LayerNorm scales around 1), so that a transposed or swapped
  tensor changes the output: timm's own init leaves the tokens at ~1e-6 and the norms at 1."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in net.named_parameters():
      noise = torch.randn(p.shape, generator=g) * 0.1
      p.copy_(1 + noise if "norm" in name and name.endswith("weight") else noise)
  return net.eval()


@pytest.mark.parametrize("name", sorted(CASES))
def test_converted_vit_matches_timm(name):
  build, size, channels, classes = CASES[name]
  net = _randomized(build())
  x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(1))
  blocks = []
  hooks = [b.register_forward_hook(lambda m, i, o: blocks.append(o)) for b in net.blocks]
  with torch.no_grad():
    t_logits = net(x).numpy()
    t_tokens = net.forward_features(x).numpy()
    t_pooled = net.forward_head(net.forward_features(x), pre_logits=True).numpy()
  for h in hooks:
    h.remove()
  state_dict = net.state_dict()
  variables = models.from_torch(state_dict, name, classes)
  n_flax = sum(a.size for a in jax.tree.leaves(variables["params"]))
  assert n_flax == sum(v.numel() for v in state_dict.values())  # One to one, nothing left.
  logits, feats = models.create(name, classes).apply(
      variables, jnp.asarray(x.permute(0, 2, 3, 1).numpy()), train=False)
  assert _rel(logits, t_logits) < 1e-5
  assert _rel(feats["tokens"], t_tokens) < 1e-5
  assert _rel(feats["pooled"], t_pooled) < 1e-5
  depth = len(net.blocks)
  for i in range(depth):
    assert _rel(feats[f"block{i + 1}"], blocks[i].numpy()) < 1e-5, i


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_parameter_count_matches_timm(name):
  model = models.create(name, 1000)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3))))
  assert sum(x.size for x in jax.tree.leaves(shapes["params"])) == TIMM_PARAMS[name]


def _converted(state_dict, name, classes, dtype):
  """``models.from_torch``'s params in ``dtype``. It casts to the model's float32 parameters:
  float64 goes through as a float32 pair (high part + remainder, exact to ~1e-15)."""
  if dtype == "float32":
    return models.from_torch(state_dict, name, classes)["params"]
  high = {k: v.float() for k, v in state_dict.items()}
  low = {k: (v - high[k].double()).float() for k, v in state_dict.items()}
  return jax.tree.map(lambda a, b: np.asarray(a, np.float64) + np.asarray(b, np.float64),
                      models.from_torch(high, name, classes)["params"],
                      models.from_torch(low, name, classes)["params"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_match_timms(dtype):
  """The gradient of every parameter and of the image equals timm's (autograd through its
  attention, exact GELU and LayerNorm; kd_jax's attention has a written-out backward):
  float32 within 1e-5, float64 within 1e-10 (norm-wise, per tensor)."""
  _, _, _, classes = CASES["vit_micro_distilled_patch2_8"]
  net = _randomized(CASES["vit_micro_distilled_patch2_8"][0]())
  tdtype = getattr(torch, dtype)
  net = net.to(tdtype)
  g = torch.Generator().manual_seed(3)
  x = torch.randn(3, 1, 8, 8, generator=g, dtype=tdtype, requires_grad=True)
  weights = torch.randn(3, classes, generator=g, dtype=tdtype)
  (net(x) * weights).sum().backward()  # Inference logits: both heads, both tokens.
  t_grads = _converted({k: p.grad for k, p in net.named_parameters()},
                       "vit_micro_distilled_patch2_8", classes, dtype)
  with jax.enable_x64(dtype == "float64"):
    model = models.create("vit_micro_distilled_patch2_8", classes, dtype=jnp.dtype(dtype))
    params = _converted(net.state_dict(), "vit_micro_distilled_patch2_8", classes, dtype)
    loss = lambda p, image: jnp.sum(
        model.apply({"params": p}, image, train=False)[0] * weights.numpy())
    grads, d_image = jax.jit(jax.grad(loss, argnums=(0, 1)))(
        params, jnp.asarray(x.detach().permute(0, 2, 3, 1).numpy()))
  tol = 1e-5 if dtype == "float32" else 1e-10
  paths = jax.tree_util.tree_leaves_with_path(t_grads)
  assert len(paths) == len(jax.tree.leaves(grads))
  for (path, want), got in zip(paths, jax.tree.leaves(grads)):
    assert got.dtype == np.dtype(dtype)
    assert _rel(got, np.asarray(want)) < tol, jax.tree_util.keystr(path)
  assert _rel(d_image, x.grad.permute(0, 2, 3, 1).numpy()) < tol


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_the_attentions_written_out_backward_is_autodiffs(dtype):
  """``vit.attention``'s custom VJP against autodiff of the same forward: float64 within
  1e-12; bfloat16 (its softmax in float32 in both) within bfloat16's rounding."""
  with jax.enable_x64(dtype == "float64"):
    k1, k2 = jax.random.split(jax.random.PRNGKey(4))
    qkv = jax.random.normal(k1, (3, 7, 3 * 2 * 8), jnp.float32).astype(dtype)
    d_out = jax.random.normal(k2, (3, 2, 7, 8), jnp.float32).astype(dtype)
    out, vjp = jax.vjp(lambda a: vit.attention(a, 2), qkv)
    want_out, want_vjp = jax.vjp(lambda a: vit._attend(a, 2)[0], qkv)
    got, want = vjp(d_out)[0], want_vjp(d_out)[0]
  assert got.dtype == qkv.dtype and got.shape == qkv.shape
  np.testing.assert_array_equal(out, want_out)
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  if dtype == "float64":
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
  else:
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2 * np.abs(want).max())
    assert _rel(got, want) < 1e-2


def test_the_parameter_counts_are_timms():
  """TIMM_PARAMS above, read off timm's models (built on the meta device: no memory)."""
  for name, count in TIMM_PARAMS.items():
    with torch.device("meta"):
      net = timm.create_model(name, num_classes=1000)
    assert sum(p.numel() for p in net.parameters()) == count, name


def _micro(distilled=True, **kw):
  name = f"vit_micro{'_distilled' if distilled else ''}_patch2_8"
  model = models.create(name, 10, **kw)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 1))
  return model, models.init(model, jax.random.PRNGKey(1), (8, 8, 1)), x


def test_distilled_logits_are_the_class_head_in_training_and_the_mean_in_inference():
  model, variables, x = _micro(drop_path=0.0)
  apply = jax.jit(model.apply, static_argnames="train")
  train_logits, train_feats = apply(variables, x, train=True)
  eval_logits, feats = apply(variables, x, train=False)
  np.testing.assert_array_equal(train_logits, train_feats["logits/class"])
  np.testing.assert_allclose(eval_logits, (feats["logits/class"] + feats["logits/dist"]) / 2,
                             rtol=1e-6)
  assert not np.allclose(feats["logits/class"], feats["logits/dist"])


def test_token_features_and_stages():
  model, variables, x = _micro()
  _, feats = model.apply(variables, x, train=False)
  assert model.prefix_tokens == 2
  assert feats["stem"].shape == (3, 2 + 16, 64)
  assert {f"block{i}" for i in range(1, 5)} <= set(feats)
  for k in range(1, 5):  # vit_micro: stages 1..4 are blocks 1..4.
    np.testing.assert_array_equal(feats[f"stage{k}"], feats[f"block{k}"])
  deit = models.create("deit_tiny_patch16_224", 10)
  feats = jax.eval_shape(lambda: deit.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))[0][1])
  assert feats["stage2"].shape == (1, 197, 192) and feats["pooled"].shape == (1, 192)
  assert deit.stage_blocks == (2, 4, 10, 12)  # OFA's stage_info for a 12-block ViT.


def test_drop_path_zeroes_whole_examples_and_rescales_the_rest():
  y = jnp.ones((1000, 3, 2))
  holder = vit.Block(num_heads=1)  # Only its make_rng is used.
  out = holder.apply({}, y, 0.25, True, rngs={"dropout": jax.random.PRNGKey(0)},
                     method=lambda m, y, r, t: vit.drop_path(y, r, m, t))
  per_example = np.asarray(out).reshape(1000, -1)
  assert set(np.unique(per_example)) == {0.0, np.float32(1 / 0.75)}
  assert np.all(per_example.min(1) == per_example.max(1))  # Each example all or nothing.
  assert 0.2 < np.mean(per_example[:, 0] == 0) < 0.3
  np.testing.assert_array_equal(vit.drop_path(y, 0.25, holder, train=False), y)


def test_drop_path_rises_linearly_over_the_blocks():
  model = models.create("vit_micro_patch2_8", 10, drop_path=0.3)
  rates = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, vit.Block) and context.method_name == "__call__":
      rates.append(context.module.drop_path)
    return next_fun(*args, **kwargs)
  import flax.linen as nn
  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1))))
  np.testing.assert_allclose(rates, [0.0, 0.1, 0.2, 0.3], rtol=1e-6)  # timm's linspace.


def test_jitted_training_step_reaches_every_parameter():
  """A compiled train-mode step (stochastic depth on) is finite; every parameter, both heads
  and both tokens included, reaches the inference logits."""
  model, variables, x = _micro(drop_path=0.1)
  y = jnp.array([1, 7, 3])

  @jax.jit
  def step(params):
    def loss_fn(p):
      logits, feats = model.apply({"params": p}, x, train=True,
                                  rngs={"dropout": jax.random.PRNGKey(2)})
      ce = optax.softmax_cross_entropy_with_integer_labels
      return (ce(logits, y) + ce(feats["logits/dist"], y)).mean()
    loss = loss_fn(params)
    grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x, train=False)[0] ** 2))(params)
    return loss, grads
  loss, grads = step(variables["params"])
  assert np.isfinite(float(loss))
  dead = [jax.tree_util.keystr(k) for k, g in jax.tree_util.tree_leaves_with_path(grads)
          if not np.any(np.asarray(g))]
  assert not dead, dead


def test_a_state_dict_of_another_configuration_is_refused_in_one_line():
  net = VisionTransformer(img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=4,
                          num_heads=2, num_classes=10)
  with pytest.raises(KdJaxError, match=r"tensor 'cls_token' has shape \(1, 1, 32\), but "
                     r"vit_micro_patch2_8 expects \(1, 1, 64\)"):
    models.from_torch(net.state_dict(), "vit_micro_patch2_8", 10)
  sd = VisionTransformer(img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=4,
                         num_heads=2, num_classes=10).state_dict()
  del sd["blocks.3.mlp.fc2.bias"]
  with pytest.raises(KdJaxError, match=r"missing tensors for vit_micro_patch2_8: Flax "
                     r"blocks_3/mlp/fc2/bias"):
    models.from_torch(sd, "vit_micro_patch2_8", 10)


def test_a_converted_timm_vit_is_a_teacher_a_run_can_load(tmp_path):
  """kd_jax.convert writes a timm state dict (no BatchNorm statistics) as a teacher
  checkpoint; the teachers' loader reads it and the logits are timm's."""
  from kd_jax import convert, plan
  from kd_jax.distill import teachers
  net = _randomized(VisionTransformer(img_size=8, patch_size=2, in_chans=1, embed_dim=64,
                                      depth=4, num_heads=2, num_classes=10))
  torch.save(net.state_dict(), tmp_path / "vit.pth")
  convert.convert("vit_micro_patch2_8", str(tmp_path / "vit.pth"), str(tmp_path / "t"))
  t_plan = plan.plan_teacher("t", {"model": "vit_micro_patch2_8",
                                   "checkpoint": str(tmp_path / "t")})
  (module, variables), = teachers.load({"t": t_plan}, (8, 8, 1)).values()
  x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
  with torch.no_grad():
    want = net(x).numpy()
  logits, _ = module.apply(variables, jnp.asarray(x.permute(0, 2, 3, 1).numpy()), train=False)
  assert _rel(logits, want) < 1e-5

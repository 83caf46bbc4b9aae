"""The CPU convolution (patches x kernel matmuls per chunk of images) equals XLA's."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import models
from kd_jax.models import conv as conv_lib
from kd_jax.models import winograd

DN = ("NHWC", "HWIO", "NHWC")


def _grads(fn, x, w):
  return jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(fn(x, w))), argnums=(0, 1)))(x, w)


@pytest.mark.parametrize("kernel,stride,padding,groups,ci,co", [
    (3, 1, ((1, 1), (1, 1)), 1, 8, 16),
    (3, 2, ((1, 1), (1, 1)), 1, 8, 16),
    (1, 2, ((0, 0), (0, 0)), 1, 8, 16),
    (1, 1, ((0, 0), (0, 0)), 1, 8, 16),  # pointwise: one matmul over the pixels
    (3, 1, ((0, 2), (1, 0)), 1, 4, 4),   # asymmetric padding
    (3, 2, ((1, 1), (1, 1)), 2, 8, 12),  # grouped
    (3, 1, ((1, 1), (1, 1)), 8, 8, 8),   # depthwise
    (5, 1, ((2, 2), (2, 2)), 1, 3, 8),
    (3, 1, ((1, 1), (1, 1)), 1, 16, 24),  # Winograd F(2x2, 3x3)
    (3, 1, ((0, 2), (2, 1)), 1, 16, 16),  # Winograd, asymmetric padding, odd output sizes
])
@pytest.mark.parametrize("chunk", ["whole batch", "one image"])
def test_gradients_equal_xlas_to_1e5(kernel, stride, padding, groups, ci, co, chunk, monkeypatch):
  monkeypatch.setattr(winograd, "_MIN_MACS", 0)  # Winograd for any 3x3 stride-1 float32.
  if chunk == "one image":  # 4 chunks of 1 image: the map over chunks and the summed scan.
    monkeypatch.setattr(conv_lib, "_PATCH_BYTES", 1)
    monkeypatch.setattr(winograd, "_TILE_BYTES", 1)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 9, 9, ci))
  w = jax.random.normal(jax.random.PRNGKey(1), (kernel, kernel, ci // groups, co)) * 0.3
  native = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (stride, stride), padding, dimension_numbers=DN, feature_group_count=groups)
  ours = lambda x, w: conv_lib.matmul_conv(x, w, (stride, stride), padding, groups)
  np.testing.assert_allclose(ours(x, w), native(x, w), rtol=1e-5, atol=1e-5)
  for got, want in zip(_grads(ours, x, w), _grads(native, x, w)):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(want))))


@pytest.mark.skipif(jax.default_backend() != "cpu",
                    reason="the patch-matmul convolution is the CPU path; accelerators run XLA's")
def test_zoo_models_take_the_matmul_path_on_cpu_and_native_when_asked(monkeypatch):
  model = models.create("resnet8", 10)
  x = jnp.ones((2, 8, 8, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  # A new function each time: traces are cached per function.
  jaxpr = lambda: str(jax.make_jaxpr(lambda p: jnp.sum(model.apply({**variables, "params": p},
                                                                   x)[0]))(variables["params"]))
  assert "custom_vjp_call" in jaxpr()
  monkeypatch.setenv("KD_JAX_CONV", "native")
  assert "custom_vjp_call" not in jaxpr()


@pytest.mark.parametrize("winograd_everywhere", [False, True])
def test_a_zoo_models_gradients_equal_the_native_ones(winograd_everywhere, monkeypatch):
  if winograd_everywhere:
    monkeypatch.setattr(winograd, "_MIN_MACS", 0)
  model = models.create("resnet8x4", 10)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 16, 3))
  variables = model.init(jax.random.PRNGKey(1), x)

  def grads():
    def loss(p):
      (logits, _), _ = model.apply({**variables, "params": p}, x, train=True,
                                   mutable=["batch_stats"])
      return jnp.sum(jax.nn.log_softmax(logits)[:, 3])
    return jax.jit(jax.grad(loss))(variables["params"])

  ours = grads()
  monkeypatch.setenv("KD_JAX_CONV", "native")
  native = grads()
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(ours),
                               jax.tree_util.tree_leaves(native)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(want))),
                               err_msg=jax.tree_util.keystr(path))


def test_images_are_chunked_to_fit_the_patch_budget():
  # resnet's 64->64 3x3 at 32x32: 1024 rows x 576 columns, 2.25 MiB of float32 per image.
  assert conv_lib._chunk(64, 32 * 32, 9 * 64) == 2
  assert conv_lib._chunk(64, 8 * 8, 9 * 256) == 8
  assert conv_lib._chunk(6, 8 * 8, 9 * 256) == 6
  assert conv_lib._chunk(7, 8 * 8, 9 * 256) == 7   # Whole batch when it fits...
  assert conv_lib._chunk(7, 32 * 32, 9 * 64) == 1  # ...else the largest divisor that fits.
  assert conv_lib._chunk(64, 64 * 64, 9 * 512) == 1  # One image over budget: still one.


def test_a_bfloat16_convolution_accumulates_in_float32():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 32)).astype(jnp.bfloat16)
  w = (jax.random.normal(jax.random.PRNGKey(1), (3, 3, 32, 8)) * 0.2).astype(jnp.bfloat16)
  pad = ((1, 1), (1, 1))
  got = conv_lib.matmul_conv(x, w, (1, 1), pad, 1)
  want = jax.lax.conv_general_dilated(x.astype(jnp.float32), w.astype(jnp.float32), (1, 1),
                                      pad, dimension_numbers=DN)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=1e-2, atol=1e-2)


def test_winograd_is_exact_on_small_integers():
  """F(2x2, 3x3)'s transforms add and halve: on small integers every intermediate is exact
  in float32, so the result equals the direct convolution to the bit (forward and both
  gradients)."""
  rs = np.random.RandomState(0)
  x = jnp.asarray(rs.randint(-3, 4, (2, 7, 6, 16)).astype(np.float32))
  w = jnp.asarray(rs.randint(-2, 3, (3, 3, 16, 16)).astype(np.float32))
  dy = jnp.asarray(rs.randint(-2, 3, (2, 7, 6, 16)).astype(np.float32))
  pad = ((1, 1), (1, 1))
  native = jax.lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=DN)
  np.testing.assert_array_equal(winograd.conv(x, w, pad), native)
  _, vjp = jax.vjp(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), pad,
                                                              dimension_numbers=DN), x, w)
  np.testing.assert_array_equal(winograd.weight_gradient(x, dy, pad), vjp(dy)[1])


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU path")
def test_large_3x3_stride_1_float32_convolutions_take_winograd(monkeypatch):
  """Forward, input gradient and weight gradient of a 3x3 stride-1 float32 convolution of at
  least 2^29 multiply-adds (at least 2^31 below 16x16 outputs) go through
  ``kd_jax.models.winograd``; smaller ones, stride 2, bfloat16 or KD_JAX_CONV=patches do not."""
  calls = []
  for name in ("conv", "weight_gradient"):
    real = getattr(winograd, name)
    monkeypatch.setattr(winograd, name, lambda *a, real=real, name=name: (calls.append(name),
                                                                         real(*a))[1])

  def traced(n, size, channels, stride=1, dtype=jnp.float32):
    calls.clear()
    x = jax.ShapeDtypeStruct((n, size, size, channels), dtype)
    w = jax.ShapeDtypeStruct((3, 3, channels, channels), dtype)
    jax.make_jaxpr(jax.grad(lambda x, w: jnp.sum(conv_lib.matmul_conv(
        x, w, (stride, stride), ((1, 1), (1, 1)), 1).astype(jnp.float32)), (0, 1)))(x, w)
    return sorted(calls)

  winograd_used = ["conv", "conv", "weight_gradient"]
  assert traced(64, 32, 64) == winograd_used  # 2^31.2 multiply-adds (CIFAR's resnet32x4).
  assert traced(64, 8, 256) == winograd_used  # 8x8, but 2^31.2.
  assert traced(64, 8, 128) == []             # 8x8 at 2^29.2.
  assert traced(64, 16, 32) == []             # 2^27.2.
  assert traced(64, 32, 64, stride=2) == traced(64, 32, 64, dtype=jnp.bfloat16) == []
  monkeypatch.setenv("KD_JAX_CONV", "patches")
  assert traced(64, 32, 64) == []

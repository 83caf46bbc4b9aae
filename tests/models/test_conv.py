"""The CPU convolution (patches x kernel matmuls per chunk of images) equals XLA's."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import models
from kd_jax.models import conv as conv_lib

DN = ("NHWC", "HWIO", "NHWC")


def _grads(fn, x, w):
  return jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(fn(x, w))), argnums=(0, 1)))(x, w)


@pytest.mark.parametrize("kernel,stride,padding,groups,ci,co", [
    (3, 1, ((1, 1), (1, 1)), 1, 8, 16),
    (3, 2, ((1, 1), (1, 1)), 1, 8, 16),
    (1, 2, ((0, 0), (0, 0)), 1, 8, 16),
    (3, 1, ((0, 2), (1, 0)), 1, 4, 4),   # asymmetric padding
    (3, 2, ((1, 1), (1, 1)), 2, 8, 12),  # grouped
    (3, 1, ((1, 1), (1, 1)), 8, 8, 8),   # depthwise
    (5, 1, ((2, 2), (2, 2)), 1, 3, 8),
])
@pytest.mark.parametrize("chunk", ["whole batch", "one image"])
def test_gradients_equal_xlas_to_1e5(kernel, stride, padding, groups, ci, co, chunk, monkeypatch):
  if chunk == "one image":  # 4 chunks of 1 image: the map over chunks and the summed scan.
    monkeypatch.setattr(conv_lib, "_PATCH_BYTES", 1)
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


def test_a_zoo_models_gradients_equal_the_native_ones(monkeypatch):
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

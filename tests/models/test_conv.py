"""The CPU convolution (native forward, weight gradients by matmuls) equals XLA's."""
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
def test_gradients_equal_xlas_to_1e5(kernel, stride, padding, groups, ci, co):
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 9, 9, ci))
  w = jax.random.normal(jax.random.PRNGKey(1), (kernel, kernel, ci // groups, co)) * 0.3
  native = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (stride, stride), padding, dimension_numbers=DN, feature_group_count=groups)
  ours = lambda x, w: conv_lib.matmul_grad_conv(x, w, (stride, stride), padding, groups)
  np.testing.assert_array_equal(ours(x, w), native(x, w))  # The forward is XLA's own.
  for got, want in zip(_grads(ours, x, w), _grads(native, x, w)):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(want))))


def test_zoo_models_take_the_matmul_path_on_cpu_and_native_when_asked(monkeypatch):
  model = models.create("resnet8", 10)
  x = jnp.ones((2, 8, 8, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  # A new function each time: traces are cached per function.
  jaxpr = lambda: str(jax.make_jaxpr(lambda p: jnp.sum(model.apply({**variables, "params": p},
                                                                   x)[0]))(variables["params"]))
  assert jax.default_backend() == "cpu"
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

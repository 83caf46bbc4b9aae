import jax
import pytest


@pytest.fixture(scope="module")
def fast_compilation():
  """A few steps on big models: XLA's optimisations cost more time than they save here."""
  old = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", old)

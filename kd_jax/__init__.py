"""kd_jax: knowledge distillation in JAX/Flax (docs/ and README.md)."""

__version__ = "0.1.0"

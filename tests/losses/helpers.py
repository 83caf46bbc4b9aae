"""``run``: call a loss under ``jit`` (one XLA compilation instead of one per primitive,
which dominates these small tests on CPU); arrays and pytrees of arrays are traced,
Python scalars, strings, None and callables are bound statically."""
import functools

import jax
import numpy as np


def _static(a) -> bool:
  if callable(a) and not isinstance(a, (np.ndarray, jax.Array)):
    return True
  return all(isinstance(x, (bool, int, float, str)) for x in jax.tree.leaves(a))


def run(fn, *args, **kwargs):
  dynamic = [i for i, a in enumerate(args) if not _static(a)]

  def bound(*values):
    full = list(args)
    for i, v in zip(dynamic, values):
      full[i] = v
    return fn(*full, **kwargs)

  return jax.jit(functools.partial(bound))(*[args[i] for i in dynamic])

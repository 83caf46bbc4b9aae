"""A method that minimises nothing and records what the train step's objectives read: the
batch after the step's device augmentation and ``transform_batch``. Registered as
``batch_probe`` only inside ``with registered():`` (the registry lists every method in
messages other tests check), and named in a config's objectives like any method."""
from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax import methods

RECORDED: list[dict[str, np.ndarray]] = []


class BatchProbe(methods.Method):
  """Appends ``{key: batch[key]}`` for those of ``keys`` the batch has to ``RECORDED`` at
  every step (the example batch that the train state's shape check traces has only image,
  label and index)."""
  keys: tuple = ("image", "label", "index")
  needs_teacher = False
  partial_labels = True

  def loss(self, ctx):
    names = tuple(k for k in self.keys if k in ctx.batch)

    def record(*values):
      RECORDED.append({k: np.asarray(v) for k, v in zip(names, values)})
    jax.debug.callback(record, *(ctx.batch[k] for k in names))
    return jnp.zeros((), jnp.float32)


@contextlib.contextmanager
def registered():
  """``batch_probe`` registered, and ``RECORDED`` emptied, for the block."""
  RECORDED.clear()
  methods.register("batch_probe")(BatchProbe)
  try:
    yield
  finally:
    methods.REGISTRY.pop("batch_probe", None)


def recorded() -> list[dict[str, np.ndarray]]:
  """What the steps inside ``registered()`` recorded, once every callback has run."""
  jax.effects_barrier()
  return list(RECORDED)

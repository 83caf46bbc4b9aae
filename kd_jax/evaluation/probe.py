"""Linear probe: multinomial logistic regression on frozen features.

Features are standardised with the training set's mean and standard deviation; the
classifier ``softmax(x W + b)`` minimises ``mean CE + l2 * ||W||^2 / 2`` with full-batch
L-BFGS (``optax.lbfgs``), one fit per L2 weight of a grid in parallel (``vmap``). The L2
weight is chosen by accuracy on a validation part held out of the training set; the
classifier is then refit on the whole training set with it and scored on the test set.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax


def extract_features(apply_fn: Callable[[jax.Array], jax.Array], batches: Iterable[dict]
                     ) -> tuple[np.ndarray, np.ndarray]:
  """``(features [N, D], labels [N])`` over masked batches (padding rows dropped).
  apply_fn: image batch -> feature batch (jitted by the caller)."""
  feats, labels = [], []
  for batch in batches:
    keep = np.asarray(batch["mask"]) > 0
    feats.append(np.asarray(apply_fn(batch["image"]), np.float32)[keep])
    labels.append(np.asarray(batch["label"])[keep])
  return np.concatenate(feats), np.concatenate(labels).astype(np.int32)


def _loss(params, x, y, l2):
  logits = x @ params["w"] + params["b"]
  ce = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=-1))
  return ce + 0.5 * l2 * jnp.sum(jnp.square(params["w"]))


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit_grid(x: jax.Array, y: jax.Array, l2: jax.Array, num_classes: int, steps: int):
  opt = optax.lbfgs()

  def fit(l2_one):
    loss = lambda p: _loss(p, x, y, l2_one)
    value_and_grad = optax.value_and_grad_from_state(loss)
    params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}

    def body(carry, _):
      p, s = carry
      value, grad = value_and_grad(p, state=s)
      updates, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=loss)
      return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
    return params

  return jax.vmap(fit)(l2)


def fit_logistic(x: jax.Array, y: jax.Array, num_classes: int, l2: jax.Array,
                 steps: int = 300) -> dict[str, jax.Array]:
  """Logistic-regression weights ``{'w': [..., D, C], 'b': [..., C]}``, one per entry of
  ``l2`` (a vector of L2 weights; the leading axis of the result), by ``steps`` L-BFGS
  iterations from zero. Compiled once per shape of ``x`` and ``l2`` (the data are arguments
  of the program, not constants in it)."""
  return _fit_grid(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32),
                   jnp.asarray(l2, jnp.float32), num_classes=num_classes, steps=steps)


def accuracy(params: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> np.ndarray:
  """Top-1 accuracy of each classifier in ``params`` (leading axis) on ``(x, y)``."""
  logits = jnp.einsum("nd,kdc->knc", jnp.asarray(x, jnp.float32), params["w"])
  logits = logits + params["b"][:, None, :]
  return np.asarray(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(y)[None], axis=-1))


def linear_probe(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                 num_classes: int, l2_grid: Sequence[float], steps: int = 300,
                 validation_fraction: float = 0.2, seed: int = 0) -> dict[str, Any]:
  """The linear-probe protocol (module docstring). Returns ``{'top1': test accuracy,
  'l2': the chosen weight, 'validation': {l2: accuracy}, 'train_top1': ...}``."""
  (x_train, y_train), (x_test, y_test) = train, test
  mean = x_train.mean(0)
  std = x_train.std(0) + 1e-6
  x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
  order = np.random.RandomState(seed).permutation(len(y_train))
  n_val = max(1, int(round(validation_fraction * len(y_train))))
  val, fit = order[:n_val], order[n_val:]
  grid = np.asarray(l2_grid, np.float32)
  val_acc = accuracy(fit_logistic(x_train[fit], y_train[fit], num_classes, grid, steps),
                     x_train[val], y_train[val])
  best = int(np.argmax(val_acc))  # Ties: the smallest L2 weight of the grid order given.
  final = fit_logistic(x_train, y_train, num_classes, grid[best:best + 1], steps)
  return {"top1": float(accuracy(final, x_test, y_test)[0]),
          "train_top1": float(accuracy(final, x_train, y_train)[0]),
          "l2": float(l2_grid[best]),
          "validation": {f"{v:g}": float(a) for v, a in zip(l2_grid, val_acc)}}

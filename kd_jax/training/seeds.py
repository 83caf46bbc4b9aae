"""Seeds side by side: the seeds of a run (``config.seeds``) as one train state with a
leading seed axis and one train step over it (vmapped, or the students one after the other:
``config.seed_compute``).

Every array of the state has the seed axis except the step counter (the seeds step
together) and the teachers' variables (one copy for all). Seed ``k`` draws what a run of
seed ``k`` alone draws: its initialisation from ``PRNGKey(k)``, the step's key from
``PRNGKey(k + 1)`` (dropout, mixup, other views, the objectives' draws), its host samplers'
draws (CRD's negatives) from ``k``. What differs between the two modes is the data:

- ``shared``: every seed reads the same batches, in the order and with the augmentation of
  ``config.seed`` (the host pipeline's, and the device augmentation's key from
  ``PRNGKey(config.seed + 1)``). A network input that no seed's draw changes is not
  batched by ``vmap``: the teachers run once per batch for all seeds.
- ``independent``: each seed its own batches (order and augmentation of seed ``k``), stacked
  on the seed axis: seed ``k`` trains exactly as a run of seed ``k`` alone.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import numpy as np

from kd_jax.distill import host_inputs
from kd_jax.distill.state import TrainState

SHARED, INDEPENDENT = "shared", "independent"
VMAP, LOOP = "vmap", "loop"


def state_axes() -> TrainState:
  """``vmap`` axes of a seeded ``TrainState``: 0 for every array but ``step`` and the
  teachers' variables (None)."""
  return TrainState(step=None, params=0, batch_stats=0, opt_state=0, bad_step=0,
                    teachers=None, objective_state=0)


def keys(seeds: Sequence[int], offset: int = 0) -> jax.Array:
  """``[S, 2]``: ``PRNGKey(k + offset)`` of each seed, stacked."""
  return jax.numpy.stack([jax.random.PRNGKey(k + offset) for k in seeds])


def is_stacked(key: str, mode: str) -> bool:
  """Whether the batch array ``key`` has the seed axis: every array in ``independent`` mode,
  the host samplers' draws (drawn per seed) in ``shared`` mode."""
  return mode == INDEPENDENT or host_inputs.is_host_key(key)


def compute(setting: str, backend: str | None = None) -> str:
  """How the seeds' students run (``config.seed_compute``): ``vmap`` or ``loop``; ``auto``:
  ``loop`` on CPU (batched per-seed weights cost a CPU more per seed than one seed does),
  ``vmap`` on an accelerator (the seeds fill it)."""
  if setting != "auto":
    return setting
  return LOOP if (backend or jax.default_backend()) == "cpu" else VMAP


def _in_turn(per_seed: Callable, state: TrainState, *xs):
  """``per_seed(seed's state, *seed's xs) -> (state or None, out)`` for one seed after the
  other (``lax.map`` over the seed axis of ``state`` and ``xs``): each seed's state with the
  shared ``step`` and ``teachers``; the new states (without those two) and outputs stacked."""
  unshared = lambda s: s if s is None else s.replace(step=None, teachers=None)

  def one(x):
    new, out = per_seed(x[0].replace(step=state.step, teachers=state.teachers), *x[1:])
    return unshared(new), out
  return jax.lax.map(one, (unshared(state), *xs))


def seeded_step(step_fn: Callable, mode: str, data_key: jax.Array | None = None,
                how: str = VMAP) -> Callable:
  """``step_fn`` (``(state, batch, rng) -> (state, metrics)``) over a seeded state: ``rng``
  ``[S, 2]`` (each seed's step key), the batch's arrays stacked on the seed axis where
  ``is_stacked``; metrics with the seed axis. ``shared``: ``data_key`` (the data seed's step
  key) is each step's data key (device augmentation), shared by the seeds.

  ``how``: ``vmap``: the whole step vmapped over the seeds. ``loop``: one seed after the
  other (``lax.map``), each at a lone seed's shapes: in shared mode ``step_fn.inputs`` (the
  batch's views, the teachers: ``step.Step``) vmapped first, so the teachers still run once,
  then ``step_fn.update`` (the student, the objectives, the update) per seed; in independent
  mode each seed's whole step."""
  keys_of = (lambda r: (r, data_key)) if mode == SHARED else (lambda r: r)

  def fn(state, batch, rng):
    batch_axes = {k: 0 if is_stacked(k, mode) else None for k in batch}
    if how == VMAP:
      return jax.vmap(lambda s, b, r: step_fn(s, b, keys_of(r)),
                      in_axes=(state_axes(), batch_axes, 0),
                      out_axes=(state_axes(), 0))(state, batch, rng)
    if mode == INDEPENDENT:  # Nothing shared: each seed's whole step in turn.
      new, metrics = _in_turn(step_fn, state, batch, rng)
    else:
      inputs = jax.vmap(lambda s, b, r: step_fn.inputs(s, b, keys_of(r)),
                        in_axes=(state_axes(), batch_axes, 0))(state, batch, rng)
      new, metrics = _in_turn(step_fn.update, state, inputs)
    return new.replace(step=state.step + 1, teachers=state.teachers), metrics
  return fn


def seeded_eval(eval_fn: Callable, how: str = VMAP) -> Callable:
  """``eval_fn`` (``(state, batch) -> metrics``) over a seeded state on one batch for all:
  ``vmap``: each seed given its own copy (as ``step._per_seed``: computed as by a seed
  alone); ``loop``: one seed after the other."""
  def fn(state, batch):
    if how == LOOP:
      return _in_turn(lambda s: (None, eval_fn(s, batch)), state)[1]
    n = state.bad_step.shape[0]
    copies = jax.tree.map(lambda a: jax.numpy.broadcast_to(a, (n, *a.shape)), batch)
    return jax.vmap(eval_fn, in_axes=(state_axes(), 0))(state, copies)
  return fn


def take(tree: Any, i: int) -> Any:
  """Seed ``i`` of arrays with the seed axis."""
  return jax.tree.map(lambda a: a[i], tree)


@functools.partial(jax.jit, static_argnums=1)
def unstack(tree: Any, n: int) -> list[Any]:
  """``[take(tree, i) for i in range(n)]`` in one dispatch (taken one array at a time, a
  checkpoint of 3 seeds' state was hundreds of dispatches)."""
  return [take(tree, i) for i in range(n)]


def stack(trees: Sequence[Any]) -> Any:
  return jax.tree.map(lambda *a: jax.numpy.stack(a), *trees)


def batches(data, epoch: int, start: int, seeds: Sequence[int], mode: str, data_seed: int,
            samplers: Mapping[str, Any], stream: int, first_step: int) -> Iterator[dict]:
  """The host batches of a seeded run from ``start`` in ``epoch``: ``shared``: the batches of
  ``data_seed`` with each seed's host draws stacked; ``independent``: each seed's batches
  (with its draws) stacked."""
  if mode == SHARED:
    for step, batch in enumerate(data.train_batches(epoch, start, data_seed, stream=stream),
                                 first_step):
      draws = [host_inputs.draw(samplers, batch, k, stream, step) for k in seeds]
      yield {**batch, **{key: np.stack([d[key] for d in draws]) for key in draws[0]}}
    return
  streams = [host_inputs.attach(data.train_batches(epoch, start, k, stream=stream), samplers,
                                k, stream, first_step) for k in seeds]
  for per_seed in zip(*streams):
    yield {key: np.stack([b[key] for b in per_seed]) for key in per_seed[0]}

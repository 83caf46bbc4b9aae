"""Inputs that objectives draw on the host for each batch (``Method.host_sampler``, e.g.
CRD's other-class negatives).

The samplers are built once at start-up from the train split (``methods.TrainSplit``). Each
local batch gets, per objective with a sampler, the arrays it draws under
``host_key(objective, name)``; the generator of a draw is seeded by (seed, the phase's data
stream, the step, the process, the objective), so a resumed run draws exactly what the
uninterrupted one drew and each process draws for its own examples.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np

from kd_jax.errors import KdJaxError
from kd_jax.methods import HostSampler, TrainSplit

_PREFIX = "host/"


def host_key(objective: str, name: str) -> str:
  """The batch key of the array ``name`` drawn for ``objective``."""
  return f"{_PREFIX}{objective}/{name}"


def is_host_key(key: str) -> bool:
  """Whether the batch key ``key`` holds a host draw (``host_key``)."""
  return key.startswith(_PREFIX)


def of(objective: str, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """``{name: array}`` drawn for ``objective`` in ``batch``."""
  prefix = host_key(objective, "")
  return {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)}


def build(objectives: Sequence, split: TrainSplit) -> dict[str, HostSampler]:
  """``{objective name: sampler}`` of the objectives that draw on the host; a sampler that
  refuses the configuration (ValueError) stops the run in one line naming the objective."""
  out = {}
  for obj in objectives:
    try:
      sampler = obj.method.host_sampler(split)
    except ValueError as err:
      raise KdJaxError(f"config.objectives.{obj.name}: {err}") from None
    if sampler is not None:
      out[obj.name] = sampler
  return out


def specs(samplers: Mapping[str, HostSampler], batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """The shapes and dtypes of what ``samplers`` add to a batch of ``batch_size``."""
  return {host_key(name, k): v for name, s in samplers.items()
          for k, v in s.specs(batch_size).items()}


def draw(samplers: Mapping[str, HostSampler], batch: Mapping[str, np.ndarray], seed: int,
         stream: int, step: int) -> dict[str, np.ndarray]:
  """What ``samplers`` draw for this process's ``batch`` at ``step`` of the data ``stream``."""
  out = {}
  for i, name in enumerate(sorted(samplers)):
    rng = np.random.default_rng([seed % 2**32, stream, step, jax.process_index(), i])
    out.update({host_key(name, k): v for k, v in samplers[name](batch, rng).items()})
  return out


def attach(batches: Iterable[dict], samplers: Mapping[str, HostSampler], seed: int,
           stream: int, first_step: int) -> Iterator[dict]:
  """``batches`` (steps ``first_step``, ``first_step + 1``, ...) with the drawn inputs added."""
  for step, batch in enumerate(batches, first_step):
    yield {**batch, **draw(samplers, batch, seed, stream, step)} if samplers else batch

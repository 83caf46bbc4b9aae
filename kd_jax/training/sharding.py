"""Devices and data parallelism: one ``Mesh`` over every device, batches sharded on 'data'."""
from __future__ import annotations

import collections
import os
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from kd_jax.errors import KdJaxError


def maybe_initialize_distributed() -> None:
  """Joins a multi-process job when one is configured (``JAX_COORDINATOR_ADDRESS`` /
  ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, or a cluster JAX detects: TPU pods, SLURM)."""
  if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("KD_JAX_DISTRIBUTED") == "auto":
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize(
        coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]))
  elif os.environ.get("KD_JAX_DISTRIBUTED") == "auto":
    jax.distributed.initialize()


def data_mesh() -> Mesh:
  """A 1-D mesh named 'data' over all devices of all processes (Auto axis type)."""
  return Mesh(np.array(jax.devices()), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, field: str = "config.batch_size") -> None:
  n = jax.device_count()
  if batch_size % n:
    raise KdJaxError(f"{field}={batch_size} is not divisible by the {n} devices; "
                     f"use a multiple of {n}, e.g. {max(n, batch_size // n * n)}")


def host_value(tree):
  """Replicated device arrays -> numpy, also when they span several processes (each process
  reads its own replica; no cross-host transfer)."""
  return jax.tree.map(
      lambda a: np.asarray(a.addressable_data(0)) if isinstance(a, jax.Array) else a, tree)


def shard_batch(batch: dict[str, np.ndarray], sharding: NamedSharding,
                stacked: Callable[[str], bool] | None = None) -> dict[str, jax.Array]:
  """This process's slice of the global batch -> global arrays sharded over 'data'.
  ``stacked(key)``: that array has a leading seed axis (``training/seeds.py``) before its
  batch axis, which is the one sharded."""
  seed_sharding = NamedSharding(sharding.mesh, P(None, *sharding.spec))
  return {k: jax.make_array_from_process_local_data(
      seed_sharding if stacked is not None and stacked(k) else sharding, v)
      for k, v in batch.items()}


def prefetch_to_device(batches, sharding: NamedSharding, size: int = 2,
                       stacked: Callable[[str], bool] | None = None):
  """Yields ``shard_batch(b, sharding, stacked)`` for each of ``batches``, keeping ``size``
  batches in flight: the host-to-device copy of the next batch overlaps the current step
  (device transfers are asynchronous; the step is dispatched before the next batch is
  needed)."""
  queue = collections.deque()
  for batch in batches:
    queue.append(shard_batch(batch, sharding, stacked))
    if len(queue) >= size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()

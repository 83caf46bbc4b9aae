"""The one train state of every run (supervised training is distillation with no teacher)."""
from __future__ import annotations

from typing import Any

import dataclasses

import flax.struct
import jax

# The fields that are checkpointed. Teachers are referenced, not re-saved.
CHECKPOINTED = ("step", "params", "batch_stats", "opt_state", "bad_step", "objective_state")


class TrainState(flax.struct.PyTreeNode):
  """All the arrays a train step reads and writes.

  params: ``{'student': ..., 'adapters': {objective: ...}}`` (adapters: the objectives'
    learnable modules).
  batch_stats: the student's BatchNorm running statistics.
  objective_state: ``{objective: {...}}``, the objectives' non-trainable state: BatchNorm
    statistics of their adapters (``batch_stats``), CRD's memory bank (``memory``).
  bad_step: -1, or the first step whose loss or gradients were not finite; from then
    on updates are skipped so the state stays the last good one.
  teachers: ``{name: variables}`` of the frozen teachers (not optimised, not saved).
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  bad_step: jax.Array
  teachers: Any = None
  objective_state: Any = dataclasses.field(default_factory=dict)

  def checkpoint_items(self) -> dict[str, Any]:
    return {k: getattr(self, k) for k in CHECKPOINTED}

  def replace_checkpointed(self, items: dict[str, Any]) -> "TrainState":
    return self.replace(**{k: items[k] for k in CHECKPOINTED})

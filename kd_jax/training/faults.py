"""Fault injection, for testing a run's recovery at an exact point instead of racing it
with a signal from outside: ``KD_JAX_FAULT=<SIGNAL>@<point>:<step>`` makes the process send
itself the signal there (each start of the command that has it set: resume without it).

Points: ``step`` (the main phase, right after step ``<step>``'s update, before anything else
of that step: logging, evaluation, checkpoint, the preemption check), ``save`` (right after
the checkpoint of step ``<step>`` was handed to orbax, while its asynchronous write is in
flight), ``phase`` (an initialisation phase, right after its step ``<step>``).

E.g. ``KD_JAX_FAULT=SIGTERM@step:31`` preempts the run after step 31,
``KD_JAX_FAULT=SIGKILL@save:8`` kills it in the middle of writing step 8's checkpoint.
Unset (the default), every call is one dictionary lookup.
"""
from __future__ import annotations

import functools
import os
import re
import signal

from kd_jax.errors import KdJaxError

POINTS = ("step", "save", "phase")


@functools.lru_cache(maxsize=None)
def _parse(value: str) -> tuple[int, str, int] | None:
  if not value:
    return None
  match = re.fullmatch(r"(SIG[A-Z0-9]+)@(\w+):(\d+)", value)
  if not match or match.group(2) not in POINTS or not hasattr(signal, match.group(1)):
    raise KdJaxError(f"KD_JAX_FAULT={value!r}: expected <SIGNAL>@<point>:<step>, point one "
                     f"of {', '.join(POINTS)} (e.g. SIGTERM@step:31)")
  return int(getattr(signal, match.group(1))), match.group(2), int(match.group(3))


def at(point: str, step: int) -> None:
  """Sends the configured signal to this process if ``point`` and ``step`` are the
  configured ones."""
  fault = _parse(os.environ.get("KD_JAX_FAULT", ""))
  if fault is not None and fault[1:] == (point, step):
    os.kill(os.getpid(), fault[0])

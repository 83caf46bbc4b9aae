"""What the tests that run kd_jax's commands share: the repository root, the train command on
the embedded digits, the checkpoint steps a workdir holds, and bit-identical parameters."""
from __future__ import annotations

import glob
import os
import sys

import jax
import numpy as np

from kd_jax import checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISED = "configs/digits/supervised.py"  # 22 steps per epoch (1,437 images, batch 64).


def train_command(workdir, *overrides: str, config: str = SUPERVISED) -> list[str]:
  """``python -m kd_jax.train --config=<config> --workdir=<workdir> <overrides>``."""
  return [sys.executable, "-m", "kd_jax.train", f"--config={config}", f"--workdir={workdir}",
          *overrides]


def checkpoint_steps(workdir, folder: str = "checkpoints") -> list[int]:
  """The complete (finalised) checkpoint steps under ``<workdir>/<folder>``, ascending."""
  return sorted(int(os.path.basename(p)) for p in glob.glob(f"{workdir}/{folder}/*")
                if os.path.basename(p).isdigit())


def partial_checkpoints(workdir, folder: str = "checkpoints") -> list[str]:
  """Names of the checkpoints orbax had not finalised (``<step>.orbax-checkpoint-tmp*``)."""
  return sorted(os.path.basename(p) for p in glob.glob(f"{workdir}/{folder}/*tmp*"))


def assert_same_final_params(workdir_a, workdir_b) -> None:
  """The two runs' latest student parameters and batch statistics are bit-identical."""
  a, _ = checkpoint.load_model_variables(str(workdir_a))
  b, _ = checkpoint.load_model_variables(str(workdir_b))
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)

"""Convert a PyTorch checkpoint of a zoo model into a kd_jax teacher checkpoint.

  python -m kd_jax.convert --arch=resnet32x4 --torch=ckpt.pth --out=<dir> [--num_classes=100]

Reads the file with ``torch.load(weights_only=True)`` (training checkpoints keep the weights
under 'model' or 'state_dict': ``torch_import.unwrap``), converts it
(kd_jax.models.torch_import) and writes an orbax checkpoint in ``<dir>/best/0`` that a
config uses as ``teachers.<name> = dict(model=<arch>, checkpoint=<dir>)``.
"""
from __future__ import annotations

import os
import sys

from kd_jax import runtime

runtime.quiet_library_logs()  # Before TensorFlow is imported.

from absl import app, flags  # noqa: E402

_ARCH = flags.DEFINE_string("arch", None, "Zoo model name, e.g. resnet32x4.")
_TORCH = flags.DEFINE_string("torch", None, "PyTorch checkpoint (.pth) to convert.")
_OUT = flags.DEFINE_string("out", None, "Directory to write the kd_jax checkpoint to.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", -1, "-1: read from the classifier.")
_INPUT = flags.DEFINE_integer("image_size", -1, "Input size the model is built for "
                              "(-1: 224 for ImageNet models, else 32).")


def convert(arch: str, torch_path: str, out: str, num_classes: int = -1,
            image_size: int = -1) -> str:
  """Converts and saves; returns the checkpoint directory."""
  import numpy as np
  from kd_jax.models import torch_import
  from kd_jax import checkpoint as ckpt_lib
  state_dict = torch_import.unwrap(torch_import.load_torch_file(torch_path))
  if num_classes <= 0:  # The last 2-D weight is the classifier's: [classes, features].
    matrices = [v for k, v in state_dict.items() if k.endswith("weight") and len(v.shape) == 2]
    num_classes = int(matrices[-1].shape[0])
  size = image_size if image_size > 0 else (224 if arch in ("resnet18", "resnet34", "resnet50")
                                            else 32)
  variables = torch_import.from_torch(state_dict, arch, num_classes, input_shape=(size, size, 3))
  meta = {"model": arch, "num_classes": num_classes, "source": os.path.abspath(torch_path),
          "step": 0}
  path = ckpt_lib.save_model_variables(out, variables, meta)
  n = sum(int(np.prod(x.shape)) for x in __import__("jax").tree.leaves(variables["params"]))
  print(f"kd_jax: converted {torch_path} ({arch}, {num_classes} classes, {n:,} parameters) "
        f"into {path}/0", flush=True)
  return path


def main(argv):
  del argv
  from kd_jax.cli import set_log_levels
  from kd_jax.errors import KdJaxError
  set_log_levels()
  missing = [f"--{f.name}" for f in (_ARCH, _TORCH, _OUT) if not f.value]
  if missing:
    sys.exit(f"kd_jax: error: missing {', '.join(missing)}")
  try:
    convert(_ARCH.value, _TORCH.value, _OUT.value, _NUM_CLASSES.value, _INPUT.value)
  except KdJaxError as err:
    sys.exit(f"kd_jax: error: {err}")


if __name__ == "__main__":
  app.run(main)

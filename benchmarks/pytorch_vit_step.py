"""timm's PyTorch ViT steps that ``kd_jax.benchmark`` is compared with for the ViT pairs, timed
the same way (``kd_jax.bench.timing``, as ``benchmarks/pytorch_step.py``).

  python benchmarks/pytorch_vit_step.py        # DeiT-S teacher, DeiT-Ti student, batch 32, 224 px
  python -m kd_jax.benchmark --config=configs/imagenet/deit.py:deit,tiny,deit_small_patch16_224 \
      --batch=32 --pipeline=false                 # the same three measurements in kd_jax

On one random batch held in memory, float32:

* ``teacher_forward``: ``--teacher`` (timm, eval mode) under ``torch.no_grad()``;
* ``student_step``: ``--student`` (timm, a distilled DeiT with stochastic depth 0.1 as DeiT
  trains it) in training mode: cross-entropy on its class head (``logits`` in training, as
  kd_jax's ``ce``), AdamW with DeiT's recipe (lr 5e-4 per 512 images, weight decay 0.05 without
  decay on biases, norms, tokens and position embeddings: timm's ``param_groups_weight_decay``);
* ``distill_step deit``: DeiT's ``DistillationLoss`` (facebookresearch/deit ``losses.py``, as
  transcribed in ``tests/losses/torch_reference_vit.py``), hard, alpha 0.5, its base criterion
  cross-entropy with label smoothing 0.1 on the class head, the teacher's argmax on the
  distillation head; the teacher under ``no_grad`` inside the loss, as DeiT's ``main.py``.

The models are built with random weights (no download). Needs ``pip install -e ".[test]"``
(torch, timm); run from the repository root. Prints a table, then one JSON object per
measurement.
"""
from __future__ import annotations

import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from timm.optim import param_groups_weight_decay  # noqa: E402

from kd_jax.bench import timing  # noqa: E402
from tests.losses import torch_reference_vit as vit_ref  # noqa: E402

_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 2, "Steps per timed window.")
_WINDOWS = flags.DEFINE_integer("windows", 5, "Timed windows.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first.")
_ATTEMPTS = flags.DEFINE_integer("attempts", timing.ATTEMPTS, "Times the windows are measured "
                                 "at most, while they spread more than --max_spread.")
_MAX_SPREAD = flags.DEFINE_float("max_spread", timing.MAX_SPREAD, "Windows' slowest / fastest "
                                 "- 1 above which they are measured again.")
_TEACHER = flags.DEFINE_string("teacher", "deit_small_patch16_224", "timm teacher.")
_STUDENT = flags.DEFINE_string("student", "deit_tiny_distilled_patch16_224",
                               "timm student: a distilled DeiT (two heads).")
_CLASSES = flags.DEFINE_integer("classes", 1000, "Classes.")
_SIZE = flags.DEFINE_integer("image_size", 224, "Image side.")


def _steps(batch: int, teacher_name: str, student_name: str, classes: int, size: int
           ) -> dict[tuple[str, str], object]:
  torch.manual_seed(0)
  x = torch.randn(batch, 3, size, size)
  y = torch.randint(0, classes, (batch,))
  teacher = timm.create_model(teacher_name, pretrained=False, num_classes=classes,
                              img_size=size).eval()
  student = timm.create_model(student_name, pretrained=False, num_classes=classes,
                              img_size=size, drop_path_rate=0.1).train()
  student.set_distilled_training(True)  # Training mode returns (class head, distillation head).
  opt = torch.optim.AdamW(param_groups_weight_decay(student, 0.05), lr=5e-4 * batch / 512)
  criterion = vit_ref.DistillationLoss(torch.nn.CrossEntropyLoss(label_smoothing=0.1), teacher,
                                       "hard", alpha=0.5, tau=1.0)

  def teacher_forward():
    with torch.no_grad():
      teacher(x)

  def student_step():
    opt.zero_grad()
    logits, _ = student(x)
    F.cross_entropy(logits, y).backward()
    opt.step()

  def deit_step():
    opt.zero_grad()
    criterion(x, student(x), y).backward()
    opt.step()

  return {("teacher_forward", "teacher"): teacher_forward, ("student_step", "ce"): student_step,
          ("distill_step", "deit"): deit_step}


def main(argv):
  del argv
  b = _BATCH.value
  common = {"framework": "pytorch", "torch_version": torch.__version__,
            "timm_version": timm.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "batch_size": b, "dtype": "float32",
            "model": _STUDENT.value, "teachers": f"teacher={_TEACHER.value}",
            "input_shape": [_SIZE.value, _SIZE.value, 3], "steps_per_window": _STEPS.value,
            "windows": _WINDOWS.value, "max_spread": _MAX_SPREAD.value}
  print(f"pytorch {torch.__version__} timm {timm.__version__}, {torch.get_num_threads()} "
        f"threads, batch {b}, float32, student {_STUDENT.value}, teacher {_TEACHER.value}, "
        f"input ({_SIZE.value}, {_SIZE.value}, 3)")
  # PyTorch on CPU runs eagerly: a step has finished when it returns.
  records = timing.eager_table(
      _steps(b, _TEACHER.value, _STUDENT.value, _CLASSES.value, _SIZE.value), b, common,
      steps_per_window=_STEPS.value, windows=_WINDOWS.value, warmup=_WARMUP.value,
      attempts=_ATTEMPTS.value, max_spread=_MAX_SPREAD.value,
      print_fn=lambda s: print(s, flush=True))
  for rec in records:
    print(json.dumps(rec))


if __name__ == "__main__":
  app.run(main)

"""The PyTorch RepDistiller steps that ``kd_jax.benchmark`` is compared with, timed the same way.

  python benchmarks/pytorch_step.py            # resnet32x4 -> resnet8x4, batch 64, CIFAR shapes

Measures, after ``--warmup`` steps, ``--windows`` windows of ``--steps`` steps each (images/s of
the median window, with the slowest and fastest; windows that spread more than
``--max_spread`` measured again, at most ``--attempts`` times: ``kd_jax.bench.timing``, as
``kd_jax.benchmark``), on one random batch held in memory:

* ``teacher_forward``: resnet32x4 in eval mode under ``torch.no_grad()``;
* ``student_step``: resnet8x4's cross-entropy step (SGD, momentum 0.9, weight decay 5e-4);
* ``distill_step kd``: RepDistiller's ``train_distill`` for ``--distill kd -r 0.1 -a 0.9``
  (teacher under ``no_grad``, 0.1 * CE + 0.9 * KD at T = 4);
* ``distill_step crd``: ``--distill crd -a 0 -b 0.8`` (CE + 0.8 * CRD: linear embeddings of the
  pooled features, the two 50,000 x 128 memory banks, ``--negatives`` 16,384 negatives at
  T = 0.07, momentum 0.5). The negatives' indices come with the batch, as from RepDistiller's
  data loader, so their sampling is not timed (kd_jax samples them inside its step);
* ``distill_step reviewkd``: mdistiller's ``ReviewKD`` (CE + 5 * HCL of the ABF chain after
  warm-up): the student's stages and pooled feature fused from the deepest, against the
  teacher's pre-activation stages and pooled feature; the ABFs train with the student.

The networks and objectives are the test suite's PyTorch transcriptions
(``tests/models/torch_reference.py``, ``tests/losses/torch_reference.py``,
``tests/losses/torch_reference_baselines.py``), which the
conversion and loss tests check kd_jax against. Needs ``pip install -e ".[test]"`` (torch);
run from the repository root. Prints a table, then one JSON object per measurement.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from kd_jax.bench import timing  # noqa: E402
from tests.losses import torch_reference as losses_ref  # noqa: E402
from tests.losses import torch_reference_baselines as baselines_ref  # noqa: E402
from tests.models import torch_reference as models_ref  # noqa: E402

_BATCH = flags.DEFINE_integer("batch", 64, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 3, "Steps per timed window.")
_WINDOWS = flags.DEFINE_integer("windows", 5, "Timed windows.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first.")
_ATTEMPTS = flags.DEFINE_integer("attempts", timing.ATTEMPTS, "Times the windows are measured "
                                 "at most, while they spread more than --max_spread.")
_MAX_SPREAD = flags.DEFINE_float("max_spread", timing.MAX_SPREAD, "Windows' slowest / fastest "
                                 "- 1 above which they are measured again.")
_NEGATIVES = flags.DEFINE_integer("negatives", 16384, "CRD's negatives per example.")
_BANK = flags.DEFINE_integer("bank", 50000, "CRD's memory bank rows (CIFAR-100's train split).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "bfloat16: the networks and losses under torch.autocast('cpu', "
                           "bfloat16) (float32 parameters and optimiser), as AMP trains.")

_WIDTHS = (32, 64, 128, 256)  # The x4 CIFAR ResNets.
_CLASSES = 100


def _steps(batch: int, negatives: int, bank: int, dtype: str = "float32"
           ) -> dict[tuple[str, str], object]:
  torch.manual_seed(0)
  # bfloat16: autocast around every forward computation, as torch's AMP recipe on CPU.
  cast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if dtype == "bfloat16"
          else contextlib.nullcontext)
  x = torch.randn(batch, 3, 32, 32)
  y = torch.randint(0, _CLASSES, (batch,))
  teacher = models_ref.CifarResNet(32, _WIDTHS, _CLASSES).eval()
  student = models_ref.CifarResNet(8, _WIDTHS, _CLASSES).train()
  embed_s, embed_t = nn.Linear(_WIDTHS[-1], 128), nn.Linear(_WIDTHS[-1], 128)
  sgd = lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
  opt = sgd(student.parameters())
  opt_crd = sgd([*student.parameters(), *embed_s.parameters(), *embed_t.parameters()])
  std = losses_ref.crd_memory_bound(128)  # RepDistiller's ContrastMemory initialisation.
  crd = losses_ref.CRD(torch.rand(bank, 128) * 2 * std - std,
                       torch.rand(bank, 128) * 2 * std - std, T=0.07, momentum=0.5)
  index = torch.randint(0, bank, (batch,))
  contrast_idx = torch.randint(0, bank, (batch, negatives + 1))
  contrast_idx[:, 0] = index

  def teacher_forward():
    with torch.no_grad(), cast():
      teacher(x)

  def student_step():
    opt.zero_grad()
    with cast():
      logits, _ = student(x)
      loss = F.cross_entropy(logits, y)
    loss.backward()
    opt.step()

  def kd_step():
    opt.zero_grad()
    with cast():
      with torch.no_grad():
        logits_t, _ = teacher(x)
      logits, _ = student(x)
      loss = 0.1 * F.cross_entropy(logits, y) + 0.9 * losses_ref.kd(logits, logits_t, 4.0)
    loss.backward()
    opt.step()

  def crd_step():
    opt_crd.zero_grad()
    with cast():
      with torch.no_grad():
        _, feats_t = teacher(x)
      logits, feats = student(x)
      v_s = F.normalize(embed_s(feats["pooled"]), dim=1)
      v_t = F.normalize(embed_t(feats_t["pooled"]), dim=1)
      loss = F.cross_entropy(logits, y) + 0.8 * crd(v_s, v_t, index, contrast_idx)
    loss.backward()
    opt_crd.step()

  # mdistiller's ReviewKD for resnet32x4 -> resnet8x4: the student's stages and pooled
  # feature through the ABF chain against the teacher's pre-activation stages and pooled one.
  channels = [*_WIDTHS[1:], _WIDTHS[-1]]
  review = baselines_ref.ReviewKD(shapes=[1, 8, 16, 32], out_shapes=[1, 8, 16, 32],
                                  in_channels=channels, out_channels=channels, weight=5.0,
                                  warmup=20).train()
  opt_review = sgd([*student.parameters(), *review.parameters()])

  def reviewkd_step():
    opt_review.zero_grad()
    with cast():
      with torch.no_grad():
        _, feats_t = teacher(x)
      logits, feats = student(x)
      stages = [None] + [feats[f"stage{k}"] for k in (1, 2, 3)]  # The stem: left out.
      stages_t = [None] + [feats_t[f"preact/stage{k}"] for k in (1, 2, 3)]
      loss = F.cross_entropy(logits, y) + review(stages, feats["pooled"], stages_t,
                                                 feats_t["pooled"], epoch=20)
    loss.backward()
    opt_review.step()

  return {("teacher_forward", "teacher"): teacher_forward, ("student_step", "ce"): student_step,
          ("distill_step", "kd"): kd_step, ("distill_step", "crd"): crd_step,
          ("distill_step", "reviewkd"): reviewkd_step}


def main(argv):
  del argv
  b = _BATCH.value
  common = {"framework": "pytorch", "torch_version": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.machine(), "batch_size": b,
            "dtype": _DTYPE.value, "model": "resnet8x4", "teachers": "teacher=resnet32x4",
            "input_shape": [32, 32, 3], "steps_per_window": _STEPS.value,
            "windows": _WINDOWS.value, "max_spread": _MAX_SPREAD.value}
  print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads, batch {b}, "
        f"{_DTYPE.value}{' (autocast)' if _DTYPE.value == 'bfloat16' else ''}, "
        f"student resnet8x4, teacher resnet32x4, input (32, 32, 3)")
  # PyTorch on CPU runs eagerly: a step has finished when it returns.
  records = timing.eager_table(
      _steps(b, _NEGATIVES.value, _BANK.value, _DTYPE.value), b, common,
      steps_per_window=_STEPS.value, windows=_WINDOWS.value, warmup=_WARMUP.value,
      attempts=_ATTEMPTS.value, max_spread=_MAX_SPREAD.value,
      print_fn=lambda s: print(s, flush=True))
  for rec in records:
    print(json.dumps(rec))


if __name__ == "__main__":
  app.run(main)

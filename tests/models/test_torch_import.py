"""PyTorch -> Flax conversion: independent PyTorch definitions (torch_reference.py) in eval mode
with random weights and non-trivial BN statistics give the same logits and features."""
import numpy as np
import pytest

import torch  # noqa: E402  (the test extra installs it: a broken torch fails, not skips)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from kd_jax import plan
from kd_jax import models  # noqa: E402
from kd_jax.errors import KdJaxError  # noqa: E402
from tests.models import torch_reference as ref  # noqa: E402

CASES = {
    "resnet8x4": (lambda: ref.CifarResNet(8, (32, 64, 128, 256), 100), 32),
    "wrn_16_2": (lambda: ref.WRN(16, 2, 100), 32),
    "vgg8": (lambda: ref.VGG8(100), 32),
    "MobileNetV2": (lambda: ref.MobileHalf(100), 32),
    "resnet18": (lambda: ref.ResNet18(100), 64),
}


def _rel(a, b):
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


@pytest.mark.parametrize("name", sorted(CASES))
def test_converted_model_matches_pytorch_forward(name):
  build, size = CASES[name]
  torch.manual_seed(0)
  net = ref.randomize_bn(build())
  x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    t_logits, t_feats = net(x)
  variables = models.from_torch(net.state_dict(), name, 100, input_shape=(size, size, 3))
  logits, feats = models.create(name, 100).apply(
      variables, jnp.asarray(x.permute(0, 2, 3, 1).numpy()), train=False)
  assert _rel(np.asarray(logits), t_logits.numpy()) < 1e-4
  assert set(feats) == set(t_feats)
  for key, t in t_feats.items():
    want = t.numpy() if t.ndim == 2 else t.permute(0, 2, 3, 1).numpy()
    assert feats[key].shape == want.shape, key
    assert _rel(np.asarray(feats[key]), want) < 1e-4, key


def _pytorch_examples_checkpoint(net) -> dict:
  """As pytorch/examples' ImageNet script saves one (timm's train.py: also 'state_dict'): the
  weights of a DataParallel model under 'state_dict', beside the epoch, accuracy, optimiser."""
  opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
  return {"epoch": 90, "arch": "resnet8", "best_acc1": torch.tensor(70.1),
          "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
          "optimizer": opt.state_dict()}


CHECKPOINT_DICTS = {
    "repdistiller": lambda net: {"model": net.state_dict(), "epoch": 240},
    "pytorch_examples": _pytorch_examples_checkpoint,
    "state_dict": lambda net: net.state_dict(),
}


@pytest.mark.parametrize("layout", sorted(CHECKPOINT_DICTS))
def test_training_checkpoint_dicts_are_unwrapped(layout):
  torch.manual_seed(0)
  net = ref.randomize_bn(ref.CifarResNet(8, (16, 16, 32, 64), 10))
  try:
    v = models.from_torch(CHECKPOINT_DICTS[layout](net), "resnet8", 10)
  except KdJaxError as err:  # E.g. every tensor missing: the checkpoint dict read as weights.
    pytest.fail(f"{layout}: {err}")
  np.testing.assert_array_equal(v["params"]["fc"]["Dense_0"]["bias"], net.fc.bias.detach().numpy())
  np.testing.assert_array_equal(v["batch_stats"]["BatchNorm_0"]["var"], net.bn1.running_var.numpy())
  plain = models.from_torch(net.state_dict(), "resnet8", 10)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(v), jax.tree.leaves(plain)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def test_wrong_shape_names_tensor_and_expected_shape():
  sd = ref.CifarResNet(8, (16, 16, 32, 64), 10).state_dict()
  sd["fc.weight"] = torch.zeros(10, 32)
  with pytest.raises(KdJaxError, match=r"tensor 'fc.weight' has shape \(10, 32\), but resnet8 "
                     r"expects \(10, 64\)"):
    models.from_torch(sd, "resnet8", 10)


def test_missing_tensor_is_named():
  sd = ref.CifarResNet(8, (16, 16, 32, 64), 10).state_dict()
  del sd["layer2.0.bn1.running_var"]
  with pytest.raises(KdJaxError, match=r"tensor 'layer2.0.bn1.running_var' is missing .*"
                     r"expected shape \(32,\)"):
    models.from_torch(sd, "resnet8", 10)


def test_extra_tensors_are_named():
  sd = ref.CifarResNet(8, (16, 16, 32, 64), 10).state_dict()
  sd["head.weight"] = torch.zeros(5, 10)
  with pytest.raises(KdJaxError, match=r"unexpected tensors in the state_dict for resnet8: "
                     r"head.weight"):
    models.from_torch(sd, "resnet8", 10)


class _Evil:
  def __reduce__(self):
    return (print, ("this would run code",))


def test_file_needing_code_execution_is_refused(tmp_path):
  path = tmp_path / "evil.pth"
  torch.save({"model": _Evil()}, path)
  with pytest.raises(KdJaxError, match=r"refusing to load .*evil.pth: it is not a plain "
                     r"weights file"):
    models.load_torch_file(str(path))


def test_convert_command_round_trip_as_a_teacher(tmp_path):
  """convert (a checkpoint as pytorch/examples' ImageNet script writes it) -> the teacher of a
  config -> same digits test accuracy as the PyTorch model."""
  import os
  import subprocess
  import sys

  import ml_collections
  from kd_jax.data import pipelines
  from kd_jax.distill import teachers as teachers_lib
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  torch.manual_seed(3)
  net = ref.randomize_bn(ref.CifarResNet(8, (16, 16, 32, 64), 10))
  torch.save(_pytorch_examples_checkpoint(net), tmp_path / "ckpt.pth")
  proc = subprocess.run([sys.executable, "-m", "kd_jax.convert", "--arch=resnet8",
                         f"--torch={tmp_path / 'ckpt.pth'}", f"--out={tmp_path / 'teacher'}"],
                        cwd=repo, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "10 classes" in proc.stdout, proc.stdout
  assert os.path.isdir(tmp_path / "teacher" / "best" / "0"), (proc.stdout, os.listdir(tmp_path))

  cfg = ml_collections.ConfigDict(dict(
      dtype="float32", teachers={"t": dict(model="resnet8", checkpoint=str(tmp_path / "teacher"))}))
  data = pipelines.create_dataset(ml_collections.ConfigDict(dict(
      name="sklearn_digits", train_split="train", eval_split="test", image_size=32,
      channels=3)), 40)
  (module, variables), = teachers_lib.load({n: plan.plan_teacher(n, t) for n, t in cfg.teachers.items()},
                                    data.input_shape).values()
  ours = theirs = total = ties = 0
  for batch in data.eval_batches():
    logits, _ = module.apply(variables, jnp.asarray(batch["image"]), train=False)
    with torch.no_grad():
      t_logits, _ = net(torch.from_numpy(batch["image"]).permute(0, 3, 1, 2))
    mask = batch["mask"] > 0
    pred, t_pred = np.asarray(logits).argmax(-1), t_logits.numpy().argmax(-1)
    # Where PyTorch's two best logits are within rounding of each other, either may win on
    # another CPU: those examples are not compared.
    top2 = np.sort(t_logits.numpy(), -1)[:, -2:]
    clear = mask & (top2[:, 1] - top2[:, 0] > 1e-4 * np.maximum(1.0, np.abs(top2[:, 1])))
    np.testing.assert_array_equal(pred[clear], t_pred[clear])
    ties += int((mask & ~clear).sum())
    ours += int((pred[mask] == batch["label"][mask]).sum())
    theirs += int((t_pred[mask] == batch["label"][mask]).sum())
    total += int(mask.sum())
  assert total == 360 and abs(ours - theirs) <= ties

"""Published tables as jobs: RepDistiller's CIFAR-100 tables (configs/cifar100/table.py) and
CFL's CUB+Dogs numbers, the job's table.md / table.json beside the measurements, and the
CIFAR-100 table job end to end on mock data."""
import json
import re

import pytest
import tensorflow_datasets as tfds

from kd_jax import config as config_lib
from kd_jax import job, recipes
from kd_jax.errors import KdJaxError
from kd_jax.recipes import published
from tests.recipes.helpers import load_config


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compilation):
  """XLA optimisations off for this module (conftest.fast_compilation): 2 steps a run."""


def test_the_transcribed_tables_hold_13_pairs_and_their_cells():
  table = published.REPDISTILLER
  assert len(table) == 13 and set(table) == {f"{t}-{s}" for t, s in recipes.PAIRS}
  assert table["resnet32x4-resnet8x4"] == {
      "teacher": 79.42, "student": 72.50, "kd": 73.33, "fitnet": 73.50, "at": 73.44, "sp": 72.94,
      "cc": 72.97, "vid": 73.09, "rkd": 71.90, "pkt": 73.64, "ab": 73.17, "ft": 72.86,
      "fsp": 72.62, "nst": 73.30, "crd": 75.51, "dkd": 76.32, "dist": 76.31, "wttm": 76.06,
      "kd_ls": 76.62, "dkd_ls": 77.01, "ctkd": 73.39, "ctkd_ls": 76.67, "mlkd": 77.08,
      "mlkd_ls": 78.28}
  assert table["wrn_40_2-ShuffleV1"]["crd"] == 76.05 and "fsp" not in table["vgg13-MobileNetV2"]
  assert sum("dkd" in cells for cells in table.values()) == 11


def test_the_argument_chooses_pairs_methods_and_seeds():
  assert recipes.parse_table_arg("resnet32x4-resnet8x4,kd+crd") == (
      ["resnet32x4-resnet8x4"], ["kd", "crd"], 3)
  pairs, methods, seeds = recipes.parse_table_arg("")
  assert len(pairs) == 13 and methods == list(recipes.TABLE_METHODS) and seeds == 3
  assert recipes.parse_table_arg("all,student,1")[1:] == (["student"], 1)


@pytest.mark.parametrize("arg,message", [
    ("resnet8-resnet20,kd", r"unknown pair\(s\) resnet8-resnet20; the tables' pairs: "),
    ("all,kd+hint", r"unknown method\(s\) hint; valid: student, kd,"),
    ("all,kd,0", r"seeds must be an integer >= 1, got '0'"),
])
def test_a_bad_argument_is_one_line(arg, message):
  with pytest.raises(KdJaxError, match=r"^table argument: " + message):
    recipes.parse_table_arg(arg)


def test_the_job_trains_each_teacher_and_student_once_and_each_cell_per_seed():
  c = load_config("configs/cifar100/table.py", "wrn_40_2-wrn_16_2+wrn_40_2-wrn_40_1,kd+fsp+student,2")
  runs = config_lib.validated_runs(c)
  assert sorted(runs) == sorted(
      ["teacher_wrn_40_2"] + [f"{p}-{m}_seed{s}" for p in ("wrn_40_2-wrn_16_2", "wrn_40_2-wrn_40_1")
                              for m in ("kd",) for s in (0, 1)]
      + ["wrn_40_2-wrn_16_2-fsp_seed0", "wrn_40_2-wrn_16_2-fsp_seed1"]
      + [f"student_{m}_seed{s}" for m in ("wrn_16_2", "wrn_40_1") for s in (0, 1)])
  kd = runs["wrn_40_2-wrn_40_1-kd_seed1"]
  assert kd.teachers.teacher.run == "teacher_wrn_40_2" and kd.seed == 1 and kd.num_epochs == 240
  assert {k: v["weight"] for k, v in kd.objectives.items()} == {"ce": 0.1, "kd": 0.9}
  rows = {(t, r): (g, v) for t, r, g, v in c.published}
  assert rows[("wrn_40_2-wrn_40_1", "teacher")] == ("teacher_wrn_40_2", 75.61)
  assert rows[("wrn_40_2-wrn_40_1", "student")] == ("student_wrn_40_1", 71.98)
  # RepDistiller printed 0.00 for FSP here (unequal channels): shown, not run.
  assert rows[("wrn_40_2-wrn_40_1", "fsp")] == ("wrn_40_2-wrn_40_1-fsp", 0.0)


def test_dkd_cells_take_mdistillers_beta_per_pair():
  c = load_config("configs/cifar100/table.py", "resnet56-resnet20+resnet32x4-resnet8x4,dkd,1")
  runs = config_lib.validated_runs(c)
  assert runs["resnet56-resnet20-dkd_seed0"].objectives.dkd.beta == 2.0
  assert runs["resnet32x4-resnet8x4-dkd_seed0"].objectives.dkd.beta == 8.0


def test_the_baselines_are_rows_with_their_authors_numbers_and_settings():
  c = load_config("configs/cifar100/table.py", "resnet32x4-resnet8x4+vgg13-vgg8,dist+kd_ls+"
                  "dkd_ls+ctkd+ctkd_ls+nkd+wttm+reviewkd,1")
  rows = {(t, r): v for t, r, _, v in c.published}
  assert {r: rows[("resnet32x4-resnet8x4", r)] for r in
          ("dist", "kd_ls", "dkd_ls", "ctkd", "ctkd_ls", "nkd", "wttm", "reviewkd")} == {
      "dist": 76.31, "kd_ls": 76.62, "dkd_ls": 77.01, "ctkd": 73.39, "ctkd_ls": 76.67,
      "nkd": -1.0, "wttm": 76.06, "reviewkd": -1.0}
  runs = config_lib.validated_runs(c)
  assert runs["vgg13-vgg8-kd_ls_seed0"].objectives.kd.temperature == 3.0
  assert runs["vgg13-vgg8-dkd_ls_seed0"].objectives.dkd.beta == 30.0
  assert runs["resnet32x4-resnet8x4-ctkd_seed0"].objectives.to_dict() == {
      "ce": {"weight": 0.1}, "ctkd": {"weight": 0.9}}
  assert runs["vgg13-vgg8-reviewkd_seed0"].objectives.to_dict() == {
      "ce": {"weight": 1.0}, "reviewkd": {"weight": 5.0}}


def test_mlkd_rows_have_the_logit_standardization_readmes_numbers_and_the_authors_solver():
  c = load_config("configs/cifar100/table.py", "resnet32x4-resnet8x4+vgg13-vgg8,mlkd+mlkd_ls,1")
  rows = {(t, r): v for t, r, _, v in c.published}
  assert (rows[("resnet32x4-resnet8x4", "mlkd")], rows[("resnet32x4-resnet8x4", "mlkd_ls")],
          rows[("vgg13-vgg8", "mlkd_ls")]) == (77.08, 78.28, 75.22)
  runs = config_lib.validated_runs(c)
  mlkd, mlkd_ls = runs["resnet32x4-resnet8x4-mlkd_seed0"], runs["vgg13-vgg8-mlkd_ls_seed0"]
  assert (mlkd.num_epochs, mlkd.optimizer.lr) == (240, 0.025)
  assert (mlkd_ls.num_epochs, mlkd_ls.optimizer.lr) == (480, 0.01)
  assert mlkd_ls.objectives.mlkd.to_dict() == {"weight": 6.0, "temperature": 2.0,
                                               "logit_stand": True}


def test_cub_dogs_job_carries_cfls_readme_numbers():
  c = load_config("configs/amalgamation/cub_dogs.py")
  assert [r[1:] for r in c.published] == [
      ("kd", "kd", 76.84), ("cfl", "cfl", 77.21),
      ("resnet18 on CUB-200", "teacher_birds", 74.11),
      ("resnet34 on Stanford Dogs", "teacher_dogs", 86.63)]
  assert load_config("configs/amalgamation/cub_dogs.py", "resnet50").published[1][3] == 79.97


def test_the_table_puts_each_measurement_beside_its_published_number():
  results = {"t": {"test_accuracy": 0.79, "best_test_accuracy": 0.80},
             "a_seed0": {"test_accuracy": 0.7}}
  groups = {"a": {"runs": 2, "mean": 71.0, "std": 1.5,
                  "best": {"mean": 72.25, "std": 0.5, "accuracies": [71.9, 72.6]}}}
  rows = job.published_table((("p", "teacher", "t", 80.0), ("p", "kd", "a", 73.5),
                              ("p", "crd_kd", "b", -1.0)), results, groups)
  assert rows[0] == dict(table="p", row="teacher", group="t", published=80.0,
                         measured=pytest.approx(79.0), std=0.0, best=pytest.approx(80.0),
                         best_std=0.0, seeds=1, difference=pytest.approx(-1.0))
  assert rows[1]["difference"] == pytest.approx(-2.5) and rows[1]["seeds"] == 2
  assert rows[2]["published"] is None and rows[2]["measured"] is None
  md = job.format_published(rows, "src").splitlines()
  assert md[0] == "Published: src"
  assert md[2] == ("| table | row | published % | measured % (mean ± std) | "
                   "best epoch % (mean ± std) | seeds | measured − published |")
  assert md[5] == "| p | kd | 73.50 | 71.00 ± 1.50 | 72.25 ± 0.50 | 2 | -2.50 |"
  assert md[6] == "| p | crd_kd | - | - | - | 0 | - |"


@pytest.mark.slow
def test_the_cifar100_table_job_runs_end_to_end_on_mock_data(tmp_path, capsys):
  """2 pairs x 3 methods (KD, the student alone, MLKD with its own solver and its strong view)
  x 2 seeds, 2 steps per run (every run's model made resnet8 and its epochs 1:
  the job and its table are what is tested, not the architectures)."""
  c = load_config("configs/cifar100/table.py",
                  "wrn_40_2-wrn_16_2+wrn_40_2-wrn_40_1,kd+student+mlkd,2")
  c.batch_size, c.num_epochs, c.log_every_steps = 8, 1, 1
  c.data.num_train_examples, c.data.num_eval_examples = 16, 8
  for run in c.runs.values():
    run["model"] = "resnet8"
    run["num_epochs"] = 1  # MLKD's runs set their authors' 240.
    for t in run.get("teachers", {}).values():
      t["model"] = "resnet8"
  with tfds.testing.mock_data(num_examples=16):
    summary = job.run(c, str(tmp_path))
  out = capsys.readouterr().out
  assert re.search(r"^budget: 13 runs that train, 13 x 1 epochs = 13 epochs", out, re.M), out[:500]
  assert all(r["steps"] == 2 for r in summary["runs"].values())
  table = json.loads((tmp_path / "table.json").read_text())
  assert table["source"].startswith("RepDistiller README")
  by_cell = {(r["table"], r["row"]): r for r in table["rows"]}
  cell = by_cell[("wrn_40_2-wrn_16_2", "kd")]
  assert cell["published"] == 74.92 and cell["seeds"] == 2 and 0 <= cell["measured"] <= 100
  assert by_cell[("wrn_40_2-wrn_40_1", "teacher")]["seeds"] == 1
  md = (tmp_path / "table.md").read_text().splitlines()
  assert md[2].startswith("| table | row | published % | measured % (mean ± std) | best epoch")
  assert len(md) == 4 + 8  # 2 pairs x (teacher, kd, student, mlkd)
  assert "| wrn_40_2-wrn_40_1 | mlkd | 75.35 | " in "\n".join(md)
  # Each run's best evaluation beside its last (one epoch here: the same evaluation).
  mlkd = by_cell[("wrn_40_2-wrn_16_2", "mlkd")]
  assert mlkd["published"] == 76.63 and mlkd["best"] == pytest.approx(mlkd["measured"])
  run = summary["runs"]["wrn_40_2-wrn_16_2-mlkd_seed0"]
  assert run["best_test_accuracy"] == run["test_accuracy"] and run["best_epoch"] == 1

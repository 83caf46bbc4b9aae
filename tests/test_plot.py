"""kd_jax.plot: figures from a run's TensorBoard events and results.json."""
import glob
import json
import os
import sys
import time

import matplotlib
import numpy as np
import pytest
from clu import metric_writers
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kd_jax import plot  # noqa: E402
from tests import forkserver
from tests.builders import make_tiny_config  # noqa: E402


def _write_scalars(run_dir, points):
  writer = metric_writers.SummaryWriter(run_dir)
  for step, scalars in points:
    writer.write_scalars(step, scalars)
  writer.close()


def _results(accuracy, **extra):
  return dict(run="r", model="resnet8", objectives={"ce": 1.0}, test_accuracy=accuracy,
              eval=dict(accuracy=accuracy), **extra)


def test_read_scalars_returns_every_step_in_order(tmp_path):
  _write_scalars(str(tmp_path), [(2, {"train/loss": 1.5}), (1, {"train/loss": 2.0}),
                                 (2, {"eval/accuracy": 0.25})])
  scalars = plot.read_scalars(str(tmp_path))
  steps, values = scalars["train/loss"]
  np.testing.assert_array_equal(steps, [1, 2])
  np.testing.assert_allclose(values, [2.0, 1.5])
  np.testing.assert_allclose(scalars["eval/accuracy"][1], [0.25])


def test_a_resumed_run_keeps_the_last_value_of_a_step(tmp_path):
  _write_scalars(str(tmp_path), [(1, {"train/loss": 3.0}), (2, {"train/loss": 2.0})])
  _write_scalars(str(tmp_path), [(2, {"train/loss": 1.0}), (3, {"train/loss": 0.5})])
  steps, values = plot.read_scalars(str(tmp_path))["train/loss"]
  np.testing.assert_array_equal(steps, [1, 2, 3])
  np.testing.assert_allclose(values, [3.0, 1.0, 0.5])


def test_the_value_written_last_wins_when_file_counters_cross_from_9_to_10(tmp_path):
  """TensorFlow names event files ``...<pid>.<counter>.v2``: counter 10 sorts before 9."""
  _write_scalars(str(tmp_path / "first"), [(2, {"train/loss": 2.0})])
  time.sleep(0.05)
  _write_scalars(str(tmp_path / "second"), [(2, {"train/loss": 0.5}), (3, {"train/loss": 0.25})])
  for folder, counter in (("first", 9), ("second", 10)):
    (path,) = glob.glob(str(tmp_path / folder / "events.out.tfevents.*"))
    os.rename(path, tmp_path / f"events.out.tfevents.1700000000.host.1.{counter}.v2")
  steps, values = plot.read_scalars(str(tmp_path))["train/loss"]
  np.testing.assert_array_equal(steps, [2, 3])
  np.testing.assert_allclose(values, [0.5, 0.25])


def test_load_reads_a_job_in_the_order_of_its_results(tmp_path):
  for name, acc in (("teacher", 0.9), ("student", 0.8)):
    _write_scalars(str(tmp_path / name), [(1, {"train/loss": 1.0})])
  with open(tmp_path / "results.json", "w") as f:
    json.dump({"runs": {"teacher": _results(0.9), "student": _results(0.8)}}, f)
  runs = plot.load(str(tmp_path))
  assert [r.name for r in runs] == ["teacher", "student"]
  assert runs[1].results["test_accuracy"] == 0.8
  assert "train/loss" in runs[0].scalars


def test_load_reads_a_single_run(tmp_path):
  _write_scalars(str(tmp_path), [(1, {"train/loss": 1.0})])
  runs = plot.load(str(tmp_path))
  assert len(runs) == 1 and runs[0].scalars["train/loss"][1][0] == 1.0


def test_load_refuses_a_folder_without_runs(tmp_path):
  with pytest.raises(FileNotFoundError, match="holds no kd_jax run"):
    plot.load(str(tmp_path))


def test_seed_groups_are_one_bar_with_mean_and_sample_std():
  runs = [plot.Run(f"kd_seed{i}", _results(a), {}) for i, a in enumerate((0.90, 0.92, 0.94))]
  runs.append(plot.Run("scratch", _results(0.5), {}))
  _, ax = plt.subplots()
  plot.final_accuracy(runs, ax)
  heights = [p.get_height() for p in ax.patches]
  np.testing.assert_allclose(heights, [92.0, 50.0])
  assert [t.get_text() for t in ax.get_xticklabels()] == ["kd (x3)", "scratch"]
  # The error bar of the group spans mean +- sample std (2 points).
  bars = next(c for c in ax.containers if hasattr(c, "errorbar") and c.errorbar)
  segments = bars.errorbar.lines[2][0].get_segments()
  np.testing.assert_allclose([segments[0][0][1], segments[0][1][1]], [90.0, 94.0])
  plt.close("all")


def test_task_and_downstream_bars_come_from_results():
  runs = [plot.Run("student", _results(0.8, downstream={"digits_t": {
      "linear_probe": {"top1": 0.75}, "finetune": {"top1": 0.95}}}), {}),
          plot.Run("other", _results(0.7), {})]
  runs[0].results["eval"].update(accuracy_low=0.5, accuracy_high=1.0)
  assert plot.available(runs) == ["accuracy", "tasks", "downstream"]
  _, (a, b) = plt.subplots(1, 2)
  plot.task_accuracy(runs, a)
  plot.downstream(runs, b)
  # Tasks sorted by name: high, low; only the run that has them.
  np.testing.assert_allclose([p.get_height() for p in a.patches], [100.0, 50.0])
  np.testing.assert_allclose([p.get_height() for p in b.patches], [75.0, 95.0])
  assert [t.get_text() for t in b.get_legend().get_texts()] == ["linear probe", "fine-tune"]
  plt.close("all")


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory):
  """A real job: a resnet8 teacher (CE) and a KD student, 2 epochs each."""
  from kd_jax import job
  workdir = str(tmp_path_factory.mktemp("job"))
  cfg = make_tiny_config()
  cfg.runs = {"teacher": {}, "kd_student": dict(
      teachers={"teacher": dict(model="resnet8", run="teacher")},
      objectives={"ce": dict(weight=0.1), "kd": dict(weight=0.9, teacher="teacher")})}
  job.run(cfg, workdir)
  return workdir


def _assert_real_png(path, min_size=(600, 300)):
  assert os.path.getsize(path) > 10_000, path
  with Image.open(path) as image:
    assert image.format == "PNG"
    assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], image.size
    pixels = np.asarray(image.convert("L"), dtype=np.float32)
  assert pixels.std() > 5  # Not a blank canvas.
  assert (pixels < 128).mean() > 0.005  # Lines, bars and text were drawn.


@pytest.mark.slow
def test_the_command_writes_one_png_with_every_panel(finished_job, tmp_path):
  out = str(tmp_path / "report.png")
  proc = forkserver.run([sys.executable, "-m", "kd_jax.plot", f"--workdir={finished_job}",
                         f"--out={out}"], capture_output=True, text=True, check=False,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == f"kd_jax: wrote {out}"
  _assert_real_png(out, (1000, 600))


@pytest.mark.slow
def test_the_command_writes_one_png_per_figure_into_a_folder(finished_job, tmp_path):
  written = plot.report(finished_job, str(tmp_path / "figures"))
  assert [os.path.basename(p) for p in written] == ["curves.png", "accuracy.png"]
  for path in written:
    _assert_real_png(path)
  runs = plot.load(finished_job)
  assert [r.name for r in runs] == ["teacher", "kd_student"]
  assert {"train/loss", "eval/accuracy"} <= set(runs[1].scalars)


def test_the_command_says_what_is_missing_in_one_line(tmp_path):
  proc = forkserver.run([sys.executable, "-m", "kd_jax.plot", f"--workdir={tmp_path}",
                         f"--out={tmp_path}/x.png"], capture_output=True, text=True, check=False,
                        timeout=300)
  assert proc.returncode == 1
  assert proc.stderr.strip() == f"kd_jax: error: {tmp_path} holds no kd_jax run (no results.json, no events)"


def test_a_run_and_its_evaluation_only_seed_runs_share_a_bar_counted_by_accuracies():
  # Consolidation jobs: the teacher run "expert" and "expert_seed0" (downstream only).
  runs = [plot.Run("expert", _results(0.75), {}),
          plot.Run("expert_seed0", _results(None, downstream={"t": {"linear_probe": {"top1": 0.5}}}), {})]
  _, (a, b) = plt.subplots(1, 2)
  plot.final_accuracy(runs, a)
  plot.downstream(runs, b)
  assert [t.get_text() for t in a.get_xticklabels()] == ["expert"]
  np.testing.assert_allclose([p.get_height() for p in a.patches], [75.0])
  assert b.get_title() == "downstream transfer (linear probe)"
  plt.close("all")


def test_a_table_jobs_cells_are_drawn_against_the_published_numbers(tmp_path):
  """table.json (kd_jax.job.published_table) -> published.png: one point per cell with
  both numbers (the cell without a measurement is left out)."""
  rows = [dict(table="p", row="kd", group="p-kd", published=73.33, measured=72.9, std=0.3,
               seeds=3, difference=-0.43),
          dict(table="p", row="crd", group="p-crd", published=75.51, measured=74.0, std=0.5,
               seeds=3, difference=-1.51),
          dict(table="p", row="fsp", group="p-fsp", published=72.62, measured=None, std=None,
               seeds=0, difference=None)]
  (tmp_path / "table.json").write_text(json.dumps({"source": "s", "rows": rows}))
  (tmp_path / "results.json").write_text(json.dumps(
      {"runs": {"p-kd_seed0": _results(0.729)}}))
  written = plot.report(str(tmp_path), str(tmp_path / "figures"))
  assert [os.path.basename(p) for p in written] == ["accuracy.png", "published.png"]
  _assert_real_png(written[1])
  fig, ax = plt.subplots()
  plot.published(plot.read_table(str(tmp_path)), ax)
  assert ax.get_title() == "measured vs published (2 cells)"
  plt.close(fig)

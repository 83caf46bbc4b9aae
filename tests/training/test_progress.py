"""The progress line: one live line on a terminal, redrawn in place below the metric lines;
plain lines in a file or CI log."""
import io
import sys

from clu import metric_writers

from kd_jax.training import metrics


def test_a_live_line_stays_below_the_lines_printed_above_it():
  out = io.StringIO()
  live = metrics.LiveStdout(out)
  live.show("1/10")
  print("step 1: loss=2", file=live)
  live.show("2/10")
  live.finish()
  assert out.getvalue() == "1/10\r\x1b[Kstep 1: loss=2\n1/10\r\x1b[K2/10\n"


def _progress(live):
  return metrics.Progress(total_steps=660, steps_per_epoch=22, batch_size=64,
                          writer=metric_writers.MultiWriter([]), run_name="teacher",
                          first_step=0, every_steps=22, live=live)


def test_in_a_log_file_each_report_is_one_plain_line(monkeypatch):
  out = io.StringIO()
  monkeypatch.setattr(sys, "stdout", out)
  progress = _progress(live=None)  # A StringIO is no terminal.
  for step in range(1, 45):
    progress.tick(step)
    if step % 22 == 0:
      progress(step, 0.5)
  progress.close()
  lines = out.getvalue().split("\n")
  assert lines[-1] == "" and len(lines) == 3 and "\r" not in out.getvalue()
  assert lines[0].startswith("[teacher] 22/660 epoch 2/30 | ") and lines[0].endswith("| loss 0.5000")
  assert lines[1].startswith("[teacher] 44/660 epoch 3/30 | ")


def test_on_a_terminal_the_line_is_redrawn_in_place_and_ended_with_the_run(monkeypatch):
  out = io.StringIO()
  monkeypatch.setattr(sys, "stdout", out)
  with _progress(live=True) as progress:
    assert isinstance(sys.stdout, metrics.LiveStdout)
    progress(22, 0.5)
    print("[teacher] step 22: eval/accuracy=0.9")
    progress(44, 0.25)
  assert sys.stdout is out
  text = out.getvalue()
  assert text.count("\n") == 2 and text.endswith("\n")  # The eval line and the run's end.
  assert text.split("\r\x1b[K")[-1].startswith("[teacher] 44/660 epoch 3/30 | ")
  assert "[teacher] step 22: eval/accuracy=0.9\n" in text

"""Entrypoint: how fast a config trains. ``python -m kd_jax.benchmark --config=<config>``.

For the config's student, teachers and objectives it measures, after warm-up, on batches
already on the device:

* ``teacher_forward``: every teacher the objectives read, once, in inference mode;
* ``student_step``: the student's supervised train step (cross-entropy alone);
* ``distill_step``: the config's train step (teachers + student + every objective);
* ``cached_step`` (``--teacher_cache``): that step with the teachers' outputs read from the
  batch, as with ``config.teacher_cache``;

and then ``pipeline``: the distillation step fed by the real input pipeline (``config.data``)
with device prefetch, and ``pipeline_only``: the input pipeline alone (``--only_pipeline``:
that alone, e.g. per core under ``taskset -c 0``), with the host bytes per image. Each is timed in
``--windows`` windows of ``--steps`` steps (device work waited for at each window's end);
images/s are reported as the median window with the slowest and fastest. Windows that
spread more than ``--max_spread`` (slowest / fastest - 1; a busy host) are measured again, at
most ``--attempts`` times in all; the steadiest attempt is reported, with its spread, and
measurements still above it are named as noisy at the end. Also: compile
time, and peak memory (the device's allocator where it reports one (GPU, TPU); else XLA's
memory analysis of the compiled step: arguments + outputs + temporaries - donated).

``--seeds=N``: also ``seeds_step``, each method's step of N seeds side by side
(``config.seeds``) with shared and with independent batches: images/s per seed, and
``gain`` = N x distill_step / seeds_step (time): what one program of N seeds saves over N
runs of one seed (``kd_jax/training/seeds.py``).

``overhead = distill_step / (teacher_forward + student_step)`` (time per step; the teacher
term only when the step runs one): what distillation costs beyond running the two networks.
The networks are timed again after the methods and their mean taken (a shared host's speed
drifts over minutes; ``--rounds=N`` times the networks and every method's step again in N
rounds in turn and takes the medians, so that the methods compared were timed in the same
rounds, one after the other); ``flops``, the same ratio in XLA's count of FLOPs, says how much
arithmetic the method adds (adapters, another view), and ``per flop`` the overhead beyond it.
With ``--teacher_cache`` also ``distill_step / (teacher_forward + cached_step)``: the cached
step is the student step plus the objectives' own arithmetic, so this is what the step costs
beyond the networks and the objectives (``overhead_beyond_objectives``).

  python -m kd_jax.benchmark --config=configs/cifar100/kd.py
  python -m kd_jax.benchmark --config=configs/cifar100/kd.py --methods=all   # 15 recipes
  python -m kd_jax.benchmark --config=configs/cifar100/crd.py --batch=256 --json_out=crd.jsonl

Teachers are randomly initialised (speed does not depend on the weights); the data set need
not be prepared except for the pipeline measurements (``--pipeline=false`` skips them,
``--mock_data`` runs them on ``tfds.testing.mock_data``). The table goes to stdout, then one
JSON object per measurement per line (also written to ``--json_out``).
"""
from __future__ import annotations

import sys

from kd_jax import runtime

if __name__ == "__main__":  # Before anything allocates: malloc on huge pages.
  runtime.restart_with_huge_pages()
runtime.quiet_library_logs()  # Before TensorFlow is imported.

from absl import app, flags  # noqa: E402

from kd_jax.cli import define_config, parse_flags, start  # noqa: E402
from kd_jax.bench import timing  # noqa: E402  (plain Python)

_CONFIG = define_config(None, "Config file.")
_STEPS = flags.DEFINE_integer("steps", 5, "Steps per timed window.")
_WINDOWS = flags.DEFINE_integer("windows", 5, "Timed windows (the median is reported).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
_ATTEMPTS = flags.DEFINE_integer("attempts", timing.ATTEMPTS, "Times the windows are measured at most, "
                                 "while they spread more than --max_spread.")
_MAX_SPREAD = flags.DEFINE_float("max_spread", timing.MAX_SPREAD, "Windows' slowest / fastest - 1 above "
                                 "which they are measured again.")
_BATCH = flags.DEFINE_integer("batch", 0, "Global batch size (0: config.batch_size).")
_METHODS = flags.DEFINE_string(
    "methods", "", "'': the config's objectives; 'all': every recipe in kd_jax.recipes.METHODS; "
    "or a comma-separated list of them (teacher and student from the config).")
_PIPELINE = flags.DEFINE_bool("pipeline", True, "Also measure the real input pipeline.")
_MOCK = flags.DEFINE_bool("mock_data", False, "Pipeline measurements on tfds.testing.mock_data.")
_ONLY_PIPELINE = flags.DEFINE_bool("only_pipeline", False, "Measure the input pipeline alone "
                                   "(pipeline_only) and nothing else: no network is compiled.")
_CACHE = flags.DEFINE_bool("teacher_cache", False, "Also time each distillation step with the "
                           "teachers' outputs read from the batch (config.teacher_cache).")
_SEEDS = flags.DEFINE_integer("seeds", 0, "N > 1: also time each method's step of N seeds side "
                              "by side (config.seeds), shared and independent batches: "
                              "images/s per seed and the gain over N runs of one seed.")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "N > 1: after the methods, time the networks and "
                               "every method's step again in N rounds in turn (N timings of "
                               "each step): overheads from the medians, for a host whose speed "
                               "drifts.")
_JSON_OUT = flags.DEFINE_string("json_out", "", "Also write the JSON lines to this file.")


def main(argv):
  config = start(argv, _CONFIG, "--config is required, e.g. --config=configs/cifar100/kd.py")
  from kd_jax.errors import KdJaxError
  from kd_jax.bench import benchmarking
  try:
    records = benchmarking.run(
        config, steps=_STEPS.value, windows=_WINDOWS.value, warmup=_WARMUP.value,
        batch_size=_BATCH.value or None, methods=_METHODS.value, pipeline=_PIPELINE.value,
        mock_data=_MOCK.value, teacher_cache=_CACHE.value, only_pipeline=_ONLY_PIPELINE.value,
        attempts=_ATTEMPTS.value, seeds=_SEEDS.value, rounds=_ROUNDS.value,
        max_spread=_MAX_SPREAD.value, print_fn=lambda s: print(s, flush=True))
  except KdJaxError as err:
    sys.exit(f"kd_jax: error: {err}")
  lines = [benchmarking.json_line(r) for r in records]
  print("\n".join(lines), flush=True)
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

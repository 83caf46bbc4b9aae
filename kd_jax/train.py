"""Entrypoint: ``python -m kd_jax.train --config=configs/<name>.py --workdir=<dir>``.

``--config.<field>=<value>`` overrides any field. Without ``--config`` it runs
configs/default.py (the main job on the embedded digits data). In a job of several runs,
``--config.<field>`` reaches every run that does not set that field itself and
``--config.runs.<run>.<field>`` one run; an override that no run reads is refused. The whole
job is planned and checked (``kd_jax.plan``) before its first run trains.
"""
from __future__ import annotations

import os
import sys

from kd_jax import runtime

if __name__ == "__main__":  # Before anything allocates: malloc on huge pages.
  runtime.restart_with_huge_pages()
runtime.quiet_library_logs()  # Before TensorFlow is imported.

from absl import app, flags  # noqa: E402

from kd_jax.cli import define_config, local_workdir, overrides, parse_flags, start  # noqa: E402

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "configs", "default.py")
_CONFIG = define_config(_DEFAULT_CONFIG if os.path.exists(_DEFAULT_CONFIG) else None,
                        "Config file (get_config() returning a ConfigDict). In a job of "
                        "several runs, --config.<field> reaches every run that does not set "
                        "the field itself, --config.runs.<run>.<field> one run; an override "
                        "that no run reads is refused.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/kd_jax", "Where checkpoints, TensorBoard "
                               "events and results.json go.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the job's plan (runs, data, teachers, "
                             "objectives with every hyperparameter, steps), then an estimated "
                             "time (distinct steps measured for a few seconds, the rest from "
                             "XLA's cost analysis) and exit: nothing is trained or written to "
                             "the workdir.")


def main(argv):
  config = start(argv, _CONFIG)
  from kd_jax.errors import KdJaxError, Preempted
  from kd_jax import job
  from kd_jax.training import sharding
  try:
    sharding.maybe_initialize_distributed()
    workdir = local_workdir(_WORKDIR.value)
    if _DRY_RUN.value:
      from kd_jax import dry_run
      dry_run.describe(config, workdir, print_fn=lambda s: print(s, flush=True),
                       overrides=overrides())
      return
    job.run(config, workdir, overrides())
  except Preempted as err:  # SIGTERM: the checkpoint is written; the same command resumes.
    print(f"kd_jax: {err}", flush=True)
    sys.exit(0)
  except KdJaxError as err:
    sys.exit(f"kd_jax: error: {err}")


def run_main():
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run_main()

"""Entrypoint: ``python -m kd_jax.evaluate --workdir=<trained run> --config=<downstream config>``.

Runs the downstream protocols of ``config.downstream`` (linear probe on frozen pooled
features, and fine-tuning) on the backbone trained in ``--workdir`` (any kd_jax run: a
student, a teacher, a converted PyTorch model), on the model of another workdir with
``--config.downstream.backbone=<workdir>``, or on a random ``config.model`` with
``--config.downstream.backbone=random`` (the from-scratch baseline). Results go to
``<workdir>/downstream/<data set>/``: results.json, TensorBoard events, the fine-tuning run.
A workdir without a checkpoint (before the data set is prepared), or a backbone that cannot
take the downstream images, is refused in one line before anything is evaluated.
"""
from __future__ import annotations

import sys

from kd_jax import runtime

if __name__ == "__main__":  # Before anything allocates: malloc on huge pages.
  runtime.restart_with_huge_pages()
runtime.quiet_library_logs()  # Before TensorFlow is imported.

from absl import app, flags  # noqa: E402

from kd_jax.cli import define_config, local_workdir, parse_flags, start  # noqa: E402

_CONFIG = define_config(None, "Config file whose downstream group says what to evaluate on.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The workdir of the trained run to evaluate.")


def main(argv):
  config = start(argv, _CONFIG, "--config=<config file> is required")
  from kd_jax import plan
  from kd_jax.errors import KdJaxError, Preempted
  from kd_jax.evaluation import downstream
  try:
    if not _WORKDIR.value:
      raise KdJaxError("--workdir=<the trained run's workdir> is required")
    workdir = local_workdir(_WORKDIR.value)
    plan.make_downstream(config, workdir)  # Everything checked before anything runs.
    backbone = config.downstream.backbone
    downstream.evaluate(config, workdir, backbone_dir=None if backbone in ("", "random")
                        else backbone)
  except Preempted as err:  # SIGTERM: the checkpoint is written; the same command resumes.
    print(f"kd_jax: {err}", flush=True)
    sys.exit(0)
  except KdJaxError as err:
    sys.exit(f"kd_jax: error: {err}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

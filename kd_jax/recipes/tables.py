"""Published tables as jobs: every run a table needs, and the published numbers the job
compares its measurements with (``config.published``; the job writes ``table.md`` and
``table.json``, ``python -m kd_jax.plot`` draws them).

``imagenet_table``: the ImageNet ResNet-34 -> ResNet-18 row of the baselines' papers, each
method with its authors' recipe (``baselines.IMAGENET``), the teacher read from its checkpoint.

``cifar100_table``: RepDistiller's two CIFAR-100 tables (13 pairs) and mdistiller's DKD,
each teacher trained once (run ``teacher_<model>``), each student baseline once per seed
(``student_<model>_seed<k>``), each (pair, method) once per seed
(``<teacher>-<student>-<method>_seed<k>``). (CFL's README numbers are in
``configs/amalgamation/cub_dogs.py``'s job itself: ``amalgamation.cub_dogs_amalgamation``.)
"""
from __future__ import annotations

from typing import Sequence

import ml_collections

from kd_jax.errors import KdJaxError
from kd_jax.recipes import baselines, published
from kd_jax.recipes.repdistiller import (PAIRS, cifar100_teacher, learning_rate,
                                         method_objectives)

# The rows of the tables: the student trained alone, then each method (RepDistiller's, then
# the logit baselines of ``baselines``).
TABLE_METHODS = ("student", "kd", "fitnet", "at", "sp", "cc", "vid", "rkd", "pkt", "ab", "ft",
                 "fsp", "nst", "crd", "crd_kd", "dkd", "dist", "kd_ls", "dkd_ls", "ctkd",
                 "ctkd_ls", "nkd", "wttm", "mlkd", "mlkd_ls", "reviewkd")


def parse_table_arg(arg: str | None) -> tuple[list[str], list[str], int]:
  """``'<pair>+<pair>...,<method>+<method>...[,<seeds>]'`` (``all`` or empty: every pair or
  method of the tables; 3 seeds) -> (pairs, methods, seeds)."""
  parts = (arg or "").split(",")
  if len(parts) > 3:
    raise KdJaxError(f"table argument {arg!r}: expected <pairs>,<methods>[,<seeds>]")
  pairs_arg, methods_arg, seeds_arg = (parts + ["", "", ""])[:3]
  known = [f"{t}-{s}" for t, s in PAIRS]
  pairs = known if pairs_arg in ("", "all") else pairs_arg.split("+")
  methods = list(TABLE_METHODS) if methods_arg in ("", "all") else methods_arg.split("+")
  bad = [p for p in pairs if p not in known]
  if bad:
    raise KdJaxError(f"table argument: unknown pair(s) {', '.join(bad)}; the tables' pairs: "
                     f"{', '.join(known)}")
  return pairs, _methods(methods, TABLE_METHODS), _seeds(seeds_arg, 3)


def _methods(methods: list[str], valid: Sequence[str]) -> list[str]:
  bad = [m for m in methods if m not in valid]
  if bad:
    raise KdJaxError(f"table argument: unknown method(s) {', '.join(bad)}; valid: "
                     f"{', '.join(valid)}")
  return methods


def _seeds(arg: str, default: int) -> int:
  try:
    seeds = int(arg) if arg else default
  except ValueError:
    seeds = 0
  if seeds < 1:
    raise KdJaxError(f"table argument: seeds must be an integer >= 1, got {arg!r}")
  return seeds


def cifar100_table(pairs: Sequence[str], methods: Sequence[str], seeds: int = 3
                   ) -> ml_collections.ConfigDict:
  """The runs of RepDistiller's CIFAR-100 tables for ``pairs`` x ``methods`` x ``seeds``,
  each with RepDistiller's recipe (240 epochs, batch 64, SGD 0.9, lr 0.05 or 0.01 for
  MobileNet/ShuffleNet, x0.1 at 150/180/210), and the published numbers of those cells
  (``config.published``: the teachers too). FSP cells RepDistiller did not run (no number,
  or its 0.00 for wrn-40-2 -> wrn-40-1: the channel counts differ, which kd_jax's FSP
  refuses) are listed without runs; CRD+KD cells have no published number (RepDistiller's
  README has no such row) and are run."""
  c = cifar100_teacher("resnet8x4")  # The recipe every run shares; runs set model and lr.
  runs: dict[str, dict] = {}
  rows: list[tuple] = []
  for pair in pairs:
    teacher, student = pair.split("-")
    table = published.REPDISTILLER[pair]
    if f"teacher_{teacher}" not in runs:
      runs[f"teacher_{teacher}"] = dict(model=teacher, optimizer=dict(lr=learning_rate(teacher)),
                                        objectives={"ce": dict(weight=1.0)})
    rows.append((pair, "teacher", f"teacher_{teacher}", table["teacher"]))
    for method in methods:
      group = f"student_{student}" if method == "student" else f"{pair}-{method}"
      value = table.get("student" if method == "student" else method)
      rows.append((pair, method, group, -1.0 if value is None else value))
      if method == "fsp" and not value:
        continue  # RepDistiller did not run it (0.00 or no row): FSP needs equal channels.
      for seed in range(seeds):
        name = f"{group}_seed{seed}"
        if name in runs:
          continue
        run = dict(model=student, seed=seed, optimizer=dict(lr=learning_rate(student)))
        if method == "student":
          run["objectives"] = {"ce": dict(weight=1.0)}
        else:
          run.update(objectives=method_objectives(method, pair),
                     teachers={"teacher": dict(model=teacher, run=f"teacher_{teacher}")})
          own = baselines.solver(method, pair)
          if own:
            run.update(num_epochs=own["num_epochs"], optimizer=dict(lr=own["lr"]))
        runs[name] = run
  c.runs = runs
  c.published = tuple(rows)
  c.published_source = published.REPDISTILLER_SOURCE
  return c



IMAGENET_PAIR = "resnet34-resnet18"
# Rows of the ImageNet table: the student alone, then each method with a recipe, then WTTM
# (published, no recipe).
IMAGENET_TABLE_METHODS = ("student", "kd", "dist", "dkd", "kd_ls", "nkd", "ctkd", "ctkd_dkd",
                          "reviewkd", "wttm")


def parse_imagenet_table_arg(arg: str | None) -> tuple[list[str], int]:
  """``'<method>+<method>...[,<seeds>]'`` (``all`` or empty: every row; 1 seed) -> (methods,
  seeds)."""
  parts = (arg or "").split(",")
  if len(parts) > 2:
    raise KdJaxError(f"table argument {arg!r}: expected <methods>[,<seeds>]")
  methods_arg, seeds_arg = (parts + ["", ""])[:2]
  methods = list(IMAGENET_TABLE_METHODS) if methods_arg in ("", "all") else methods_arg.split("+")
  return _methods(methods, IMAGENET_TABLE_METHODS), _seeds(seeds_arg, 1)


def imagenet_table(methods: Sequence[str], seeds: int = 1) -> ml_collections.ConfigDict:
  """The ImageNet R34 -> R18 table for ``methods`` x ``seeds``: each method's run as its
  authors ran it (``baselines.imagenet_distill``: objectives and epochs on the shared solver),
  named ``resnet34-resnet18-<method>_seed<k>`` (the student alone: ``student_resnet18_seed<k>``),
  the teacher read from ``workdirs/imagenet/resnet34``; the published numbers in
  ``config.published`` (the teacher's and WTTM's rows have no runs)."""
  c = baselines.imagenet_distill("student")
  runs: dict[str, dict] = {}
  rows: list[tuple] = [(IMAGENET_PAIR, "teacher", "teacher_resnet34",
                        published.IMAGENET_R34_R18["teacher"])]
  for method in methods:
    group = "student_resnet18" if method == "student" else f"{IMAGENET_PAIR}-{method}"
    rows.append((IMAGENET_PAIR, method, group, published.IMAGENET_R34_R18.get(method, -1.0)))
    if method not in baselines.IMAGENET:
      continue  # WTTM: no published configuration.
    recipe = baselines.imagenet_distill(method)
    for seed in range(seeds):
      runs[f"{group}_seed{seed}"] = dict(seed=seed, num_epochs=recipe.num_epochs,
                                         objectives=recipe.objectives.to_dict(),
                                         teachers=recipe.teachers.to_dict())
  c.runs = runs
  c.published = tuple(rows)
  c.published_source = published.IMAGENET_SOURCE
  return c

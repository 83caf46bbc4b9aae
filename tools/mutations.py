"""Mutation checks: each breaks kd_jax on purpose, in a copy of the working tree, and runs
the tests that must catch it. A mutation the tests let pass is a test that asserts too
little. Not part of the suite (minutes each):

  python tools/mutations.py                 # every mutation
  python tools/mutations.py detached_heads  # some of them
  python tools/mutations.py --list

Prints ``caught`` (the tests failed, as they must) or ``MISSED`` per mutation; exits 1 if
any was missed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (what it breaks, [(file, old text, new text)], [tests that must fail])
MUTATIONS = {
    "detached_heads": (
        "CC's embedding and VID's regressor get no gradient from their losses",
        [("kd_jax/methods/vid.py",
          "losses.vid(mean, var, t)",
          "losses.vid(jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var), t)"),
         ("kd_jax/methods/relations.py",
          "return sum_over_layers(losses.correlation_congruence, ctx.s_maps, ctx.t_maps)",
          "return sum_over_layers(lambda s, t: losses.correlation_congruence("
          "jax.lax.stop_gradient(s), t), ctx.s_maps, ctx.t_maps)"),
         ("kd_jax/methods/relations.py", "import flax.linen as nn\n",
          "import flax.linen as nn\nimport jax\n")],
        ["tests/distill/test_heads.py::test_heads_are_created_from_the_feature_shapes_and_optimised"]),
    "detached_phase": (
        "FT's initialisation phase gives the paraphraser no gradient (weight decay alone moves it)",
        [("kd_jax/methods/ft.py",
          "return losses.paraphraser_reconstruction(ctx.s_maps[0], ctx.t_maps[0])",
          "return losses.paraphraser_reconstruction(jax.lax.stop_gradient(ctx.s_maps[0]), "
          "ctx.t_maps[0])"),
         ("kd_jax/methods/ft.py", "import flax.linen as nn\n",
          "import flax.linen as nn\nimport jax\n")],
        ["tests/distill/test_init_phases.py::test_ft_phase_trains_only_the_paraphraser"]),
    "detached_common_space": (
        "CFL's MMD term gives the student's alignment layer no gradient",
        [("kd_jax/losses/amalgamation.py",
          "mmd = sum(mmd2(*match_spatial(h_s, h), sigmas=sigmas) for h in h_t)",
          "mmd = sum(mmd2(*match_spatial(jax.lax.stop_gradient(h_s), h), sigmas=sigmas) "
          "for h in h_t)")],
        ["tests/distill/test_multi_teacher.py::test_a_step_with_cfl_over_three_teachers_trains_the_common_space"]),
    "adapter_off_route": (
        "AMA's phase also trains the adaptive module through an L2 pull, not only through the "
        "teacher's classifier",
        [("kd_jax/methods/ama.py", "l2_weight=self.phase_l2,", "l2_weight=1.0,")],
        ["tests/distill/test_ama.py::test_the_phase_trains_the_adapter_and_lift_only_through_the_teachers_classifier"]),
    "hint_repelled": (
        "AMA's main phase pushes the student away from the hint (the loss's sign flipped)",
        [("kd_jax/methods/ama.py", "    return losses.fitnet(ctx.s_maps[0], ctx.t_maps[0])",
          "    return -losses.fitnet(ctx.s_maps[0], ctx.t_maps[0])")],
        ["tests/distill/test_ama.py::test_the_main_phase_moves_the_student_towards_the_frozen_hint"]),
    "random_teacher": (
        "a student is distilled from a freshly initialised teacher, not the trained teacher run",
        [("kd_jax/distill/teachers.py", "    out[name] = (module, variables)",
          "    out[name] = (module, module.init(jax.random.PRNGKey(0), "
          "jnp.zeros((1, *input_shape)), train=False))")],
        ["tests/distill/test_distill_job.py::test_job_trains_a_teacher_then_a_feature_distilled_student"]),
    "stale_readme": (
        "the README shows a flag the command does not have and a config that is not there",
        [("README.md", "--workdir=/tmp/scarce", "--work_dir=/tmp/scarce"),
         ("README.md", "`cifar100/fitnet.py`", "`cifar100/fitnets.py`")],
        ["tests/test_readme.py"]),
    "ignored_checkpoint": (
        "a run starts over instead of resuming from its checkpoint",
        [("kd_jax/training/loop.py", "  resumed = _restore(run, run_phases, state, repl)\n",
          "  resumed = None\n")],
        ["tests/distill/test_distill_job.py::test_crd_resumed_mid_run_ends_where_the_uninterrupted_run_ends"]),
    "dropped_objective": (
        "only the first objective is minimised (the others are logged, not in the total)",
        [("kd_jax/distill/step.py",
          "total = sum((1.0 if phase else o.weight) * values[o.name] for o in objectives)",
          "total = sum((1.0 if phase else o.weight) * values[o.name] for o in objectives[:1])")],
        ["tests/distill/test_distill_job.py::test_job_trains_a_teacher_then_a_feature_distilled_student"]),
    "ignored_cache": (
        "config.teacher_cache is ignored: the teachers run in every step",
        [("kd_jax/training/loop.py", "  if config.teacher_cache:\n", "  if False:\n")],
        ["tests/training/test_teacher_cache.py::test_a_run_from_the_cache_trains_like_a_run_with_the_teacher"]),
    "identity_augmentation": (
        "CIFAR's pad-crop-flip returns the image unchanged",
        [("kd_jax/data/augment.py",
          '  ``RandomHorizontalFlip``, on a uint8 [H, W, C] image."""\n',
          '  ``RandomHorizontalFlip``, on a uint8 [H, W, C] image."""\n  return image\n')],
        ["tests/data/test_pipelines.py::test_cifar_augmentation_is_crop_of_padded_image",
         "tests/data/test_pipelines.py::test_resume_mid_epoch_gives_the_same_augmented_batches"]),
    "own_class_negatives": (
        "CRD's exact negatives are drawn from every labelled example, the anchor's class included",
        [("kd_jax/methods/crd.py",
          "    neg = self.order[np.where(u < start, u, u + count)]\n",
          "    neg = self.order[u]\n")],
        ["tests/methods/test_crd_sampling.py::test_exact_positive_is_the_example_and_negatives_are_other_classes_without_replacement"]),
    "swapped_routing": (
        "CRD scores each embedding against its own side's memory bank instead of the other's",
        [("kd_jax/losses/contrastive.py",
          "  out_t = jnp.exp(contrast_scores(memory.student, contrast_index, z_t) / temperature)\n"
          "  out_s = jnp.exp(contrast_scores(memory.teacher, contrast_index, z_s) / temperature)\n",
          "  out_t = jnp.exp(contrast_scores(memory.teacher, contrast_index, z_t) / temperature)\n"
          "  out_s = jnp.exp(contrast_scores(memory.student, contrast_index, z_s) / temperature)\n")],
        ["tests/losses/test_contrastive.py::test_gradients_reach_each_embedding_through_its_own_anchor"]),
    "misscaled_l2": (
        "the linear probe minimises mean CE + l2 ||W||^2 instead of the documented l2/2",
        [("kd_jax/evaluation/probe.py", "0.5 * l2 * jnp.sum", "1.0 * l2 * jnp.sum")],
        ["tests/evaluation/test_probe.py::test_the_fit_reaches_the_regularised_optimum"]),
    "event_files_by_name": (
        "plot.read_scalars lets the event file sorted last by name win (counter 10 before 9)",
        [("kd_jax/plot.py", "if seen is None or event.wall_time >= seen[0]:", "if True:"),
         ("kd_jax/plot.py", "for path in glob.glob(os.path.join(run_dir, \"events.out.tfevents.*\")):",
          "for path in sorted(glob.glob(os.path.join(run_dir, \"events.out.tfevents.*\"))):")],
        ["tests/test_plot.py::test_the_value_written_last_wins_when_file_counters_cross_from_9_to_10"]),
}


def _copy_tree(dst: str) -> None:
  ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache")
  shutil.copytree(REPO, dst, ignore=ignore)


def run(name: str) -> bool:
  """True when the tests caught the mutation."""
  what, edits, tests = MUTATIONS[name]
  with tempfile.TemporaryDirectory(prefix=f"kd_jax_mutation_{name}_") as tmp:
    tree = os.path.join(tmp, "tree")
    _copy_tree(tree)
    for path, old, new in edits:
      full = os.path.join(tree, path)
      text = open(full).read()
      if text.count(old) != 1:
        raise SystemExit(f"{name}: {path} no longer holds the text to mutate: {old!r}")
      with open(full, "w") as f:
        f.write(text.replace(old, new))
    env = {**os.environ, "PYTHONPATH": tree}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           *tests], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=3600, check=False)
  caught = proc.returncode == 1  # Tests failed (2-5: errors, interrupted, none collected).
  last = (proc.stdout.strip().splitlines() or ["?"])[-1]
  print(f"{'caught' if caught else 'MISSED'}  {name}: {what} ({last})", flush=True)
  if proc.returncode not in (0, 1):
    print(proc.stdout[-3000:] + proc.stderr[-3000:], flush=True)
  return caught


def main(argv: list[str]) -> int:
  if "--list" in argv:
    for name, (what, _, tests) in MUTATIONS.items():
      print(f"{name}: {what}; caught by {', '.join(tests)}")
    return 0
  names = argv or list(MUTATIONS)
  unknown = [n for n in names if n not in MUTATIONS]
  if unknown:
    raise SystemExit(f"unknown mutation(s) {', '.join(unknown)}; --list lists them")
  missed = [n for n in names if not run(n)]
  return 1 if missed else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))

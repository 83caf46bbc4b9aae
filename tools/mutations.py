"""Mutation checks, a measurement of the tests: each mutation breaks one promise of kd_jax
on purpose, in a copy of the working tree, and runs the tests it names (those written to
catch it). A mutation the tests let pass is a test that asserts too little. Not part of the
suite (minutes each):

  python tools/mutations.py --all           # every mutation, then a table
  python tools/mutations.py detached_heads  # some of them
  python tools/mutations.py --list

A mutation is ``caught`` only when one of its named tests fails on an assertion (``assert``,
``np.testing``, ``pytest.raises``/``pytest.fail``); a test that stops on another exception
(a NameError the edit caused, a crash) reports ``error``, and one where every named test
passes ``MISSED``. The table gives each mutation, the tests it names, those that caught it
and the time. Exits 1 unless every mutation was caught.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

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
        "the README and the docs show a flag the command does not have and a config that is "
        "not there",
        [("README.md", "--workdir=/tmp/kd_jax      #", "--work_dir=/tmp/kd_jax      #"),
         ("docs/methods.md", "`cifar100/fitnet.py`", "`cifar100/fitnets.py`")],
        ["tests/test_readme.py"]),
    "docs_objectives_at_the_top": (
        "'Adding a method' sets the student's objectives at the top level, where the student "
        "run (which sets its own) does not read them",
        [("docs/adding_a_method.md", "     c.runs.kd.objectives = {",
          "     c.objectives = {")],
        ["tests/distill/test_adding_a_method.py::test_a_method_outside_the_tree_trains_from_a_config_alone"]),
    "config_reference_without_groups": (
        "the docs' generated config reference leaves out the data and optimizer fields",
        [("kd_jax/config_reference.py", 'walk(getattr(config_lib, sub.group(1)), path + ".")',
          "pass")],
        ["tests/test_config_reference.py::test_every_field_is_listed_once_with_its_default_and_a_meaning"]),
    "method_cards_without_defaults": (
        "the docs' method cards leave out the hyperparameters and their defaults",
        [("kd_jax/config_reference.py", "    if fields:\n      def values(f):",
          "    if False:\n      def values(f):")],
        ["tests/test_config_reference.py::test_every_registered_method_has_a_card_with_its_defaults"]),
    "figure_conflicts_ignored": (
        "a table figure quoted twice with different values at one commit passes the figures check",
        [("tools/figures.py", 'if key in seen and seen[key]["figure"] != r["figure"]:',
          'if False:')],
        ["tests/test_readme.py::test_a_table_figure_quoted_twice_with_different_values_is_a_conflict"]),
    "figure_without_provenance": (
        "a results section loses its commit and CPU",
        [("docs/results.md", "*Measured: commit fadffcb, 2-core AMD EPYC (Zen 3) VM; 28 minutes",
          "*Measured: 28 minutes")],
        ["tests/test_readme.py::test_every_measured_figure_has_its_commit_and_cpu"]),
    "ignored_checkpoint": (
        "a resumed run goes on from its checkpoint's step with its initial state, not the saved one",
        [("kd_jax/training/loop.py",
          'return index, templates[index].replace_checkpointed(restored), restored["rng"], step',
          'return index, templates[index], restored["rng"], step')],
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
    "late_step_decay": (
        "the step schedule decays one epoch late (milestones at (e + 1) * steps_per_epoch)",
        [("kd_jax/training/optim.py", "boundaries = {int(e * steps_per_epoch)",
          "boundaries = {int((e + 1) * steps_per_epoch)")],
        ["tests/training/test_schedules.py::test_repdistillers_schedule_decays_at_the_first_step_of_epochs_151_181_and_211"]),
    "device_augment_skipped": (
        "the device-side CIFAR augmentation skips its crop and flip (normalises only)",
        [("kd_jax/data/device_augment.py",
          "images = pad_crop_flip(images, rng, spec.pad, spec.flip)",
          "images = pad_crop_flip(images, rng, 0, False)")],
        ["tests/data/test_batch_integrity.py::test_the_step_reads_each_image_cropped_and_flipped_with_its_label"]),
    "shifted_labels": (
        "train labels shifted by one within each batch",
        [("kd_jax/data/dataset.py",
          "    ds = ds.batch(self.local_batch_size, drop_remainder=True)\n"
          "    ds = ds.take(self.steps_per_epoch - start)",
          "    ds = ds.batch(self.local_batch_size, drop_remainder=True)\n"
          "    ds = ds.map(lambda b: {**b, 'label': tf.roll(b['label'], 1, 0)})\n"
          "    ds = ds.take(self.steps_per_epoch - start)")],
        ["tests/data/test_batch_integrity.py::test_host_batches_carry_each_images_label_and_index_every_epoch",
         "tests/data/test_batch_integrity.py::test_the_step_reads_each_image_cropped_and_flipped_with_its_label"]),
    "dropped_blocks": (
        "a CIFAR ResNet computes the blocks after each stage's first and drops their output (the "
        "shapes and parameter counts unchanged; resnet8 and resnet8x4 have one block a stage)",
        [("kd_jax/models/resnet_cifar.py",
          "        x, preact = BasicBlock(planes, stride if i == 0 else 1, self.dtype,\n"
          "                               name=f\"stage{stage}_block{i}\")(x, train)",
          "        y, preact = BasicBlock(planes, stride if i == 0 else 1, self.dtype,\n"
          "                               name=f\"stage{stage}_block{i}\")(x, train)\n"
          "        x = y if i == 0 else x")],
        ["tests/models/test_zoo.py::test_jitted_training_step_and_feature_contract"]),
    "head_on_relu": (
        "models.apply_head feeds the head the ReLU of the map it is given (the same for a "
        "stage map that is a ReLU, not for MobileNetV2's linear bottleneck)",
        [("kd_jax/models/__init__.py",
          '"__call__": nn.compact(lambda self, x: self.head(x, False)[0]),',
          '"__call__": nn.compact(lambda self, x: self.head(jax.nn.relu(x), False)[0]),')],
        ["tests/models/test_zoo.py::test_jitted_training_step_and_feature_contract"]),
    "fresh_backbone_kept": (
        "init_from on a multi-head student: the merge puts the fresh backbone back over the "
        "pretrained one (dict order), so consolidation starts from random weights",
        [("kd_jax/training/build.py",
          "merged = {k: {**variables[k], student_lib.BACKBONE: v} for k, v in merged.items()}",
          "merged = {k: {student_lib.BACKBONE: v, **variables[k]} for k, v in merged.items()}")],
        ["tests/recipes/test_multi_teacher.py::test_three_teachers_of_three_architectures_consolidate_on_mock_imagenet"]),
    "dist_intra_as_inter": (
        "DIST's intra-class term (columns: one class across the batch) computed on the rows "
        "again",
        [("kd_jax/losses/logits.py", "intra = 1.0 - jnp.mean(_pearson(ys.T, yt.T))",
          "intra = 1.0 - jnp.mean(_pearson(ys, yt))")],
        ["tests/losses/test_baselines_reference.py::test_dist_matches_authors_code"]),
    "biased_logit_std": (
        "logit standardization divides by the biased standard deviation (N, not torch's N - 1)",
        [("kd_jax/losses/logits.py",
          "var = jnp.sum(jnp.square(centered), axis=-1, keepdims=True) / (z.shape[-1] - 1)",
          "var = jnp.sum(jnp.square(centered), axis=-1, keepdims=True) / z.shape[-1]")],
        ["tests/losses/test_baselines_reference.py::test_kd_with_logit_standardization_matches_authors_code"]),
    "nkd_temperature_once": (
        "NKD's non-target term scaled by T instead of T^2",
        [("kd_jax/losses/logits.py", "non_target = -gamma * t * t * jnp.mean(",
          "non_target = -gamma * t * jnp.mean(")],
        ["tests/losses/test_baselines_reference.py::test_nkd_matches_authors_code"]),
    "wttm_unweighted": (
        "WTTM without its sample-adaptive weight (plain TTM)",
        [("kd_jax/losses/logits.py", "return jnp.mean(weight * kl)", "return jnp.mean(kl)")],
        ["tests/losses/test_baselines_reference.py::test_wttm_matches_authors_code"]),
    "ctkd_not_reversed": (
        "CTKD's gradient reversal layer multiplies by -lambda: the temperature descends the "
        "loss with the student instead of ascending it",
        [("kd_jax/methods/ctkd.py", "return (lam * g).astype(g.dtype), jnp.zeros_like(lam)",
          "return (-lam * g).astype(g.dtype), jnp.zeros_like(lam)")],
        ["tests/losses/test_baselines_reference.py::test_ctkd_matches_authors_code",
         "tests/distill/test_objectives.py::test_ctkd_trains_its_temperature_against_the_student"]),
    "hcl_levels_at_height": (
        "ReviewKD's HCL also pools to l x l where l equals the map's height (the reference "
        "skips l >= H)",
        [("kd_jax/losses/features.py", "    if size >= h:\n      continue",
          "    if size > h:\n      continue")],
        ["tests/losses/test_reviewkd_reference.py::test_hcl_matches_authors_code"]),
    "abf_attention_swapped": (
        "ReviewKD's ABF weighs the student's map by the second attention channel and the deeper "
        "level's by the first",
        [("kd_jax/methods/reviewkd.py", "x = x * z[..., 0:1] + y * z[..., 1:2]",
          "x = x * z[..., 1:2] + y * z[..., 0:1]")],
        ["tests/losses/test_reviewkd_reference.py::test_review_matches_authors_code"]),
    "reviewkd_warmup_from_zero": (
        "ReviewKD's warm-up counts epochs from 0 (the original repository), not from 1 "
        "(mdistiller)",
        [("kd_jax/methods/reviewkd.py", "jnp.asarray(ctx.epoch, jnp.result_type(float))",
          "(jnp.asarray(ctx.epoch, jnp.result_type(float)) - 1)")],
        ["tests/losses/test_reviewkd_reference.py::test_review_matches_authors_code",
         "tests/distill/test_objectives.py::test_warmup_reads_the_epoch_of_the_step"]),
    "mlkd_strong_terms_on_strong_view": (
        "MLKD's last two 'strong' KD terms (T 2 and 6) read the strong view, as the paper "
        "reads, instead of the weak view the authors' code passes",
        [("kd_jax/methods/mlkd.py",
          "    loss_kd = f * sum(weak) + sum(strong) + weak[3] + weak[4]",
          "    loss_kd = f * sum(weak) + sum(losses.kd(ks_s, kt_s, temperature=t) for t in ts)")],
        ["tests/losses/test_mlkd_reference.py::test_mlkd_matches_authors_code"]),
    "mlkd_masks_ignored": (
        "MLKD's confidence masks left out (f = f_c = 1) instead of acting as the fractions of "
        "examples and classes at most the median",
        [("kd_jax/methods/mlkd.py", "    f, f_c = confidence_fractions(zt_w)",
          "    f, f_c = 1.0, 1.0")],
        ["tests/losses/test_mlkd_reference.py::test_mlkd_matches_authors_code"]),
    "median_strictly_below": (
        "MLKD's masks count the values strictly below the median (lt) instead of at most it (le)",
        [("kd_jax/methods/mlkd.py", "jnp.mean((x <= threshold)", "jnp.mean((x < threshold)")],
        ["tests/losses/test_mlkd_reference.py::test_the_masks_act_as_fractions_at_most_the_median",
         "tests/losses/test_mlkd_reference.py::test_mlkd_matches_authors_code"]),
    "blend_rounded": (
        "RandAugment's blends (Brightness, Color, Contrast, Sharpness) round to the nearest "
        "integer instead of truncating as Pillow does",
        [("kd_jax/data/randaugment.py", "  return _u8(jnp.floor(out))", "  return _u8(jnp.round(out))")],
        ["tests/data/test_randaugment.py::test_each_operation_equals_pillow"]),
    "autocontrast_exact_quotient": (
        "RandAugment's AutoContrast takes the exact quotient, not Pillow's float64 rounding "
        "(lo 0, hi 25 maps 25 to 255 instead of 254)",
        [("kd_jax/data/randaugment.py",
          "  stretched = stretched - (table[pos] == keys).astype(jnp.int32)", "")],
        ["tests/data/test_randaugment.py::test_auto_contrast_keeps_pillows_float64_rounding",
         "tests/data/test_randaugment.py::test_each_operation_equals_pillow"]),
    "view_in_a_phase_allowed": (
        "A method with an initialisation phase may read another view: its phase steps, which "
        "make no view, fail on a missing key instead of the plan refusing it",
        [("kd_jax/distill/objectives.py",
          "    if (obj.view or obj.method.views) and obj.init_epochs > 0:",
          "    if False:")],
        ["tests/distill/test_views.py::"
         "test_views_that_cannot_be_had_are_refused_before_anything_trains"]),
    "pointwise_weight_gradient_transposed": (
        "A 1x1 convolution's weight gradient is dy^T x instead of x^T dy (its [C_out, C_in] "
        "read as [C_in, C_out]: equal shapes only where C_in = C_out)",
        [("kd_jax/models/conv.py",
          "    return lax.dot_general(x.reshape(-1, ci), dy.reshape(-1, co), (((0,), (0,)), ((), ())),",
          "    return lax.dot_general(dy.reshape(-1, co), x.reshape(-1, ci), (((0,), (0,)), ((), ())),")],
        ["tests/models/test_conv.py::test_gradients_equal_xlas_to_1e5"]),
    "view_batchnorm_not_chained": (
        "The student's pass on another view starts from the step's BatchNorm statistics, so "
        "the batch's update is lost (the reference updates them once per view, in turn)",
        [("kd_jax/distill/step.py",
          '          {"params": params["student"], "batch_stats": batch_stats}, vb["image"], '
          'train=True,',
          '          {"params": params["student"], "batch_stats": state.batch_stats}, '
          'vb["image"], train=True,')],
        ["tests/distill/test_views.py::"
         "test_the_student_reads_the_view_after_the_batch_and_batchnorm_follows_both"]),
    "ctkd_temperature_detached": (
        "CTKD's loss reads its temperature without gradient: the temperature is never trained",
        [("kd_jax/methods/ctkd.py", "    t = self.temperature(ctx.s_maps[0], ctx.epoch)[0]",
          "    t = jax.lax.stop_gradient(self.temperature(ctx.s_maps[0], ctx.epoch)[0])")],
        ["tests/losses/test_baselines_reference.py::test_ctkd_matches_authors_code"]),
    "memory_momentum_swapped": (
        "CRD's memory update weighs the new embedding by the momentum and the old row by 1 - m "
        "(the same at the default 0.5)",
        [("kd_jax/losses/contrastive.py",
          "rows = momentum * bank[index].astype(z.dtype) + (1.0 - momentum) * z",
          "rows = (1.0 - momentum) * bank[index].astype(z.dtype) + momentum * z")],
        ["tests/losses/test_contrastive.py::test_memory_update_is_momentum_then_renormalise_on_batch_rows_only",
         "tests/losses/test_reference_match.py::test_crd_matches_reference_over_three_steps"]),
    "teacher_head_detached": (
        "SRRL's head term gives the connector and the student no gradient (its input detached)",
        [("kd_jax/losses/statistics.py", "y = float32(teacher_head(f_s))",
          "y = float32(teacher_head(jax.lax.stop_gradient(f_s)))")],
        ["tests/methods/test_feature_statistics.py::test_the_teachers_head_alone_trains_the_connector_and_the_students_layers_below_it"]),
    "eval_wrong_head": (
        "a multi-head student is scored on its first head, not the one config.eval_head names",
        [("kd_jax/distill/step.py", "logits = features[head_feature(head)]",
          "logits = features[min(k for k in features if k.startswith('logits/'))]")],
        ["tests/distill/test_multi_teacher.py::test_evaluation_scores_the_chosen_head_over_the_real_examples_only"]),
    "eval_counts_padding": (
        "evaluation counts the padding examples of the last batch",
        [("kd_jax/distill/step.py", 'mask=batch["mask"])', 'mask=jnp.ones_like(batch["mask"]))')],
        ["tests/distill/test_multi_teacher.py::test_evaluation_scores_the_chosen_head_over_the_real_examples_only"]),
    "task_accuracy_unrestricted": (
        "a task's accuracy takes the argmax over every class, not over the task's",
        [("kd_jax/distill/step.py", "pred = ids[jnp.argmax(logits[:, ids], axis=-1)]",
          "pred = jnp.argmax(logits, axis=-1)")],
        ["tests/distill/test_multi_teacher.py::test_task_accuracy_restricts_examples_and_logits_to_the_tasks_classes"]),
    "eval_past_its_count": (
        "evaluation reads real examples past num_eval_examples to fill its last batch",
        [("kd_jax/data/dataset.py",
          "    ds = ds.take(-(-self.num_eval_examples // jax.process_count()))\n", "")],
        ["tests/data/test_batch_integrity.py::test_eval_batches_hold_the_first_examples_once_each_uncropped_and_the_rest_is_padding"]),
    "union_labels_not_offset": (
        "a union's second data set keeps its own labels (they collide with the first's)",
        [("kd_jax/data/union.py", 'ex["label"] = ex["label"] + label_offset',
          'ex["label"] = ex["label"]')],
        ["tests/data/test_batch_integrity.py::test_a_union_offsets_each_parts_labels_and_indices"]),
    "label_mask_of_the_next_example": (
        "with labeled_fraction < 1 an example carries the label mask of the next index",
        [("kd_jax/data/dataset.py", 'out["label_mask"] = tf.gather(label_mask, index)',
          'out["label_mask"] = tf.gather(label_mask, (index + 1) % tf.size(label_mask, index.dtype))')],
        ["tests/data/test_batch_integrity.py::test_labeled_fraction_masks_the_labels_of_the_examples_drawn_for_it"]),
    "cosine_over_the_warm_up": (
        "the cosine decays over the whole run, warm-up included (it never reaches 0)",
        [("kd_jax/training/optim.py", "max(1, total - warmup)", "max(1, total)")],
        ["tests/training/test_schedules.py::test_a_linear_warm_up_then_the_schedule_over_the_rest_of_the_run"]),
    "milestones_after_the_warm_up": (
        "a step schedule after a warm-up counts its milestones from the warm-up's end",
        [("kd_jax/training/optim.py", "{b - warmup: f for b, f in boundaries.items()}",
          "{b: f for b, f in boundaries.items()}")],
        ["tests/training/test_schedules.py::test_a_linear_warm_up_then_the_schedule_over_the_rest_of_the_run"]),
    "negatives_from_a_window": (
        "CRD's negatives come from the first 2K examples of the other classes, not all of them",
        [("kd_jax/methods/crd.py", "u = rng.choice(pool, self.nce_k, replace=self.nce_k > pool)",
          "u = rng.choice(min(pool, 2 * self.nce_k), self.nce_k, replace=self.nce_k > pool)")],
        ["tests/methods/test_crd_sampling.py::test_exact_negatives_are_uniform_over_every_example_of_the_other_classes"]),
    "same_draw_every_step": (
        "the host samplers draw the same negatives for an example at every step",
        [("kd_jax/distill/host_inputs.py",
          "rng = np.random.default_rng([seed % 2**32, stream, step, jax.process_index(), i])",
          "rng = np.random.default_rng([seed % 2**32, stream, 0, jax.process_index(), i])")],
        ["tests/methods/test_crd_sampling.py::test_the_same_step_draws_the_same_indices"]),
    "format_2_momentum_lost": (
        "a checkpoint of format 2 (as main at e5517ae wrote them) resumes with the "
        "optimiser's momentum zeroed",
        [("kd_jax/checkpoint.py",
          "    return _rename_format_2(out, to_format_2=False) if legacy else out",
          "    return {**(r := _rename_format_2(out, to_format_2=False)), "
          "\"opt_state\": jax.tree.map(lambda a: a * 0, r[\"opt_state\"])} if legacy else out")],
        ["tests/test_plan.py::test_a_checkpoint_written_by_main_at_e5517ae_resumes_as_an_uninterrupted_run"]),
    "format_2_adapter_reinitialised": (
        "a checkpoint of format 2 resumes with its adapters (params['aux']) initialised anew",
        [("kd_jax/checkpoint.py",
          "    return _rename_format_2(out, to_format_2=False) if legacy else out",
          "    return {**(r := _rename_format_2(out, to_format_2=False)), \"params\": "
          "{**r[\"params\"], \"adapters\": items[\"params\"][\"adapters\"]}} if legacy else out")],
        ["tests/test_plan.py::test_a_checkpoint_written_by_main_at_e5517ae_resumes_as_an_uninterrupted_run"]),
    "best_keeps_the_worst": (
        "best/ keeps the model of the lowest eval accuracy",
        [("kd_jax/checkpoint.py", 'best_mode="max"', 'best_mode="min"')],
        ["tests/training/test_checkpoint_contents.py::test_best_holds_the_model_of_the_best_evaluation_and_latest_the_last_step"]),
    "first_teacher_for_all": (
        "an objective naming one teacher reads the first configured teacher",
        [("kd_jax/distill/objectives.py", "      return teachers[self.teacher]",
          "      return next(iter(teachers.values()))")],
        ["tests/distill/test_objectives.py::test_an_objective_reads_the_teacher_it_names_and_no_other"]),
    "cache_read_by_position": (
        "the teacher cache hands a batch the outputs of the first examples, not its own",
        [("kd_jax/training/teacher_cache.py", "yield {**batch, **{k: np.asarray(a[index])",
          "yield {**batch, **{k: np.asarray(a[np.arange(len(index))])")],
        ["tests/training/test_teacher_cache.py::test_a_run_from_the_cache_trains_like_a_run_with_the_teacher"]),
    "frozen_after_trained": (
        "adapters that a phase freezes (FT's paraphraser, a calibration) go on training",
        [("kd_jax/training/build.py",
          "frozen = any(o.method.frozen or not o.main_phase for o in objectives)",
          "frozen = False")],
        ["tests/distill/test_init_phases.py::test_main_phase_trains_the_translator_and_keeps_the_paraphraser_frozen",
         "tests/distill/test_adding_a_method.py::test_a_method_outside_the_tree_trains_from_a_config_alone"]),
    "phase_without_momentum": (
        "an initialisation phase runs plain SGD, not the main optimiser's momentum",
        [("kd_jax/training/phases.py", "momentum=opt_cfg.momentum, nesterov=False",
          "momentum=0.0, nesterov=False")],
        ["tests/distill/test_init_phases.py::test_a_phase_optimises_with_sgd_at_its_rate_with_the_main_momentum_and_decay"]),
    "stepless_train": (
        "the train step computes its gradients but applies no update",
        [("kd_jax/distill/step.py",
          "  new_state, finite = _update_if_finite(state, tx, total, grads, skip_nonfinite,",
          "  grads = jax.tree.map(jnp.zeros_like, grads)\n"
          "  new_state, finite = _update_if_finite(state, tx, total, grads, skip_nonfinite,")],
        ["tests/recipes/test_cifar100.py::test_method_trains_three_steps_and_evaluates_on_mock_cifar100[one_stage]"]),
    "proxy_labels_used": (
        "the unlabelled proxy of a union keeps label_mask 1: CE trains on its placeholder labels",
        [("kd_jax/data/union.py", '"label_mask": tf.constant(0.0, tf.float32)}',
          '"label_mask": tf.constant(1.0, tf.float32)}')],
        ["tests/recipes/test_multi_teacher.py::test_a_consolidated_student_trains_on_an_unlabelled_proxy_and_a_labelled_target"]),
    "table_in_fractions": (
        "the job's table prints test accuracy as a fraction under its 'test acc %' heading",
        [("kd_jax/job.py", "f\"{100 * r['test_accuracy']:.2f}\"",
          "f\"{r['test_accuracy']:.2f}\"")],
        ["tests/training/test_default_job.py::test_default_job_prints_table_and_writes_outputs"]),
    "nan_not_stopped": (
        "a run whose step went non-finite goes on training (and checkpointing)",
        [("kd_jax/training/loop.py", "    if (bads < 0).all():\n", "    if True:\n")],
        ["tests/training/test_bad_inputs.py::test_nan_stops_training_and_keeps_last_good_checkpoint"]),
    "process_local_mesh": (
        "each process of a multi-process job meshes its own devices only: the processes train "
        "apart, on their local batches",
        [("kd_jax/training/sharding.py", 'return Mesh(np.array(jax.devices()), ("data",))',
          'return Mesh(np.array(jax.local_devices()), ("data",))')],
        ["tests/training/test_multiprocess.py::test_two_processes_train_and_only_process_zero_writes"]),
    "deit_soft_over_the_batch": (
        "DeiT's soft term divides the summed KL by the batch (losses.kd) instead of the number "
        "of logits B * K, the reference's 'legacy' reduction",
        [("kd_jax/methods/deit.py",
          "  return losses.kd(dist_logits, teacher_logits, temperature=tau) / dist_logits.shape[-1]",
          "  return losses.kd(dist_logits, teacher_logits, temperature=tau)")],
        ["tests/losses/test_vit_reference.py::test_deit_soft_distillation_matches_authors_code"]),
    "deit_eval_class_head_only": (
        "A distilled ViT's inference logits are its class head's instead of the mean of both "
        "heads (DeiT's evaluation)",
        [("kd_jax/models/vit.py", "    out = logits if train else (logits + dist_logits) / 2",
          "    out = logits")],
        ["tests/models/test_vit.py::test_converted_vit_matches_timm",
         "tests/models/test_vit.py::"
         "test_distilled_logits_are_the_class_head_in_training_and_the_mean_in_inference"]),
    "vit_attention_unscaled": (
        "The ViT's attention logits are q k^T without the 1 / sqrt(head dim) scale",
        [("kd_jax/models/vit.py", 'jnp.einsum("bhqd,bhkd->bhqk", q * scale, k)',
          'jnp.einsum("bhqd,bhkd->bhqk", q, k)')],
        ["tests/models/test_vit.py::test_converted_vit_matches_timm"]),
    "vit_attention_backward_without_the_row_sum": (
        "The attention's written-out backward drops the softmax's row term: dlogits = w * dw "
        "instead of w * (dw - sum(dw * w))",
        [("kd_jax/models/vit.py",
          "weights * (d_weights - jnp.sum(d_weights * weights, axis=-1, keepdims=True))",
          "weights * d_weights")],
        ["tests/models/test_vit.py::test_gradients_match_timms",
         "tests/models/test_vit.py::test_the_attentions_written_out_backward_is_autodiffs"]),
    "vit_attention_backward_dk_unscaled": (
        "The attention's written-out backward forgets the 1 / sqrt(head dim) in the keys' "
        "gradient",
        [("kd_jax/models/vit.py", 'jnp.einsum("bhqk,bhqd->bhkd", d_logits, q * scale)',
          'jnp.einsum("bhqk,bhqd->bhkd", d_logits, q)')],
        ["tests/models/test_vit.py::test_gradients_match_timms",
         "tests/models/test_vit.py::test_the_attentions_written_out_backward_is_autodiffs"]),
    "vit_gelu_tanh": (
        "The ViT's MLP uses the tanh approximation of GELU instead of timm's exact (erf) GELU",
        [("kd_jax/models/vit.py",
          "return x * 0.5 * (1.0 + jax.lax.erf(x * np.sqrt(0.5).astype(x.dtype)))",
          "return jax.nn.gelu(x, approximate=True)")],
        ["tests/models/test_vit.py::test_converted_vit_matches_timm"]),
    "vit_spatial_check_off": (
        "A method comparing spatial maps is planned on a ViT side (and fails later, or reads "
        "tokens as maps) instead of being refused in one line",
        [("kd_jax/distill/adapters.py", '      if kind == "maps" and is_token_model(out):',
          '      if False:')],
        ["tests/recipes/test_vit.py::test_spatial_methods_are_refused_on_either_vit_side"]),
    "ofa_enhancement_without_the_mask": (
        "OFA's target enhancement raises the teacher's probabilities alone to eps, "
        "(p_T^eps) instead of (p_T + onehot)^eps - onehot",
        [("kd_jax/losses/logits.py",
          "  return jnp.mean(jnp.sum(-((pt + m) ** eps - m) * log_ps, axis=-1))",
          "  return jnp.mean(jnp.sum(-(pt ** eps) * log_ps, axis=-1))")],
        ["tests/losses/test_vit_reference.py::test_ofa_loss_matches_authors_code"]),
    "ofa_cnn_projector_one_sepconv_short": (
        "OFA's CNN projector of stage k has n - k - 1 SepConvs instead of n - k (it would "
        "pool a map the reference downsamples once more)",
        [("kd_jax/methods/ofa.py", "        blocks = n - stage\n",
          "        blocks = max(n - stage - 1, 0)\n")],
        ["tests/losses/test_vit_reference.py::test_ofa_on_a_cnn_student_matches_authors_code",
         "tests/recipes/test_vit.py::test_ofa_plans_in_both_directions"]),
    "seeds_teachers_per_seed": (
        "seeds side by side with shared batches give each seed its copy of the batch before "
        "the teachers run (the teachers then run once per seed)",
        [("kd_jax/distill/step.py", "  loader_batch = batch\n",
          "  batch = _per_seed(batch, rng) if shared_seeds else batch\n"
          "  loader_batch = batch\n")],
        ["tests/training/test_seeds.py::test_shared_batches_run_the_teacher_once_for_all_seeds"]),
    "seeds_one_key": (
        "every seed of a run of seeds initialised (and stepped) from the first seed's key",
        [("kd_jax/training/seeds.py", "jax.random.PRNGKey(k + offset) for k in seeds",
          "jax.random.PRNGKey(seeds[0] + offset) for k in seeds")],
        ["tests/training/test_seeds.py::test_seed_k_of_the_state_is_the_state_of_seed_k"]),
    "seeds_independent_one_order": (
        "independent batches: every seed reads config.seed's data order and augmentation",
        [("kd_jax/training/seeds.py",
          "  streams = [host_inputs.attach(data.train_batches(epoch, start, k, stream=stream),",
          "  streams = [host_inputs.attach(data.train_batches(epoch, start, data_seed, "
          "stream=stream),")],
        ["tests/training/test_seeds.py::test_seed_k_of_three_trains_as_seed_k_alone"]),
    "seeds_loop_teachers_in_turn": (
        "seeds computed in turn (seed_compute loop) with shared batches run each seed's whole "
        "step in the loop, the teachers once per seed",
        [("kd_jax/training/seeds.py",
          "      inputs = jax.vmap(lambda s, b, r: step_fn.inputs(s, b, keys_of(r)),\n"
          "                        in_axes=(state_axes(), batch_axes, 0))(state, batch, rng)\n"
          "      new, metrics = _in_turn(step_fn.update, state, inputs)\n",
          "      new, metrics = _in_turn(lambda s, r: step_fn(s, batch, keys_of(r)), state, rng)\n")],
        ["tests/training/test_seeds.py::test_shared_batches_run_the_teacher_once_for_all_seeds"]),
    "seeds_loop_step_frozen": (
        "seeds computed in turn (seed_compute loop) leave the step counter where it was, so "
        "every step folds the same step into its keys",
        [("kd_jax/training/seeds.py",
          "    return new.replace(step=state.step + 1, teachers=state.teachers), metrics\n",
          "    return new.replace(step=state.step, teachers=state.teachers), metrics\n")],
        ["tests/training/test_seeds.py::test_seed_k_of_three_trains_as_seed_k_alone"]),
    "seeds_resume_unaligned": (
        "a run of seeds resumes each seed from its own newest checkpoint, not the newest step "
        "all seeds hold",
        [("kd_jax/training/loop.py", "    if len(steps) == 1:\n      break\n",
          "    if True:\n      break\n")],
        ["tests/reliability/test_sigkill.py::test_seeds_killed_mid_write_and_between_seeds_resume_every_seed_bit_identical"]),
    "benchmark_rounds_first_only": (
        "the benchmark's overheads read each method's first timing, not the median of its "
        "rounds",
        [("kd_jax/bench/benchmarking.py", "step_ms = statistics.median(method_all[method])",
          "step_ms = method_all[method][0]")],
        ["tests/bench/test_benchmarking.py::"
         "test_rounds_time_the_networks_and_every_step_in_turn_and_the_overheads_use_medians"]),
    "torch_state_dict_not_unwrapped": (
        "a PyTorch checkpoint that keeps its weights under 'state_dict' (timm, pytorch/examples) "
        "is read as if it were the state_dict",
        [("kd_jax/models/torch_import.py", '_WRAPPERS = ("model", "state_dict")',
          '_WRAPPERS = ("model",)')],
        ["tests/models/test_torch_import.py::test_training_checkpoint_dicts_are_unwrapped"]),
    "ranges_unchecked": (
        "a method's hyperparameter outside its ranges (a temperature of 0) is accepted",
        [("kd_jax/methods/base.py", "    if value not in allowed:\n", "    if False:\n")],
        ["tests/methods/test_ranges.py::"
         "test_a_value_outside_its_range_is_refused_at_plan_time_in_one_line",
         "tests/methods/test_ranges.py::test_building_a_method_outside_its_range_raises"]),
    "range_bound_open_closed": (
        "a range's open lower bound is taken as closed (a temperature of 0 is positive)",
        [("kd_jax/methods/base.py",
          "(value <= self.low if self.low_open else value < self.low)",
          "(value < self.low if self.low_open else value <= self.low)")],
        ["tests/methods/test_ranges.py::test_a_range_holds_what_it_says"]),
    "dist_norm_autodiff": (
        "DIST's Pearson correlation differentiates its norms by autodiff: a NaN gradient where a "
        "class's softmax is 0 for the whole batch (the authors' is finite)",
        [("kd_jax/losses/logits.py", "/ (_row_norms(a) * _row_norms(b) + eps)",
          "/ (jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1) + eps)")],
        ["tests/losses/test_baselines_reference.py::"
         "test_dist_where_a_class_underflows_for_the_whole_batch_matches_the_authors_gradient"]),
    "cc_abs_gradient_at_ties": (
        "CC's |e_s - e_t| differentiated as jnp.abs (gradient 1 where they tie; the reference's "
        "is 0)",
        [("kd_jax/losses/relations.py", "delta = absolute(e_s - e_t)",
          "delta = jnp.abs(e_s - e_t)")],
        ["tests/losses/test_reference_gradients.py::"
         "test_gradient_where_student_and_teacher_tie_matches_reference"]),
    "folder_sixteen_bit_clipped": (
        "an image folder's 16-bit grey PNGs go through Pillow's conversion, which clips every "
        "value at 255",
        [("kd_jax/data/folder.py", "  if image.mode in _WIDE_GREY:\n", "  if False:\n")],
        ["tests/data/test_folder.py::"
         "test_sixteen_bit_grey_images_are_scaled_to_eight_bits_not_clipped",
         "tests/data/test_folder.py::"
         "test_sixteen_bit_grey_beside_colour_images_is_scaled_to_grey_rgb"]),
    "pretrained_channels_unchecked": (
        "a model read by init_from or as a downstream backbone is checked for its layers' "
        "ranks only: one for RGB images passes the plan on grey ones",
        [("kd_jax/checkpoint.py", "or given[path].shape != leaf.shape):",
          "or len(given[path].shape) != len(leaf.shape)):")],
        ["tests/test_plan.py::"
         "test_a_model_the_last_run_cannot_take_is_refused_before_the_first_run_trains"]),
    "teacher_variables_unchecked_at_plan": (
        "a teacher checkpoint whose variables do not fit its module on the run's images is "
        "found only when its run starts",
        [("kd_jax/plan.py", "  _check_teacher_variables(plan, t_vars, earlier, shapes)\n", "")],
        ["tests/test_plan.py::"
         "test_a_model_the_last_run_cannot_take_is_refused_before_the_first_run_trains"]),
    "runs_not_ordered_by_init_from": (
        "a run that starts from a run named after it (init_from) is planned before it",
        [("kd_jax/config.py", "    visit(runs[name].init_from, chain + (name,))", "    pass")],
        ["tests/test_plan.py::test_a_run_reading_a_later_named_run_with_init_from_trains_after_it"]),
    "dry_run_writability_unchecked": (
        "the dry run says nothing of a workdir that the run would refuse as not writable",
        [("kd_jax/dry_run.py", "job.problems + ((writable,) if writable else ())",
          "job.problems")],
        ["tests/test_dry_run.py::"
         "test_a_workdir_that_cannot_be_created_is_the_last_line_and_nothing_is_written"]),
    "crd_first_normaliser_differentiated": (
        "CRD's normalisers, estimated at the first step from its own scores, pass gradient "
        "(the reference's are constants: .item())",
        [("kd_jax/losses/contrastive.py", "first = n * jnp.mean(jax.lax.stop_gradient(out))",
          "first = n * jnp.mean(out)")],
        ["tests/losses/test_reference_gradients.py::"
         "test_crd_gradient_matches_reference_over_three_steps"]),
    "vid_teacher_not_detached": (
        "VID's teacher map receives gradient from the student's likelihood",
        [("kd_jax/losses/features.py",
          "jnp.square(mean - jax.lax.stop_gradient(f_t))", "jnp.square(mean - f_t)")],
        ["tests/losses/test_reference_gradients.py::test_vid_gradient_matches_reference"]),
    "objective_override_needs_the_field_in_the_file": (
        "--config.objectives.kd.temperature=8 is refused where the config file leaves kd's "
        "temperature at its default",
        [("kd_jax/cli.py", "  impl.ConfigFileFlagParser = Parser\n", "")],
        ["tests/training/test_bad_inputs.py::"
         "test_an_objective_field_the_file_leaves_at_its_default_is_overridden",
         "tests/training/test_bad_inputs.py::"
         "test_a_run_objective_field_of_the_default_config_is_overridden_when_the_flag_is_defined"]),
    "workdir_of_another_config_resumed": (
        "a job's finished run trained with another hyperparameter is reported as this "
        "config's",
        [("kd_jax/plan.py",
          "    ckpt_lib.check_finished_run_config(run_dir, plan.trained_config(), *(\n",
          "    (lambda *a: None)(run_dir, plan.trained_config(), *(\n")],
        ["tests/test_plan.py::"
         "test_a_finished_run_trained_with_another_config_is_refused_and_a_resumed_one_says_so"]),
    "downstream_results_kept_for_another_config": (
        "a finished run's downstream results are reported for another downstream config",
        [("kd_jax/evaluation/downstream.py", "  if task not in evaluated:\n",
          "  if not evaluated:\n"),
         ("kd_jax/evaluation/downstream.py", "  if \"config\" not in done:\n",
          "  if True:\n")],
        ["tests/evaluation/test_downstream.py::"
         "test_a_finished_runs_downstream_phase_is_done_again_only_for_another_config"]),
    "finetune_planned_without_its_init_from": (
        "the plan's downstream fine-tuning run starts from no backbone, unlike the one trained: "
        "a finished job with a fine-tuning run is refused when it is run again",
        [("kd_jax/plan.py", "  ft = config_lib.finetune_config(cfg, model, backbone.path)",
          "  ft = config_lib.finetune_config(cfg, model, \"\")")],
        ["tests/test_plan.py::"
         "test_the_plans_fine_tuning_run_starts_from_the_backbone_the_job_fine_tunes"]),
    "dkd_tckd_log_of_summed_probabilities": (
        "DKD's TCKD takes the log of the summed non-target probabilities, as the reference: "
        "infinite where they underflow to 0",
        [("kd_jax/losses/logits.py", "jax.nn.logsumexp(log_p, axis=-1, where=gt == 0)",
          "jnp.log(jnp.sum(jnp.exp(log_p) * (1.0 - gt), axis=-1))")],
        ["tests/losses/test_baselines_reference.py::"
         "test_dkd_where_a_students_binary_probability_underflows_is_the_finite_value"]),
    "init_from_recorded_by_folder": (
        "a run's config.json names an init_from inside its job by its folder: the job moved "
        "elsewhere is refused",
        [("kd_jax/plan.py", "      return os.path.relpath(path, here)\n", "      return init_from\n"),
         ("kd_jax/plan.py", "      return os.path.relpath(path, job)\n", "      return init_from\n")],
        ["tests/test_plan.py::"
         "test_the_plans_fine_tuning_run_starts_from_the_backbone_the_job_fine_tunes"]),
    "run_config_defaults_not_filled": (
        "an objective's hyperparameter set to its default counts as another config than the "
        "same left unset",
        [("kd_jax/plan.py", "\"view\": o.view, **{k: getattr(o.method, k) for k in o.method.hparams()}}",
          "\"view\": o.view, **{k: getattr(o.method, k) for k in o.given}}")],
        ["tests/test_plan.py::"
         "test_a_finished_run_trained_with_another_config_is_refused_and_a_resumed_one_says_so"]),
}


def _copy_tree(dst: str) -> None:
  # .git too (5 MB): a test may compare `git status` before and after a command.
  ignore = shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", ".pytest_cache")
  shutil.copytree(REPO, dst, ignore=ignore)


def _is_assertion(exc_type: type) -> bool:
  """An assertion of the test (assert, np.testing, pytest.raises' DID NOT RAISE, pytest.fail),
  not an error that merely stopped it."""
  from _pytest.outcomes import Failed  # pylint: disable=g-import-not-at-top
  return issubclass(exc_type, (AssertionError, Failed))


# The pytest plugin half: loaded into the pytest that runs the named tests (``-p mutations``),
# it writes one line per failed test phase to $KD_JAX_MUTATION_REPORT.
def pytest_runtest_makereport(item, call):
  from _pytest.outcomes import Skipped  # pylint: disable=g-import-not-at-top
  path = os.environ.get("KD_JAX_MUTATION_REPORT")
  if path and call.excinfo is not None and not call.excinfo.errisinstance(Skipped):
    with open(path, "a") as f:
      f.write(json.dumps({"test": item.nodeid, "when": call.when,
                          "assertion": call.when == "call" and _is_assertion(call.excinfo.type),
                          "exception": call.excinfo.typename}) + "\n")


class Result:
  def __init__(self, name: str, caught_by: list[str], errors: list[str], seconds: float,
               tail: str):
    self.name, self.caught_by, self.errors, self.seconds, self.tail = (
        name, caught_by, errors, seconds, tail)

  @property
  def verdict(self) -> str:
    return "caught" if self.caught_by else ("error" if self.errors else "MISSED")


def apply(tree: str, name: str) -> None:
  """Writes mutation ``name``'s edits into the copy ``tree``."""
  for path, old, new in MUTATIONS[name][1]:
    full = os.path.join(tree, path)
    with open(full) as f:
      text = f.read()
    if text.count(old) != 1:
      raise SystemExit(f"{name}: {path} no longer holds the text to mutate: {old!r}")
    with open(full, "w") as f:
      f.write(text.replace(old, new))


def run(name: str) -> Result:
  """Runs mutation ``name``'s tests on a mutated copy of the tree."""
  what, _, tests = MUTATIONS[name]
  t0 = time.time()
  with tempfile.TemporaryDirectory(prefix=f"kd_jax_mutation_{name}_") as tmp:
    tree = os.path.join(tmp, "tree")
    _copy_tree(tree)
    apply(tree, name)
    report = os.path.join(tmp, "report.jsonl")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tree, os.path.join(tree, "tools")]),
           "KD_JAX_MUTATION_REPORT": report}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "mutations", *tests], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=3600, check=False)
    lines = []
    if os.path.exists(report):
      with open(report) as f:
        lines = [json.loads(line) for line in f]
  caught_by = sorted({r["test"] for r in lines if r["assertion"]})
  errors = sorted({f"{r['test']} ({r['when']}: {r['exception']})" for r in lines
                   if not r["assertion"]})
  if proc.returncode not in (0, 1):  # Nothing collected, a usage error, interrupted.
    errors.append(f"pytest exited {proc.returncode}")
  last = (proc.stdout.strip().splitlines() or ["?"])[-1]
  result = Result(name, caught_by, errors, time.time() - t0, last)
  print(f"{result.verdict:6s}  {name}: {what} ({last}; {result.seconds:.0f} s)", flush=True)
  for e in errors:
    print(f"        error in {e}", flush=True)
  if errors and not caught_by:
    print(proc.stdout[-3000:] + proc.stderr[-3000:], flush=True)
  return result


def table(results: list[Result]) -> str:
  """Markdown: mutation, the tests it names, the tests that caught it (on an assertion), time."""
  rows = ["| mutation | expected test | caught by | time |", "|---|---|---|---|"]
  for r in results:
    expected = "<br>".join(MUTATIONS[r.name][2])
    by = "<br>".join(r.caught_by) if r.caught_by else (
        "**error**: " + "; ".join(r.errors) if r.errors else "**MISSED**")
    rows.append(f"| {r.name} | {expected} | {by} | {r.seconds:.0f} s |")
  caught = sum(bool(r.caught_by) for r in results)
  rows.append(f"\n{caught} of {len(results)} caught on an assertion of a named test, "
              f"{sum(r.seconds for r in results) / 60:.1f} min")
  return "\n".join(rows)


def main(argv: list[str]) -> int:
  if "--list" in argv:
    for name, (what, _, tests) in MUTATIONS.items():
      print(f"{name}: {what}; caught by {', '.join(tests)}")
    return 0
  names = list(MUTATIONS) if "--all" in argv else [a for a in argv if not a.startswith("-")]
  if not names:
    raise SystemExit("name mutations to run, or --all (--list lists them)")
  unknown = [n for n in names if n not in MUTATIONS]
  if unknown:
    raise SystemExit(f"unknown mutation(s) {', '.join(unknown)}; --list lists them")
  results = [run(n) for n in names]
  print(table(results), flush=True)
  return 0 if all(r.caught_by for r in results) else 1


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))

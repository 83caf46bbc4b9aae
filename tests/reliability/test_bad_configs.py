"""Bad configs are refused at start-up, before anything trains, each with one exact line
that names the field. Most in-process (job.run); the last ones through the command line."""
import os

import pytest

from kd_jax import recipes
from kd_jax.errors import KdJaxError
from kd_jax import job

from tests import forkserver
from tests.commands import REPO, train_command

MODELS = ("MobileNetV2, ResNet50, ShuffleV1, ShuffleV2, deit_base_distilled_patch16_224, "
          "deit_base_patch16_224, deit_small_distilled_patch16_224, deit_small_patch16_224, "
          "deit_tiny_distilled_patch16_224, deit_tiny_patch16_224, resnet110, resnet14, resnet18, "
          "resnet20, resnet32, resnet32x4, resnet34, resnet44, resnet50, resnet56, resnet8, "
          "resnet8x4, vgg11, vgg13, vgg16, vgg19, vgg8, vit_micro_distilled_patch2_8, "
          "vit_micro_patch2_8, vit_tiny_distilled_patch4_32, vit_tiny_patch4_32, wrn_16_1, "
          "wrn_16_2, wrn_40_1, wrn_40_2")

CASES = {
    "model": (lambda c: c.update(model="resnet9"),
              f"config.model: unknown model 'resnet9'; valid names: {MODELS}"),
    "batch_size": (lambda c: c.update(batch_size=0),
                   "config.batch_size must be an integer >= 1, got 0"),
    "num_epochs": (lambda c: c.update(num_epochs=-1),
                   "config.num_epochs must be an integer >= 1, got -1"),
    "optimizer": (lambda c: c.optimizer.update(name="rmsprop"),
                  "config.optimizer.name must be sgd, adam or adamw, got 'rmsprop'"),
    "lr": (lambda c: c.optimizer.update(lr=-0.1), "config.optimizer.lr must be a number > 0, got -0.1"),
    "lr_nan": (lambda c: c.optimizer.update(lr=float("nan")),
               "config.optimizer.lr must be a number > 0, got nan"),
    "momentum": (lambda c: c.optimizer.update(momentum=1.5),
                 "config.optimizer.momentum must be a number in [0, 1), got 1.5"),
    "weight_decay": (lambda c: c.optimizer.update(weight_decay=-5e-4),
                     "config.optimizer.weight_decay must be a number >= 0, got -0.0005"),
    "schedule": (lambda c: c.optimizer.update(schedule="linear"),
                 "config.optimizer.schedule must be step, cosine or constant, got 'linear'"),
    "augment": (lambda c: c.data.update(train_augment="flip"),
                "config.data.train_augment must be one of none, cifar, pad_crop, inception (or '' "
                "for the data set's preset), got 'flip'"),
    "image_size": (lambda c: c.data.update(image_size=-5),
                   "config.data.image_size must be an integer >= 1, or -1 for the data set's "
                   "preset; got -5"),
    "vit_image_size": (lambda c: (c.update(model="vit_micro_patch2_8"),
                                  c.data.update(image_size=31)),
                       "model vit_micro_patch2_8 cannot take the data's 31x31x1 images: a 31x31 "
                       "image does not divide into 2x2 patches (config.data.image_size)"),
    "dtype": (lambda c: c.update(dtype="float16"), "config.dtype must be float32 or bfloat16, got 'float16'"),
    "weight": (lambda c: c.update(objectives={"ce": dict(weight=-1.0)}),
               "config.objectives.ce.weight must be a number >= 0, got -1.0"),
    "weight_nan": (lambda c: c.update(objectives={"ce": dict(weight=float("nan"))}),
                   "config.objectives.ce.weight must be a number >= 0, got nan"),
    "loss": (lambda c: c.update(objectives={"kdd": dict(weight=1.0)}),
             "config.objectives.kdd: unknown loss 'kdd'; valid: ab, adain, ama, at, cc, ce, cfl, crd, "
             "ctkd, deit, dist, dkd, fitnet, fsp, ft, function_matching, kd, logit_l2, "
             "mean_matching, mlkd, nkd, nst, ofa, pkt, reviewkd, rkd, soft_ce, sp, stat_matching, "
             "teacher_head, vid, vitkd, wttm (a method of your own: config.method_modules)"),
    "hyperparameter": (lambda c: c.update(objectives={"ce": dict(weight=1.0, temprature=4.0)}),
                       "config.objectives.ce: unknown field(s) temprature for loss 'ce'; valid: "
                       "weight, loss, view, label_smoothing"),
    "hyperparameter_range": (lambda c: c.update(objectives={"ce": dict(label_smoothing=-0.1)}),
                             "config.objectives.ce: label_smoothing must be in [0, 1], got -0.1"),
    "objective_teacher": (lambda c: c.update(objectives={"kd": dict(weight=1.0, teacher="nobody")}),
                          "config.objectives.kd.teacher: 'nobody' is not a configured teacher "
                          "(config.teachers: none)"),
    "teacher_model": (lambda c: c.update(teachers={"t": dict(model="resnet99", run="x")}),
                      f"config.teachers.t.model: unknown model 'resnet99'; valid names: {MODELS}"),
    "teacher_source": (lambda c: c.update(teachers={"t": dict(model="resnet8")}),
                       "config.teachers.t: give exactly one of checkpoint=<dir> or run=<earlier "
                       "run name>"),
    "normalisation": (lambda c: c.data.update(mean=(0.5,)),
                      "config.data.mean and config.data.std must be set together, as equally long "
                      "lists of numbers (std > 0), got [0.5] and []"),
    "labeled_fraction": (lambda c: c.data.update(labeled_fraction=1.5),
                         "config.data.labeled_fraction must be a number in (0, 1], got 1.5"),
    "data_classes": (lambda c: c.data.update(classes=(3, 3)),
                     "config.data.classes must be distinct class ids of 'sklearn_digits' (0..9), "
                     "got [3, 3]"),
    "num_classes": (lambda c: c.update(num_classes=5),
                    "config.num_classes is 5 but 'sklearn_digits' has 10 classes (labels 0..9); "
                    "set -1 to take the data set's"),
    "eval_head": (lambda c: c.update(eval_head="nobody"),
                  "config.eval_head: 'nobody' is not one of config.student_heads (none)"),
    "keep_checkpoints": (lambda c: c.update(keep_checkpoints=0),
                         "config.keep_checkpoints must be an integer >= 1, got 0"),
    "log_every_steps": (lambda c: c.update(log_every_steps=0),
                        "config.log_every_steps must be an integer >= 1, got 0"),
    "protocols": (lambda c: (c.downstream.data.update(name="sklearn_digits_transposed"),
                             c.downstream.update(protocols=("svm",))),
                  "config.downstream.protocols must list linear_probe and/or finetune, got ('svm',)"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_with_one_exact_line(name, tmp_path):
  change, message = CASES[name]
  config = recipes.digits_base()
  change(config)
  with pytest.raises(KdJaxError) as err:
    job.run(config, str(tmp_path))
  assert str(err.value) == message
  assert "\n" not in str(err.value)
  assert not os.path.exists(tmp_path / "checkpoints")  # Nothing trained.


def _command(tmp_path, *overrides):
  return forkserver.run(train_command(tmp_path, *overrides), cwd=REPO, capture_output=True,
                        text=True, timeout=300)


@pytest.mark.parametrize("overrides, message", [
    (["--config.skip_nonfinite_steps=yes"],
     "kd_jax: error: flag --config.skip_nonfinite_steps=yes: ('Non-boolean argument to "
     "boolean flag', 'yes')"),
    (["--config.optimizer.lrr=0.1"],
     "kd_jax: error: unknown config field in --config.* override: 'lrr'"),
    (["--config.model=resnet9"], f"kd_jax: error: config.model: unknown model 'resnet9'; valid names: {MODELS}"),
])
def test_the_command_refuses_in_one_line(tmp_path, overrides, message):
  proc = _command(tmp_path, *overrides)
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith(message), lines[-1]
  assert len([l for l in lines if l.startswith("kd_jax: error:")]) == 1

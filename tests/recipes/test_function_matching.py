"""Function matching's recipes: big_vision's settings where it has them (ImageNet), our
choices elsewhere, each one config away; the ImageNet recipe trains on mock ImageNet (the
CIFAR-100 one with the other CIFAR-100 recipes, tests/recipes/test_cifar100.py)."""
import pytest

from kd_jax import config as config_lib
from tests.recipes.helpers import load_config, train_on_mock_imagenet

FM = {"function_matching": {"weight": 1.0, "temperature": 1.0, "mixup_p": 1.0, "mixup_n": 2}}


def test_cifar100_recipe_is_one_view_kl_at_t1_without_labels_for_1200_epochs():
  c = load_config("configs/cifar100/function_matching.py")
  assert c.objectives.to_dict() == FM and c.data.train_augment == "inception"
  assert (c.model, c.teachers.teacher.model) == ("resnet8x4", "resnet32x4")
  assert (c.num_epochs, c.optimizer.schedule, c.optimizer.lr, c.batch_size) == (1200, "cosine",
                                                                              0.05, 64)
  config_lib.validate(c)
  assert load_config("configs/cifar100/function_matching.py", "vgg13-vgg8").model == "vgg8"


def test_imagenet_recipe_follows_big_visions_bit_i1k():
  c = load_config("configs/imagenet/function_matching.py")
  assert c.objectives.to_dict() == FM and c.data.train_augment == "inception"
  assert (c.model, c.teachers.teacher.model) == ("resnet18", "resnet50")
  assert c.teachers.teacher.checkpoint == "workdirs/imagenet/resnet50"
  assert (c.batch_size, c.num_epochs, c.data.image_size) == (4096, 1200, 224)
  opt = c.optimizer
  assert (opt.name, opt.lr, opt.lr_reference_batch, opt.clip_norm) == ("adamw", 0.03, 4096, 1.0)
  assert opt.weight_decay * opt.lr == pytest.approx(3e-4)  # big_vision: wd 3e-4 per step, unscaled by lr
  assert opt.warmup_epochs * 0.98 * 1_281_167 / 4096 == pytest.approx(5000)  # steps
  config_lib.validate(c)


def test_digits_job_compares_function_matching_with_kd_short_and_long_over_three_seeds():
  runs = config_lib.expand_runs(load_config("configs/digits/function_matching.py"))
  groups = ("kd", "fm", "kd_long", "fm_long")
  assert sorted(runs) == sorted(["teacher"] + [f"{g}_seed{s}" for g in groups for s in range(3)])
  assert runs["fm_seed1"].objectives.to_dict() == FM
  assert runs["fm_long_seed2"].data.train_augment == "inception"
  assert runs["kd_seed0"].data.train_augment == ""  # The digits preset: none.
  assert (runs["fm_seed0"].num_epochs, runs["fm_long_seed0"].num_epochs) == (30, 150)
  assert runs["kd_long_seed1"].num_epochs == 150


@pytest.mark.slow
def test_imagenet_recipe_trains_on_mock_imagenet(tmp_path):
  """A random resnet18 with 1000 classes stands in for the resnet50 teacher (the method
  reads its logits only, which have the same shape)."""
  c = load_config("configs/imagenet/function_matching.py")
  results = train_on_mock_imagenet(c, tmp_path)
  assert results["steps"] == 2 and results["objectives"] == {"function_matching": 1.0}
  assert 0.0 <= results["test_accuracy"] <= 1.0

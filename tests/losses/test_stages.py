"""Initialisation stages are data that name real losses and the reference's settings."""
import pytest

from kd_jax import losses
from kd_jax.losses.stages import INIT_STAGES


def test_the_three_two_stage_methods_of_the_reference_and_ama_have_a_stage():
  assert sorted(INIT_STAGES) == ["ab", "ama", "fsp", "ft"]


@pytest.mark.parametrize("method", sorted(INIT_STAGES))
def test_stage_losses_exist_in_kd_jax_losses(method):
  stage = INIT_STAGES[method]
  assert callable(getattr(losses, stage.loss))
  if stage.main_stage_loss is not None:
    assert callable(getattr(losses, stage.main_stage_loss))
  assert stage.epochs == (10 if method == "ama" else 30) and not stage.student_train_mode


def test_ft_paraphraser_learning_rate_is_lower_for_resnet_and_wrn_students():
  ft = INIT_STAGES["ft"]
  assert ft.learning_rate("resnet8x4", 0.05) == 0.01
  assert ft.learning_rate("MobileNetV2", 0.01) == 0.01
  assert ft.learning_rate("vgg8", 0.05) == 0.05
  assert INIT_STAGES["ab"].learning_rate("resnet8x4", 0.05) == 0.05


def test_ab_and_fsp_transfer_only_through_their_stage():
  assert INIT_STAGES["ab"].main_stage_loss is None and INIT_STAGES["fsp"].main_stage_loss is None
  assert INIT_STAGES["ft"].main_stage_loss == "factor_transfer"

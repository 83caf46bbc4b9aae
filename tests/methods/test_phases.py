"""Initialisation phases are data of their methods, with the reference's settings."""
import pytest

from kd_jax import losses, methods
from kd_jax.methods import ALL_ADAPTERS, STUDENT_FEATURES

PHASED = sorted(n for n in methods.names() if methods.get(n).phase)


def test_the_three_two_stage_methods_of_the_reference_and_ama_have_a_phase():
  assert PHASED == ["ab", "ama", "fsp", "ft"]


@pytest.mark.parametrize("name", PHASED)
def test_a_phase_names_a_loss_of_kd_jax_and_the_reference_length(name):
  phase = methods.get(name).phase
  assert callable(getattr(losses, phase.loss))
  assert phase.epochs == (10 if name == "ama" else 30) and phase.lr is None


def test_ft_paraphraser_learning_rate_is_lower_for_resnet_and_wrn_students():
  ft, ab = methods.get("ft")(), methods.get("ab")()
  assert ft.phase_lr("resnet8x4", 0.05) == 0.01
  assert ft.phase_lr("MobileNetV2", 0.01) == 0.01
  assert ft.phase_lr("vgg8", 0.05) == 0.05
  assert ab.phase_lr("resnet8x4", 0.05) == 0.05


def test_ab_and_fsp_transfer_only_through_their_phase():
  assert not methods.get("ab").phase.in_main and not methods.get("fsp").phase.in_main
  assert methods.get("ft").phase.in_main and methods.get("ama").phase.in_main


def test_what_each_phase_trains_and_freezes():
  assert methods.get("ab").phase.trains == (ALL_ADAPTERS, STUDENT_FEATURES)
  assert methods.get("fsp").phase.trains == (STUDENT_FEATURES,)
  assert methods.get("ft")().frozen == ("paraphraser",)
  assert methods.get("ama")().frozen == ("adapter", "lift")
  assert methods.get("ab")().frozen == () and methods.get("kd")().frozen == ()

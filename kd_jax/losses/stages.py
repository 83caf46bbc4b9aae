"""Initialisation stages of the methods that need one, as data.

RepDistiller (``helper/pretrain.py``, ``train_student.py``) trains three methods in two
stages: an initialisation stage that minimises a method loss alone, then the main stage.
The distillation loop reads ``INIT_STAGES[method]`` and runs the stage from the same
config before the main stage; nothing here runs anything.

Reference quirks kept on purpose (they are what the published numbers came from):
* During an initialisation stage the *student is in eval mode* (``model_s.eval()``): its
  BatchNorm layers normalise with running statistics and do not update them, even for
  AB and FSP, whose stage trains the student's feature layers.
* AB and FSP transfer knowledge only through the initialisation: their main stage has
  ``loss_kd = 0`` (CE, plus KD if its weight is set).
* FT's paraphraser is trained in its stage and then frozen (eval mode, not optimised);
  the main stage trains the translator with ``factor_transfer``.
* Stage optimiser: SGD, momentum 0.9, weight decay 5e-4, the main stage's learning rate
  (0.05), except FT with a resnet/wrn student: 0.01; 30 epochs.

Activation map adaptation (``ama``) is not from RepDistiller: its stage (train the adaptive
module and its lift through the frozen teacher's classifier, student untouched) follows
our inferred reading (README, *What is inferred*); its 10 epochs are our choice.
"""
from __future__ import annotations

import dataclasses

# Students for which the reference pre-trains FT's paraphraser at lr 0.01.
_FT_LOW_LR_STUDENTS = ("resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56",
                       "resnet110", "resnet8x4", "resnet32x4", "wrn_16_1", "wrn_16_2",
                       "wrn_40_1", "wrn_40_2")


@dataclasses.dataclass(frozen=True)
class InitStage:
  """One initialisation stage.

  loss: the ``kd_jax.losses`` function minimised (alone) in the stage.
  reads: which features it reads on both sides, in the reference's terms.
  trains: what the stage optimises: ``'paraphraser'`` / ``'connector'`` (auxiliary
    modules) and/or ``'student_features'`` (every student parameter but the classifier).
  main_stage_loss: the method's loss in the main stage, or None (main stage CE/KD only).
  epochs, lr: the stage's length and learning rate (None: the main stage's).
  student_train_mode: False: the student's BatchNorm uses running statistics in the stage.
  """

  loss: str
  reads: str
  trains: tuple[str, ...]
  main_stage_loss: str | None
  epochs: int = 30
  lr: float | None = None
  student_train_mode: bool = False

  def learning_rate(self, student: str, main_lr: float) -> float:
    """The stage's learning rate for this student (FT: 0.01 for resnet/wrn students)."""
    if self.loss == "paraphraser_reconstruction" and student in _FT_LOW_LR_STUDENTS:
      return 0.01
    return main_lr if self.lr is None else self.lr


INIT_STAGES: dict[str, InitStage] = {
    "ft": InitStage(loss="paraphraser_reconstruction", reads="teacher feat[-2]",
                    trains=("paraphraser",), main_stage_loss="factor_transfer"),
    "ab": InitStage(loss="activation_boundaries", reads="preact feat[1:-1], both sides",
                    trains=("connector", "student_features"), main_stage_loss=None),
    "ama": InitStage(loss="adapted_teacher_loss", reads="teacher feat[-3] and pooled",
                     trains=("adapter", "lift"), main_stage_loss="fitnet", epochs=10),
    "fsp": InitStage(loss="fsp", reads="feat[:-1] (stem, stage1..3), both sides",
                     trains=("student_features",), main_stage_loss=None),
}

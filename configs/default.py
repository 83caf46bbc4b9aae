"""The main job, on the embedded digits data (sklearn_digits, 8x8x1, offline).

Three runs in <workdir>/<run>: a resnet20 teacher; a resnet8 student distilled from
it with Hinton KD (RepDistiller's recipe: 0.1 * CE + 0.9 * KD at T = 4); the same
resnet8 trained from scratch with CE. Prints the table of test accuracies.

  python -m kd_jax.train --config=configs/default.py --workdir=/tmp/w
"""
from kd_jax import recipes


def get_config():
  c = recipes.digits_base()
  c.runs = {
      "teacher": dict(model="resnet20"),
      "kd_student": dict(
          model="resnet8",
          teachers={"teacher": dict(model="resnet20", run="teacher")},
          objectives={"ce": dict(weight=0.1),
                      "kd": dict(weight=0.9, teacher="teacher", temperature=4.0)}),
      "scratch_student": dict(model="resnet8"),
  }
  return c

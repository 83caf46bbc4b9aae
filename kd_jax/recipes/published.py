"""Published numbers the table jobs compare with, transcribed as printed (top-1 %).

REPDISTILLER: RepDistiller's README (HobbitLong/RepDistiller, "Benchmark Results on
CIFAR-100", both tables), per ``(teacher, student)`` pair: the teacher's and the student's
own accuracy (``teacher``, ``student``: trained alone) and each method's. The README prints
FSP as 0.00 for wrn-40-2 -> wrn-40-1 (the pair's channel counts differ) and has no FSP row
for the cross-architecture pairs and no CRD+KD row (the paper's tables have CRD+KD; they are
not transcribed here): those are absent. DKD: mdistiller's README (its KD column repeats
RepDistiller's). The logit baselines of 2022-2024: see ``_BASELINES``. CFL: CFL's README (CUB-200 + Stanford Dogs, 320-way, KD-only -> CFL).
"""
from __future__ import annotations

_SAME = ("wrn_40_2-wrn_16_2", "wrn_40_2-wrn_40_1", "resnet56-resnet20", "resnet110-resnet20",
         "resnet110-resnet32", "resnet32x4-resnet8x4", "vgg13-vgg8")
_CROSS = ("vgg13-MobileNetV2", "ResNet50-MobileNetV2", "ResNet50-vgg8", "resnet32x4-ShuffleV1",
          "resnet32x4-ShuffleV2", "wrn_40_2-ShuffleV1")
_ROWS_SAME = {
    "teacher": (75.61, 75.61, 72.34, 74.31, 74.31, 79.42, 74.64),
    "student": (73.26, 71.98, 69.06, 69.06, 71.14, 72.50, 70.36),
    "kd": (74.92, 73.54, 70.66, 70.67, 73.08, 73.33, 72.98),
    "fitnet": (73.58, 72.24, 69.21, 68.99, 71.06, 73.50, 71.02),
    "at": (74.08, 72.77, 70.55, 70.22, 72.31, 73.44, 71.43),
    "sp": (73.83, 72.43, 69.67, 70.04, 72.69, 72.94, 72.68),
    "cc": (73.56, 72.21, 69.63, 69.48, 71.48, 72.97, 70.71),
    "vid": (74.11, 73.30, 70.38, 70.16, 72.61, 73.09, 71.23),
    "rkd": (73.35, 72.22, 69.61, 69.25, 71.82, 71.90, 71.48),
    "pkt": (74.54, 73.45, 70.34, 70.25, 72.61, 73.64, 72.88),
    "ab": (72.50, 72.38, 69.47, 69.53, 70.98, 73.17, 70.94),
    "ft": (73.25, 71.59, 69.84, 70.22, 72.37, 72.86, 70.58),
    "fsp": (72.91, 0.00, 69.95, 70.11, 71.89, 72.62, 70.23),
    "nst": (73.68, 72.24, 69.60, 69.53, 71.96, 73.30, 71.53),
    "crd": (75.48, 74.14, 71.16, 71.46, 73.48, 75.51, 73.94),
}
_ROWS_CROSS = {
    "teacher": (74.64, 79.34, 79.34, 79.42, 79.42, 75.61),
    "student": (64.60, 64.60, 70.36, 70.50, 71.82, 70.50),
    "kd": (67.37, 67.35, 73.81, 74.07, 74.45, 74.83),
    "fitnet": (64.14, 63.16, 70.69, 73.59, 73.54, 73.73),
    "at": (59.40, 58.58, 71.84, 71.73, 72.73, 73.32),
    "sp": (66.30, 68.08, 73.34, 73.48, 74.56, 74.52),
    "cc": (64.86, 65.43, 70.25, 71.14, 71.29, 71.38),
    "vid": (65.56, 67.57, 70.30, 73.38, 73.40, 73.61),
    "rkd": (64.52, 64.43, 71.50, 72.28, 73.21, 72.21),
    "pkt": (67.13, 66.52, 73.01, 74.10, 74.69, 73.89),
    "ab": (66.06, 67.20, 70.65, 73.55, 74.31, 73.34),
    "ft": (61.78, 60.99, 70.29, 71.75, 72.50, 72.03),
    "nst": (58.16, 64.96, 71.28, 74.12, 74.68, 74.89),
    "crd": (69.73, 69.11, 74.30, 75.11, 75.65, 76.05),
}
# mdistiller README, CIFAR-100 DKD (pairs it reports).
_DKD = {"resnet56-resnet20": 71.97, "resnet110-resnet32": 74.11, "resnet32x4-resnet8x4": 76.32,
        "wrn_40_2-wrn_16_2": 76.23, "wrn_40_2-wrn_40_1": 74.81, "vgg13-vgg8": 74.68,
        "resnet32x4-ShuffleV1": 76.45, "wrn_40_2-ShuffleV1": 76.70,
        "vgg13-MobileNetV2": 69.71, "ResNet50-MobileNetV2": 70.35,
        "resnet32x4-ShuffleV2": 77.07}

# The logit baselines (RepDistiller's pairs the READMEs report). DIST and WTTM: the official
# WTTM README (zkxufo/TTM, whose DIST row is DIST's paper's; DIST's own README gives only
# resnet32x4-resnet8x4, 76.31, the same). KD+LS, DKD+LS, CTKD, CTKD+LS: the logit-
# standardization README (its CTKD row is its own run of CTKD; CTKD's README has no such
# table). NKD reports no CIFAR-100 number on these pairs.
_BASELINES = {
    "dist": {"wrn_40_2-wrn_16_2": 75.51, "wrn_40_2-wrn_40_1": 74.73, "resnet56-resnet20": 71.75,
             "resnet110-resnet20": 71.65, "resnet110-resnet32": 73.69,
             "resnet32x4-resnet8x4": 76.31, "vgg13-vgg8": 73.89, "vgg13-MobileNetV2": 68.50,
             "ResNet50-MobileNetV2": 68.66, "ResNet50-vgg8": 74.11,
             "resnet32x4-ShuffleV1": 76.34, "resnet32x4-ShuffleV2": 77.35,
             "wrn_40_2-ShuffleV1": 76.40},
    "wttm": {"wrn_40_2-wrn_16_2": 76.37, "wrn_40_2-wrn_40_1": 74.58, "resnet56-resnet20": 71.92,
             "resnet110-resnet20": 71.67, "resnet110-resnet32": 74.13,
             "resnet32x4-resnet8x4": 76.06, "vgg13-vgg8": 74.44, "vgg13-MobileNetV2": 69.16,
             "ResNet50-MobileNetV2": 69.59, "ResNet50-vgg8": 74.82,
             "resnet32x4-ShuffleV1": 74.37, "resnet32x4-ShuffleV2": 76.55,
             "wrn_40_2-ShuffleV1": 75.42},
    "kd_ls": {"resnet32x4-resnet8x4": 76.62, "vgg13-vgg8": 74.36, "wrn_40_2-wrn_40_1": 74.37,
              "wrn_40_2-wrn_16_2": 76.11, "resnet56-resnet20": 71.43,
              "resnet110-resnet32": 74.17, "resnet110-resnet20": 71.48,
              "resnet32x4-ShuffleV2": 75.56, "vgg13-MobileNetV2": 68.61,
              "ResNet50-MobileNetV2": 69.02},
    "ctkd": {"resnet32x4-resnet8x4": 73.39, "vgg13-vgg8": 73.52, "wrn_40_2-wrn_40_1": 73.93,
             "wrn_40_2-wrn_16_2": 75.45, "resnet56-resnet20": 71.19, "resnet110-resnet32": 73.52,
             "resnet110-resnet20": 70.99, "resnet32x4-ShuffleV2": 75.37,
             "vgg13-MobileNetV2": 68.50, "ResNet50-MobileNetV2": 68.67},
    "ctkd_ls": {"resnet32x4-resnet8x4": 76.67, "vgg13-vgg8": 74.47, "wrn_40_2-wrn_40_1": 74.58,
                "wrn_40_2-wrn_16_2": 76.08, "resnet56-resnet20": 71.34,
                "resnet110-resnet32": 74.01, "resnet110-resnet20": 71.39,
                "resnet32x4-ShuffleV2": 76.18, "vgg13-MobileNetV2": 68.98,
                "ResNet50-MobileNetV2": 69.36},
    "dkd_ls": {"resnet32x4-resnet8x4": 77.01, "vgg13-vgg8": 74.81, "wrn_40_2-wrn_40_1": 74.89,
               "wrn_40_2-wrn_16_2": 76.39, "resnet56-resnet20": 72.32,
               "resnet110-resnet32": 74.29, "resnet110-resnet20": 71.85,
               "resnet32x4-ShuffleV2": 77.37, "vgg13-MobileNetV2": 69.98,
               "ResNet50-MobileNetV2": 70.45},
    # The logit-standardization README's MLKD row (its own run of MLKD; MLKD's README has no
    # numbers) and MLKD+LS row.
    "mlkd": {"resnet32x4-resnet8x4": 77.08, "vgg13-vgg8": 75.18, "wrn_40_2-wrn_40_1": 75.35,
             "wrn_40_2-wrn_16_2": 76.63, "resnet56-resnet20": 72.19,
             "resnet110-resnet32": 74.11, "resnet110-resnet20": 71.89,
             "resnet32x4-ShuffleV2": 78.44, "vgg13-MobileNetV2": 70.57,
             "ResNet50-MobileNetV2": 71.04},
    "mlkd_ls": {"resnet32x4-resnet8x4": 78.28, "vgg13-vgg8": 75.22, "wrn_40_2-wrn_40_1": 75.56,
                "wrn_40_2-wrn_16_2": 76.95, "resnet56-resnet20": 72.33,
                "resnet110-resnet32": 74.32, "resnet110-resnet20": 72.27,
                "resnet32x4-ShuffleV2": 78.76, "vgg13-MobileNetV2": 70.94,
                "ResNet50-MobileNetV2": 71.19},
}

REPDISTILLER_SOURCE = ("RepDistiller README (CIFAR-100 top-1 %); DKD: mdistiller README; DIST, "
                       "WTTM: zkxufo/TTM README; KD+LS, DKD+LS, CTKD, CTKD+LS, MLKD, MLKD+LS: "
                       "logit-standardization-KD README")


def _table() -> dict[str, dict[str, float]]:
  out: dict[str, dict[str, float]] = {}
  for pairs, rows in ((_SAME, _ROWS_SAME), (_CROSS, _ROWS_CROSS)):
    for i, pair in enumerate(pairs):
      out[pair] = {row: values[i] for row, values in rows.items()}
  for pair, value in _DKD.items():
    out[pair]["dkd"] = value
  for method, cells in _BASELINES.items():
    for pair, value in cells.items():
      out[pair][method] = value
  return out


# "<teacher>-<student>" -> {"teacher"|"student"|<method>: top-1 %}.
REPDISTILLER: dict[str, dict[str, float]] = _table()

# CFL README: student -> {"kd": KD-only, "cfl": CFL}, 320-way CUB-200 + Stanford Dogs.
CFL = {"resnet34": {"kd": 76.84, "cfl": 77.21}, "resnet50": {"kd": 79.65, "cfl": 79.97},
       "densenet121": {"kd": 77.69, "cfl": 78.15}}
# The code's teachers: run -> (what it is, its accuracy on its own test set).
CFL_TEACHERS = {"teacher_birds": ("resnet18 on CUB-200", 74.11),
                "teacher_dogs": ("resnet34 on Stanford Dogs", 86.63)}
CFL_SOURCE = "CFL README (CUB-200 + Stanford Dogs, 320-way top-1 %)"

# ImageNet ResNet-34 -> ResNet-18 top-1 %, each from the README of the code that ran it: the
# teacher and the student alone (torchvision's, as DIST's and WTTM's READMEs quote them), KD and
# DKD (mdistiller), DIST (DIST_KD), NKD (cls_KD nkd.md), CTKD on KD and on DKD (CTKD), ReviewKD
# (dvlab-research/ReviewKD), WTTM (zkxufo/TTM; its configuration is not published, so the row
# has no runs). The logit-standardization README has no ImageNet table (no KD+LS number).
IMAGENET_R34_R18 = {"teacher": 73.31, "student": 69.76, "kd": 71.03, "dkd": 71.70,
                    "dist": 72.07, "nkd": 71.96, "ctkd": 71.32, "ctkd_dkd": 71.51,
                    "reviewkd": 71.61, "wttm": 72.19}
IMAGENET_SOURCE = ("ImageNet R34 -> R18 top-1 %: teacher, student: torchvision (as DIST's and "
                   "WTTM's READMEs); KD, DKD: mdistiller README; DIST: DIST_KD README; NKD: "
                   "cls_KD nkd.md; CTKD: CTKD README; ReviewKD: ReviewKD README; WTTM: zkxufo/TTM "
                   "README")

# DeiT's README (facebookresearch/deit README_deit.md), ImageNet top-1 %, 300 epochs: DeiT-tiny
# and DeiT-small trained alone, and with the distillation token from a RegNetY-16GF teacher
# (82.9%; kd_jax's recipe reads a ResNet-50 instead: the zoo has no RegNetY).
DEIT = {"tiny": {"student": 72.2, "deit": 74.5}, "small": {"student": 79.9, "deit": 81.2}}
DEIT_SOURCE = ("ImageNet DeiT top-1 %: facebookresearch/deit README_deit.md (the distilled rows "
               "from a RegNetY-16GF teacher at 82.9%; kd_jax's runs read a ResNet-50)")

# ViTKD's README (yzd-v/cls_KD vitkd.md), ImageNet top-1 %: the student alone as the authors
# trained it (mmcls), with ViTKD, and with ViTKD + NKD; teachers DeiT III-Small (for DeiT-Tiny)
# and DeiT III-Base (for DeiT-Small).
VITKD = {"tiny": {"student": 74.42, "vitkd": 76.06, "vitkd_nkd": 77.78},
         "small": {"student": 80.55, "vitkd": 81.95, "vitkd_nkd": 83.59}}
VITKD_SOURCE = ("ViTKD: yzd-v/cls_KD vitkd.md (teachers DeiT III-Small / -Base; kd_jax's runs "
                "read DeiT-Small / -Base: the zoo has no DeiT III)")

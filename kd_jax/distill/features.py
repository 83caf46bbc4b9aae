"""Features by name: what an objective's ``student_feature`` / ``teacher_feature`` select.

Features are named as the models name them (``stem``, ``stage1``.., ``preact/stage1``..,
``pooled``; see the model table in docs/models.md) or by a token that follows RepDistiller's
``feat`` list for any family: ``stages`` (``feat[1:-1]``: every ``stage<k>``),
``preact_stages``, ``last_stage`` (``feat[-2]``), ``before_last_stage``,
``stem_and_stages`` (``feat[:-1]``), and ``logits``. A list of names reads several maps.

Head routing: a student with a head named after a teacher (``config.student_heads``)
exposes that head's logits as ``features['logits/<teacher>']`` (``head_feature``).
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import jax

from kd_jax.errors import KdJaxError


def head_feature(teacher: str) -> str:
  """The student's feature holding the logits of its head for ``teacher``."""
  return f"logits/{teacher}"


TOKENS = ("stages", "preact_stages", "last_stage", "before_last_stage", "stem_and_stages",
           "logits")


def _stage_names(features: Mapping[str, Any], prefix: str = "") -> list[str]:
  names = [k for k in features if re.fullmatch(prefix + r"stage\d+", k)]
  return sorted(names, key=lambda k: int(re.findall(r"\d+$", k)[0]))


def feature_names(features: Mapping[str, Any], spec: str | Sequence[str],
                  where: str) -> list[str]:
  """The names of the maps ``spec`` names (a feature name, a token, or a list of them)."""
  def expand(name):
    if name == "stages":
      return _stage_names(features)
    if name == "preact_stages":
      return _stage_names(features, "preact/")
    if name == "last_stage":
      return _stage_names(features)[-1:]
    if name == "before_last_stage":
      return _stage_names(features)[-2:-1]
    if name == "stem_and_stages":
      return ["stem"] + _stage_names(features)
    return [name]

  names = [n for part in ([spec] if isinstance(spec, str) else spec) for n in expand(part)]
  missing = [n for n in names if n not in features]
  if missing or not names:
    raise KdJaxError(f"{where}: the model has no feature {', '.join(missing) or spec!r}; it has "
                     f"{', '.join(sorted(features))} (or a token: {', '.join(TOKENS)})")
  return names


def select_features(features: Mapping[str, jax.Array], spec: str | Sequence[str],
                    where: str) -> list[jax.Array]:
  """The maps ``spec`` names (a feature name, a token, or a list of them), in order."""
  return [features[n] for n in feature_names(features, spec, where)]

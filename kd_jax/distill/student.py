"""The student: a zoo backbone, plus (for several teachers) one head per teacher.

Representation consolidation trains one shared backbone with a linear head per teacher,
each sized to its teacher's output space. ``MultiHeadStudent`` wraps any zoo model: its
``__call__`` returns the backbone's ``(logits, features)`` with ``features['logits/<teacher>']``
added (a Linear layer on ``pooled`` per head). Parameters: ``{'backbone': <the zoo
model's>, 'head_<teacher>': {...}}``; the backbone's own classifier is kept (it is what
a plain evaluation reads unless ``config.eval_head`` names a head).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from kd_jax import checkpoint as ckpt_lib
from kd_jax import models
from kd_jax.distill.features import head_feature
from kd_jax.models.layers import TorchDense

BACKBONE = "backbone"


class MultiHeadStudent(nn.Module):
  """A zoo model with a ``num_classes``-way Linear head per teacher on its pooled feature.

  heads: ``((teacher, num_classes), ...)``."""

  backbone: nn.Module
  heads: Sequence[tuple[str, int]]

  @nn.compact
  def __call__(self, x, train: bool = False):
    logits, features = self.backbone(x, train)
    features = dict(features)
    for name, num_classes in self.heads:
      features[head_feature(name)] = TorchDense(num_classes, self.backbone.dtype,
                                                name=f"head_{name}")(features["pooled"])
    return logits, features


def create(model: str, num_classes: int, heads: Mapping[str, int] | None = None,
           dtype: Any = jnp.float32) -> nn.Module:
  """The zoo model ``model``, wrapped with one head per entry of ``heads`` if any."""
  backbone = models.create(model, num_classes, dtype=dtype)
  if not heads:
    return backbone
  return MultiHeadStudent(backbone, tuple((n, int(c)) for n, c in heads.items()))


class HeadAsLogits(nn.Module):
  """A consolidated (multi-head) student used as a teacher: its logits are those of its
  head ``head`` (``features['logits/<head>']``); every feature, each head's logits
  included, is passed on."""

  student: nn.Module
  head: str

  @nn.compact
  def __call__(self, x, train: bool = False):
    _, features = self.student(x, train)
    return features[head_feature(self.head)], features


def as_teacher(model: str, num_classes: int, heads: Mapping[str, int] | None = None,
               head: str = "", dtype: Any = jnp.float32) -> nn.Module:
  """The module that runs a teacher: a zoo model, or a kd_jax student trained with
  ``heads`` (then ``head``, if given, names the head whose logits are the teacher's; else the
  backbone's classifier). Its variables are the student's as checkpointed."""
  module = create(model, num_classes, heads, dtype=dtype)
  if head:
    if head not in (heads or {}):
      raise ValueError(f"has no head {head!r} (its heads: {', '.join(heads or {}) or 'none'})")
    module = HeadAsLogits(module, head)
  return module


def backbone_variables(variables: Mapping[str, Any], heads: Mapping[str, int] | None
                       ) -> dict[str, Any]:
  """The zoo model's own variables out of a (possibly multi-head) student's."""
  if not heads:
    return dict(variables)
  return {k: v[BACKBONE] for k, v in variables.items() if BACKBONE in v}


def load_backbone_variables(workdir: str, which: str = "latest"
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
  """Like ``checkpoint.load_model_variables``, but a multi-head student's zoo-model variables only
  (its per-teacher heads dropped): what initialises or probes the backbone elsewhere."""
  variables, meta = ckpt_lib.load_model_variables(workdir, which)
  return backbone_variables(variables, meta.get("heads")), meta

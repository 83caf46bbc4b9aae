"""The model zoo. Every model is a Flax module whose ``__call__(x, train)`` returns
``(logits, features)``; ``features`` is a dict of named intermediate activations
(CNNs: maps [B, H, W, C] ``stem``, ``stage<k>``, ``preact/stage<k>``; ViTs: tokens
[B, T, D] ``stem``, ``block<k>``, ``stage<k>``, ``tokens``; both ``pooled`` [B, D]).
Unused features cost nothing under jit (XLA drops them)."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from kd_jax.errors import KdJaxError
from kd_jax.models import mobilenetv2, resnet_cifar, resnet_imagenet, shufflenet, vgg, vit, wrn

_REGISTRY: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    **{name: (resnet_cifar.CifarResNet, kw) for name, kw in resnet_cifar.MODELS.items()},
    **{name: (resnet_imagenet.ImageNetResNet, kw) for name, kw in resnet_imagenet.MODELS.items()},
    **{name: (wrn.WideResNet, kw) for name, kw in wrn.MODELS.items()},
    **{name: (vgg.VGG, kw) for name, kw in vgg.MODELS.items()},
    **{name: (mobilenetv2.MobileNetV2, kw) for name, kw in mobilenetv2.MODELS.items()},
    **{name: (shufflenet.ShuffleNetV1, kw) for name, kw in shufflenet.MODELS_V1.items()},
    **{name: (shufflenet.ShuffleNetV2, kw) for name, kw in shufflenet.MODELS_V2.items()},
    **{name: (vit.VisionTransformer, kw) for name, kw in vit.MODELS.items()},
}


def names() -> list[str]:
  """The registered model names."""
  return sorted(_REGISTRY)


def create(name: str, num_classes: int, dtype: Any = jnp.float32, **kw) -> nn.Module:
  """The zoo model ``name`` with a ``num_classes``-way classifier."""
  if name not in _REGISTRY:
    raise KdJaxError(f"unknown model {name!r}; valid names: {', '.join(names())}")
  cls, defaults = _REGISTRY[name]
  return cls(num_classes=num_classes, dtype=dtype, **{**defaults, **kw})


def run_once_options() -> dict[str, Any] | None:
  """XLA compiler options for a program that runs once (an initialisation): on the CPU, the
  backend's optimisations off (they cost seconds of compilation, 3-5x the compile time of a
  zoo model's initialisation, and save microseconds of its run); elsewhere none."""
  if jax.default_backend() != "cpu":
    return None
  return {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def init(model: nn.Module, rng: jax.Array, input_shape: tuple[int, ...]) -> dict[str, Any]:
  """``model``'s variables for inputs of ``input_shape`` (one example, ``(H, W, C)``): one
  compiled program (``run_once_options``), not one per operation."""
  x = jnp.zeros((1, *input_shape), jnp.float32)
  return jax.jit(lambda k: model.init(k, x, train=False),
                 compiler_options=run_once_options())(rng)


_HEADS: dict[type, type] = {}


def has_head(model: nn.Module) -> bool:
  """Whether ``model`` defines ``head``: its layers after the last stage (every zoo model)."""
  return callable(getattr(type(model), "head", None))


def apply_head(model: nn.Module, variables: Mapping[str, Any], x: jax.Array) -> jax.Array:
  """Logits [B, K] of ``model``'s layers after its last stage (``model.head``, inference
  mode) on ``x``, a map shaped like its last-stage feature [B, H, W, C] (any H, W: the head
  pools globally); ``variables``: the whole model's (only the head's are read)."""
  cls = type(model)
  if not has_head(model):
    raise KdJaxError(f"a {cls.__name__} has no head (the layers after its last stage)")
  if cls not in _HEADS:  # The same fields and parameter names, the head as its __call__.
    _HEADS[cls] = type(f"{cls.__name__}Head", (cls,), {
        "__call__": nn.compact(lambda self, x: self.head(x, False)[0]),
        "__module__": cls.__module__})
  fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
            if f.init and f.name not in ("parent", "name")}
  return _HEADS[cls](**fields).apply(variables, x)


# The top-level name of each family's final Linear layer (the classifier, after ``pooled``;
# a distilled ViT has two).
CLASSIFIER_NAMES = ("fc", "classifier", "linear", "head", "head_dist")


def is_classifier(top_level_name: str) -> bool:
  """Whether a model's top-level parameter collection is its classifier (RepDistiller's
  ``get_feat_modules()`` is every module but this one)."""
  return top_level_name in CLASSIFIER_NAMES


# PyTorch checkpoints of zoo models -> Flax variables (torch itself is not imported).
from kd_jax.models.torch_import import from_torch, load_torch_file  # noqa: E402,F401

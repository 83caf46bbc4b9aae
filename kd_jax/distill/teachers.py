"""The teachers as the step sees them: which ones a set of objectives reads, their output
shapes, and their outputs for a batch (each teacher run once, or read from the batch where
``kd_jax.training.teacher_cache`` put its cached outputs), and loading them (``load``)."""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from kd_jax import checkpoint as ckpt_lib
from kd_jax.errors import KdJaxError
from kd_jax.methods import Outputs


def used(objectives: Sequence[Any], main_phase_only: bool = True) -> list[str]:
  """The teachers the objectives read, sorted; by default only those of the objectives that
  act in the main phase (the train step's)."""
  return sorted({t for o in objectives if o.main_phase or not main_phase_only
                 for t in o.teachers})


def output_shapes(modules: Mapping[str, nn.Module], variables: Mapping[str, Any],
                  x: jax.ShapeDtypeStruct) -> dict[str, Outputs]:
  """``{teacher: Outputs of ShapeDtypeStructs}`` for an input of ``x``'s shape (nothing run)."""
  return {n: Outputs(*jax.eval_shape(lambda x, n=n: m.apply(variables[n], x, train=False), x))
          for n, m in modules.items()}


def cached_key(teacher: str, output: str) -> str:
  """The batch entry that holds a cached ``output`` ('logits' or a feature) of ``teacher``."""
  return f"teacher/{teacher}/{output}"


def _from_batch(name: str, shapes: Outputs, batch) -> Outputs:
  """A teacher's outputs read from the batch; outputs the step does not read are not cached
  and stand in as zeros (XLA drops them)."""
  b = batch["image"].shape[0]

  def get(output, shape):
    key = cached_key(name, output)
    if key in batch:
      return batch[key].astype(shape.dtype)
    return jnp.zeros((b, *shape.shape[1:]), shape.dtype)

  return Outputs(get("logits", shapes.logits), {k: get(k, v) for k, v in shapes.features.items()})


def run(modules: Mapping[str, nn.Module], variables: Mapping[str, Any], names: Sequence[str],
        batch: Mapping[str, jax.Array],
        cached: Mapping[str, Outputs] | None = None) -> dict[str, Outputs]:
  """``{teacher: Outputs}`` for the batch, without gradient: each of ``names`` runs exactly
  once in inference mode, or, where ``cached`` holds its output shapes, is read from the
  batch (``cached_key``)."""
  out = {}
  for name in names:
    if cached and name in cached:
      outputs = _from_batch(name, cached[name], batch)
    else:
      outputs = Outputs(*modules[name].apply(variables[name], batch["image"], train=False))
    out[name] = jax.lax.stop_gradient(outputs)
  return out


def load(plans: Mapping[str, Any], input_shape: tuple[int, ...], dtype: Any = jnp.float32,
         metas: dict | None = None, variable_shapes: Mapping[str, Any] | None = None
         ) -> dict[str, tuple[nn.Module, Any]]:
  """``{name: (module, variables)}`` for a run's teachers (``plan.TeacherPlan``s): each
  teacher's module and frozen variables, read from a kd_jax run (trained, converted from
  PyTorch by ``kd_jax.convert``, or a consolidated multi-head student, whose ``head`` is read
  as logits), checked against the model for ``input_shape`` (its variables' shapes: traced,
  or ``variable_shapes[name]`` where the plan traced them); into ``metas``, where each came
  from."""
  out = {}
  for name, t in plans.items():
    variables, meta = ckpt_lib.load_model_variables(t.path, t.which)
    if metas is not None:
      metas[name] = {"model": t.model, "checkpoint": os.path.abspath(t.path),
                     "which": t.which, "step": meta.get("step")}
    if meta.get("model") not in (None, t.model):
      raise KdJaxError(f"config.teachers.{name}.model is {t.model!r} but {t.path} holds a "
                       f"{meta['model']!r}")
    if dict(meta.get("heads") or {}) != dict(t.heads):  # A run's plan said other heads.
      raise KdJaxError(f"config.teachers.{name}: {t.path} holds a student with heads "
                       f"{dict(meta.get('heads') or {})}, planned with {dict(t.heads)}")
    module = t.module(dtype)
    expected = (variable_shapes or {}).get(name) or jax.eval_shape(
        lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape)), train=False))
    variables = as_module_variables(t, variables)
    check_fit(t, variables, expected, input_shape)
    out[name] = (module, variables)
  return out


def as_module_variables(t: Any, variables: Mapping[str, Any]) -> dict[str, Any]:
  """A teacher checkpoint's model variables (arrays or ShapeDtypeStructs) as its module
  (``plan.TeacherPlan.module``) takes them; empty collections (a ViT's batch_stats) dropped."""
  if t.head:  # HeadAsLogits nests the student's variables one level down.
    variables = {k: {"student": v} for k, v in variables.items()}
  return {k: v for k, v in variables.items() if jax.tree.leaves(v)}


def check_fit(t: Any, variables: Mapping[str, Any], expected: Mapping[str, Any],
              input_shape: Sequence[int]) -> None:
  """Refuses, in one line, a teacher's variables (``as_module_variables``) that are not the
  shapes of its module's ``expected`` ones for ``input_shape`` (another model, other
  classes, images of another size or channels)."""
  shape = lambda x: tuple(x.shape)
  got = jax.tree.map(shape, dict(variables))
  want = jax.tree.map(shape, {k: v for k, v in dict(expected).items() if jax.tree.leaves(v)})
  if got != want:
    size = "x".join(str(d) for d in input_shape)
    raise KdJaxError(f"config.teachers.{t.name}: the variables in {t.path} do not fit a "
                     f"{t.model} with {t.num_classes} classes on {size} images")

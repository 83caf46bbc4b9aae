"""The objectives' adapters and state, built from the shapes of the outputs they read, and
every objective traced on those shapes before anything runs (``kd_jax.plan`` checks a run
with them; ``training.build`` creates the train state with them): a loss that cannot take
the maps it reads fails in one line naming the objective."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from kd_jax import models
from kd_jax.distill.features import feature_names
from kd_jax.distill.objectives import Objective, Outputs, view_makers
from kd_jax.errors import KdJaxError


def init(objectives: Sequence[Objective], student: Outputs,
                  teachers: Mapping[str, Outputs], rng: jax.Array, index_size: int,
                  teacher_variables: Mapping[str, Any], teacher_modules: Mapping[str, Any],
                  batch: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """``(adapter params, objectives' state)`` built from outputs of the given shapes (zeros
  stand in for them), every objective then traced on them and ``batch`` (one-line errors)."""
  zeros = lambda tree: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), tree)
  s_out = Outputs(*zeros(tuple(student)))
  t_out = {n: Outputs(*zeros(tuple(o))) for n, o in teachers.items()}
  batch = zeros(dict(batch))
  params, state = create(objectives, s_out, t_out, rng, index_size)
  check_shapes(objectives, s_out, t_out, params, state, batch,
                              teacher_variables, teacher_modules)
  return params, state


def create(objectives: Sequence[Objective], student: Outputs, teachers: Mapping[str, Outputs],
             rng: jax.Array, num_data: int) -> tuple[dict[str, Any], dict[str, Any]]:
  """``(adapter params, objective state)``, ``{objective name: ...}`` for the objectives that have a
  adapter or state, from example outputs (any batch size). Raises a one-line KdJaxError when
  an objective cannot use the shapes it reads (e.g. a connector that cannot bridge them)."""
  params, state = {}, {}
  for i, obj in enumerate(objectives):
    s_maps, t_maps = obj.select(student, teachers)
    k_adapter, k_state = jax.random.split(jax.random.fold_in(rng, i))
    try:
      adapter = obj.method.adapter()
      if adapter is not None:
        variables = adapter.init(k_adapter, s_maps, t_maps, False)
        if variables.get("params"):  # An identity adapter (e.g. AB on equal shapes) has none.
          params[obj.name] = variables["params"]
        if variables.get("batch_stats"):
          state.setdefault(obj.name, {})["batch_stats"] = variables["batch_stats"]
      extra = obj.method.init_state(k_state, num_data)
      if extra:
        state.setdefault(obj.name, {}).update(extra)
    except (ValueError, TypeError) as err:
      raise _shape_error(obj, s_maps, t_maps, err) from None
  return params, state


def check_shapes(objectives: Sequence[Objective], student: Outputs,
                 teachers: Mapping[str, Outputs], adapter_params, state, batch,
                 teacher_variables: Any = None,
                 teacher_modules: Mapping[str, Any] | None = None) -> None:
  """Traces every objective on example outputs (no computation), in each phase it acts in:
  a loss that cannot take the shapes it reads (e.g. FSP's unequal channel counts) fails
  here, in one line. Other views of the batch have the batch's shapes."""
  views = {v: (student, teachers) for v in view_makers(objectives)}
  for obj in objectives:
    s_maps, t_maps = obj.select(student, teachers)
    phases = ([False] if obj.main_phase else []) + ([True] if obj.init_epochs else [])
    for phase in phases:
      try:
        jax.eval_shape(
            lambda p, st, tv: obj(student, teachers, batch, epoch=1.0,
                                  rng=jax.random.PRNGKey(0), adapter_params=p, state=st,
                                  phase=phase, teacher_variables=tv,
                                  teacher_modules=teacher_modules, views=views)[0],
            adapter_params.get(obj.name), state.get(obj.name), teacher_variables)
      except (ValueError, TypeError) as err:
        raise _shape_error(obj, s_maps, t_maps, err) from None


def check_teacher_heads(objectives: Sequence[Objective], teachers: Mapping[str, Outputs],
                        teacher_modules: Mapping[str, Any]) -> None:
  """One-line errors for a method that reads its teacher's head (``uses_teacher_head``) where
  the teacher's model has none, or where its teacher feature is not the map the head
  continues (the last stage). teachers: their outputs' shapes."""
  for obj in objectives:
    if obj.method.uses_teacher_head:
      _check_teacher_head(obj, teachers, teacher_modules)


def is_token_model(out: Outputs) -> bool:
  """Whether these outputs are a vision transformer's: its features are tokens [B, T, D]."""
  stem = out.features.get("stem")
  return stem is not None and len(stem.shape) == 3


def check_feature_kinds(objectives: Sequence[Objective], student: Outputs,
                        teachers: Mapping[str, Outputs], student_model: str,
                        teacher_models: Mapping[str, str]) -> None:
  """One line for a method whose features must be CNN maps or ViT tokens on both sides
  (``Method.feature_kind``) where a side has the other kind; student/teachers: their
  outputs' shapes."""
  for obj in objectives:
    kind = obj.method.feature_kind
    if kind is None:
      continue
    sides = [("student", student_model, student)] + [
        (f"teacher {n!r}", teacher_models[n], teachers[n]) for n in obj.teachers]
    for side, model, out in sides:
      if kind == "maps" and is_token_model(out):
        raise KdJaxError(
            f"config.objectives.{obj.name}: loss {obj.loss!r} compares spatial maps [B, H, W, "
            f"C] on both sides, but the {side} {model} is a vision transformer (tokens [B, T, "
            f"D]); with a ViT use a logit method (kd, dkd, deit, ...), fitnet, or a method on "
            f"pooled features (crd, rkd, pkt, cc, sp)")
      if kind == "tokens" and not is_token_model(out):
        raise KdJaxError(
            f"config.objectives.{obj.name}: loss {obj.loss!r} reads a vision transformer's "
            f"tokens [B, T, D] on both sides, but the {side} {model} is not a ViT")


def check_distillation_head(objectives: Sequence[Objective], student: Outputs,
                            student_model: str) -> None:
  """One line for a distilled ViT student (a distillation token and head: ``logits/dist``)
  that no objective trains through that head: its inference logits average both heads."""
  if "logits/dist" not in student.features:
    return
  for obj in objectives:
    spec = obj.student_feature
    names = (spec,) if isinstance(spec, str) else tuple(spec or ())
    if "logits/dist" in names and obj.weight > 0:
      return
  raise KdJaxError(
      f"config.model: {student_model} has a distillation token and head that only an "
      f"objective reading its logits/dist trains (objectives.deit), and its inference logits "
      f"average both heads; add objectives.deit or train "
      f"{student_model.replace('_distilled', '')}")


def _check_teacher_head(obj: Objective, teachers: Mapping[str, Outputs],
                        teacher_modules: Mapping[str, Any]) -> None:
  where = f"config.objectives.{obj.name}"
  if not isinstance(obj.teacher, str):
    raise KdJaxError(f"{where}: loss {obj.loss!r} reads one teacher's head (its layers after "
                     f"the last stage); the step has none to give")
  if not models.has_head(teacher_modules[obj.teacher]):
    raise KdJaxError(f"{where}: loss {obj.loss!r} reads the layers after the last stage of "
                     f"teacher {obj.teacher!r}, but its model "
                     f"({type(teacher_modules[obj.teacher]).__name__}) does not define them "
                     f"(a zoo model does; a consolidated student read through one head does not)")
  features = teachers[obj.teacher].features
  names = feature_names(features, obj.teacher_feature, f"{where}.teacher_feature")
  last = feature_names(features, "last_stage", f"{where}.teacher_feature")
  if names != last:
    raise KdJaxError(f"{where}.teacher_feature: loss {obj.loss!r} continues the teacher's map "
                     f"through its remaining layers, which start after its last stage "
                     f"({last[0]}); got {', '.join(names)}")


def _shape_error(obj, s_maps, t_maps, err) -> KdJaxError:
  shapes = lambda maps: ", ".join(str(tuple(m.shape[1:])) for m in maps or [])
  msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
  return KdJaxError(f"config.objectives.{obj.name}: loss {obj.loss!r} cannot compare student "
                    f"features [{shapes(s_maps)}] with teacher features [{shapes(t_maps)}]: "
                    f"{msg}")

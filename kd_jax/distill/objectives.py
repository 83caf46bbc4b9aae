"""An objective at run time: a configured method (``kd_jax.distill.parsing`` builds them),
the outputs it reads in the step and the loss it returns.

The step evaluates every objective on the one student forward pass and the one forward pass
of each teacher, and minimises ``sum(weight * loss)``. A logit loss reading one teacher for
which the student has a head (``config.student_heads``) reads that head instead of the
student's classifier, so each teacher's loss reaches its own head (and the shared backbone)
only.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from kd_jax import methods, models
from kd_jax.distill import host_inputs
from kd_jax.distill.features import head_feature, select_features
from kd_jax.errors import KdJaxError
from kd_jax.methods import Context, Method, Outputs


@dataclasses.dataclass(frozen=True)
class Objective:
  """One configured objective: its method (the hyperparameters, defaults filled in), weight,
  teacher(s), feature selection and initialisation phase."""
  name: str
  method: Method
  weight: float
  teacher: str | tuple[str, ...] | None
  given: frozenset = frozenset()   # The hyperparameters the config set.
  student_feature: str | tuple[str, ...] | None = None
  teacher_feature: str | tuple[str, ...] | None = None
  init_epochs: int = 0             # Epochs of its initialisation phase (0: none).
  init_lr: float | None = None     # The phase's learning rate (None: the reference's).
  main_phase: bool = True          # False: it acts only through its phase (AB, FSP).
  view: str = ""                   # The view it reads ("": the batch; else a method's view).

  @property
  def loss(self) -> str:
    """The method's registered name."""
    return self.method.name

  @property
  def reads(self):
    return self.method.reads

  @property
  def teachers(self) -> tuple[str, ...]:
    """The teachers it reads, in order."""
    if self.teacher is None:
      return ()
    return (self.teacher,) if isinstance(self.teacher, str) else tuple(self.teacher)

  def teacher_outputs(self, teachers: Mapping[str, Outputs]) -> Outputs | None:
    """Its teacher's outputs; for several teachers their logits concatenated in order and
    their features as ``<teacher>/<feature>``."""
    if self.teacher is None:
      return None
    if isinstance(self.teacher, str):
      return teachers[self.teacher]
    outs = [teachers[n] for n in self.teacher]
    return Outputs(jnp.concatenate([o.logits for o in outs], axis=-1),
                   {f"{n}/{k}": v for n, o in zip(self.teacher, outs)
                    for k, v in o.features.items()})

  def route(self, student: Outputs) -> Outputs:
    """The student's outputs as this objective sees them: a logit loss of one teacher for
    which the student has a head reads that head's logits."""
    if self.reads in (None, "logits") and isinstance(self.teacher, str):
      head = student.features.get(head_feature(self.teacher))
      if head is not None:
        return Outputs(head, student.features)
    return student

  def select(self, student: Outputs, teachers: Mapping[str, Outputs]):
    """The student's and the teachers' maps this objective reads (lists; with several
    teachers, each teacher's maps in turn), or (None, None)."""
    if self.reads is None:
      return None, None
    where = f"config.objectives.{self.name}"
    with_logits = lambda out: {**out.features, "logits": out.logits}
    t_maps = [m for n in self.teachers
              for m in select_features(with_logits(teachers[n]), self.teacher_feature,
                                       f"{where}.teacher_feature")]
    return (select_features(with_logits(student), self.student_feature,
                            f"{where}.student_feature"), t_maps)

  def __call__(self, student: Outputs, teachers: Mapping[str, Outputs], batch, *,
               epoch: jax.Array | None = None, rng: jax.Array | None = None,
               adapter_params: Any = None, state: Mapping[str, Any] | None = None,
               train: bool = True, phase: bool = False, teacher_variables: Any = None,
               teacher_modules: Mapping[str, Any] | None = None,
               views: Mapping[str, tuple[Outputs, Mapping[str, Outputs]]] | None = None
               ) -> tuple[jax.Array, Mapping[str, Any] | None]:
    """``(loss, new state)`` on this batch. epoch: the current epoch counted from 1 (DKD's
    warm-up); adapter_params / state: this objective's adapter parameters and state
    (``adapters.create``); phase: the loss of its initialisation phase instead of the
    main one; teacher_variables and teacher_modules: ``{teacher: variables / module}`` (the
    frozen teachers, for methods that read their variables or their head); views: ``{view:
    (student outputs, {teacher: outputs})}`` of the other views of the batch."""
    teacher = self.teacher_outputs(teachers)
    student = self.route(student)
    s_maps, t_maps = self.select(student, teachers)
    new_state = dict(state) if state is not None else None
    adapter = self.method.adapter()
    if adapter is not None:
      variables = {"params": adapter_params or {}}
      if state and "batch_stats" in state:
        variables["batch_stats"] = state["batch_stats"]
      kwargs = {"phase": phase} if _takes_phase(adapter) else {}
      rngs = {"adapter": rng} if rng is not None else {}  # ViTKD's masking draws from it.
      (s_maps, t_maps), updates = adapter.apply(variables, s_maps, t_maps, train,
                                                mutable=["batch_stats"], rngs=rngs, **kwargs)
      if "batch_stats" in updates:
        new_state["batch_stats"] = updates["batch_stats"]
    own_teachers = ({n: teacher_variables[n] for n in self.teachers} if teacher_variables
                    else None)
    head = None
    if self.method.uses_teacher_head:
      if not (teacher_modules and own_teachers):
        raise KdJaxError(f"config.objectives.{self.name}: loss {self.loss!r} reads its "
                         f"teacher's head: the call needs teacher_variables and "
                         f"teacher_modules")
      head = functools.partial(models.apply_head, teacher_modules[self.teacher],
                               own_teachers[self.teacher])
    ctx = Context(s_maps=s_maps, t_maps=t_maps, student=student, teacher=teacher, batch=batch,
                  epoch=epoch, rng=rng, state=state, teacher_params=own_teachers,
                  host=host_inputs.of(self.name, batch), teacher_head=head,
                  views={v: (self.route(s), self.teacher_outputs(t))
                         for v, (s, t) in (views or {}).items()})
    out = self.method.phase_loss(ctx) if phase else self.method.loss(ctx)
    if isinstance(out, tuple):
      out, extra = out
      new_state = {**(new_state or {}), **extra}
    return out, new_state


def _takes_phase(adapter) -> bool:
  return "phase" in inspect.signature(type(adapter).__call__).parameters


def transform_batch(objectives: Sequence[Objective], batch: Mapping[str, jax.Array],
                    rng: jax.Array) -> Mapping[str, jax.Array]:
  """The batch every network of the step reads: the loader's, changed by the one objective
  whose method changes it (``Method.transform_batch``), if any."""
  for obj in objectives:
    if methods.transforms_batch(obj.method):
      return obj.method.transform_batch(batch, rng)
  return batch


def view_makers(objectives: Sequence[Objective]) -> dict[str, Objective]:
  """``{view: the objective whose method makes it}`` (the first, where several do)."""
  makers: dict[str, Objective] = {}
  for obj in objectives:
    for view in obj.method.views:
      makers.setdefault(view, obj)
  return makers


def check_views(objectives: Sequence[Objective], augment: Any) -> None:
  """One-line errors, at plan time, for views that cannot be had: an objective reading a view
  no objective makes, a view its method cannot make from this data (``augment``: the data's
  device augmentation, None where the host augments), views beside a changed batch, a view
  read or made by a method with an initialisation phase (its phase steps make none)."""
  makers = view_makers(objectives)
  for obj in objectives:
    if (obj.view or obj.method.views) and obj.init_epochs > 0:
      raise KdJaxError(f"config.objectives.{obj.name}: {obj.name} has an initialisation "
                       f"phase (init_epochs={obj.init_epochs}), whose steps read the loader's "
                       f"batch alone; it cannot read or make another view ({obj.view or ', '.join(obj.method.views)})")
    if obj.view and obj.view not in makers:
      raise KdJaxError(f"config.objectives.{obj.name}.view: no objective makes a view "
                       f"{obj.view!r} (views made: {', '.join(sorted(makers)) or 'none'})")
  changing = [o.name for o in objectives if methods.transforms_batch(o.method)]
  for view, obj in makers.items():
    try:
      obj.method.check_view(view, augment)
    except ValueError as err:
      raise KdJaxError(f"config.objectives.{obj.name}: {err}") from None
    if changing:
      raise KdJaxError(f"config.objectives.{obj.name}: its view {view!r} is made from the "
                       f"loader's batch, which {changing[0]} changes (transform_batch); a run "
                       f"can have one of them")


def make_views(objectives: Sequence[Objective], batch: Mapping[str, jax.Array], rng: jax.Array,
               augment: Any) -> dict[str, Mapping[str, jax.Array]]:
  """``{view: batch}``: each view the objectives' methods make, from the loader's ``batch``
  (a key of its own for each)."""
  return {view: obj.method.make_view(view, batch, jax.random.fold_in(rng, i), augment)
          for i, (view, obj) in enumerate(sorted(view_makers(objectives).items()))}

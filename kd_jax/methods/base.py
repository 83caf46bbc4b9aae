"""The method API: what a distillation method is, and the registry that names it.

A method is a frozen dataclass whose fields are its hyperparameters, with the reference's
defaults (the only place they are written), registered under the name a config uses::

    @methods.register("kd")
    class KD(methods.Method):
      temperature: float = 4.0
      multi_teacher: ClassVar[bool] = True
      ranges: ClassVar = {"temperature": methods.POSITIVE}

      def loss(self, ctx):
        return losses.kd(ctx.student.logits, ctx.teacher.logits, temperature=self.temperature)

A config entry ``objectives.kd=dict(weight=0.9, temperature=2)`` builds ``KD(temperature=2)``
(``temperature=-2`` is refused at plan time: ``ranges``). The class says what the method
reads (``reads``: a feature name or token, None for logits), whether it needs a teacher,
labels, the teacher's head or the example index, the values each hyperparameter takes
(``ranges``), its learnable adapter (``adapter``: a Flax module over the selected maps), its
state (``init_state``: e.g. CRD's memory), inputs drawn on the host for each batch
(``host_sampler``: e.g. CRD's other-class negatives), the view of the batch all networks read
(``transform_batch``: function matching's mixup), other views of the batch that the student
and the teachers also read (``views`` and ``make_view``: MLKD's strong augmentation) and its
initialisation phase (``phase`` and ``phase_loss``). A module outside kd_jax registers its
methods the same way and is named in ``config.method_modules`` (kd_jax imports it first).
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, Protocol, Sequence

import flax.linen as nn
import jax
import numpy as np

# ``Phase.trains`` entries: every adapter parameter of the method, and every student
# parameter but the classifier.
ALL_ADAPTERS = "*"
STUDENT_FEATURES = "student_features"


@dataclasses.dataclass(frozen=True)
class Range:
  """Where a hyperparameter's value lies (each element, for a tuple): ``low`` (excluded if
  ``low_open``) to ``high`` (included; None: no bound). ``Method.ranges`` names them; a
  config's value outside is refused at plan time in one line."""
  low: float | None = None
  high: float | None = None
  low_open: bool = False

  def __contains__(self, value: Any) -> bool:
    if isinstance(value, (tuple, list)):
      return all(v in self for v in value)
    if value != value:  # NaN: in no range.
      return False
    if self.low is not None and (value <= self.low if self.low_open else value < self.low):
      return False
    return self.high is None or value <= self.high

  def __str__(self) -> str:
    low = f"{'>' if self.low_open else '>='} {self.low:g}" if self.low is not None else ""
    if self.high is None:
      return low
    if self.low is None:
      return f"<= {self.high:g}"
    return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"


POSITIVE = Range(0.0, low_open=True)
NON_NEGATIVE = Range(0.0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0.0, 1.0)  # [0, 1]


class Outputs(NamedTuple):
  """One network's outputs for a batch: logits [B, C] and named features."""
  logits: jax.Array
  features: Mapping[str, jax.Array]


class Context(NamedTuple):
  """What a method's loss reads in the step.

  s_maps/t_maps: the maps it selects (``reads``), after its adapter if it has one (with
  several teachers, each teacher's maps in turn); student/teacher: the full outputs (for
  several teachers, their logits concatenated); batch: image, label, index, label_mask...;
  epoch: the current epoch counted from 1 (None in a phase); rng: a key for this loss;
  state: the method's state (``init_state``, BatchNorm statistics of its adapter);
  teacher_params: ``{teacher: variables}`` of its frozen teachers, in order; host: the
  arrays its ``host_sampler`` drew for this batch (``{}`` without one); teacher_head: for a
  method with ``uses_teacher_head``, its teacher's layers after the last stage in inference
  mode, a map shaped like the teacher's ``last_stage`` [B, H, W, C] (any H, W) -> logits
  [B, K] (the frozen variables bound; gradients flow to the input only)."""
  s_maps: list | None
  t_maps: list | None
  student: Outputs
  teacher: Outputs | None
  batch: Mapping[str, jax.Array]
  epoch: jax.Array | None
  rng: jax.Array | None
  state: Mapping[str, Any] | None
  teacher_params: Mapping[str, Any] | None = None
  host: Mapping[str, jax.Array] = {}
  teacher_head: Callable[[jax.Array], jax.Array] | None = None
  views: Mapping[str, tuple[Outputs, Outputs | None]] = {}


class TrainSplit:
  """What a ``host_sampler`` may know of the train split, built once at start-up.

  num_data: the example index's range; labeled: whether the training data has labels at
  all (False for unlabelled proxy data); ``labels()``: int32 [num_data], the label of the
  example with each index, -1 where none is known (no such example, a class left out, or
  an example whose label is not used with ``labeled_fraction`` < 1), read on first use in
  one pass over the whole split (every process reads all of it; images are not decoded)."""

  def __init__(self, num_data: int, labeled: bool,
               read_labels: Callable[[], np.ndarray] | None = None):
    self.num_data, self.labeled = num_data, labeled
    self._read, self._labels = read_labels, None

  def labels(self) -> np.ndarray:
    if not self.labeled or self._read is None:
      raise ValueError("the training data has no labels")
    if self._labels is None:
      self._labels = np.asarray(self._read(), np.int32)
    return self._labels


class HostSampler(Protocol):
  """Inputs of a loss drawn on the host (numpy) for each local batch."""

  def specs(self, batch_size: int) -> Mapping[str, jax.ShapeDtypeStruct]:
    """``{name: shape and dtype}`` of what it draws for ``batch_size`` examples."""

  def __call__(self, batch: Mapping[str, np.ndarray],
               rng: np.random.Generator) -> Mapping[str, np.ndarray]:
    """``{name: array [B, ...]}`` for this process's batch (numpy: index, label, ...);
    ``rng`` is this step's and this process's generator (the same on a resume)."""


@dataclasses.dataclass(frozen=True)
class Phase:
  """An initialisation phase, run before the main one (RepDistiller's FT, AB and FSP).

  loss: what it minimises, in words (the log says it). trains: what it optimises: adapter
  sub-modules by name, ``ALL_ADAPTERS``, and/or ``STUDENT_FEATURES``. frozen_after: the
  adapter parts it trains are frozen in the main phase (FT's paraphraser): the phase
  cannot be skipped. in_main: the method's loss also acts in the main phase (AB and FSP
  act only through their phase). epochs, lr: the reference's length and learning rate
  (None: the main phase's). During a phase the student runs in inference mode, as in the
  reference (BatchNorm running statistics, not updated).
  """
  loss: str
  trains: tuple[str, ...]
  frozen_after: bool = False
  in_main: bool = True
  epochs: int = 30
  lr: float | None = None


class Method:
  """Base class of a method; subclasses are made frozen dataclasses by ``register``."""

  name: ClassVar[str] = ""
  needs_teacher: ClassVar[bool] = True
  needs_labels: ClassVar[bool] = False
  partial_labels: ClassVar[bool] = False  # Takes batches where only some labels are known.
  multi_teacher: ClassVar[bool] = False   # ``teacher`` may list several teachers.
  # Reads its teacher's layers after the last stage (``ctx.teacher_head``); its teacher
  # side then reads that last stage, which the head continues.
  uses_teacher_head: ClassVar[bool] = False
  # Default feature selection: a feature name, a token (``stages``, ``preact_stages``,
  # ``last_stage``, ``before_last_stage``, ``stem_and_stages``, ``pooled``) or a tuple of
  # them; None: logits only. teacher_reads: the teacher side's, where it differs.
  reads: ClassVar[str | tuple[str, ...] | None] = None
  teacher_reads: ClassVar[str | tuple[str, ...] | None] = None
  # What both sides' features must be: "maps" (a CNN's [B, H, W, C]: attention maps, channel
  # statistics over positions, convolutional adapters), "tokens" (a ViT's [B, T, D]) or None
  # (either); another side is refused at plan time in one line.
  feature_kind: ClassVar[str | None] = None
  phase: ClassVar[Phase | None] = None
  # Other views of the batch this method makes (``make_view``): the student (in training
  # mode) and its teachers also run on each, once per step; ``ctx.views`` holds their outputs.
  views: ClassVar[tuple[str, ...]] = ()
  # ``{hyperparameter: Range}``: the values it takes (e.g. ``{"temperature": POSITIVE}``);
  # a value outside is refused when the method is built (a config's: at plan time). Finer
  # checks: ``__post_init__`` raising ValueError (calling ``super().__post_init__()``).
  ranges: ClassVar[Mapping[str, Range]] = {}

  def __post_init__(self):
    check_ranges(self)

  def adapter(self) -> nn.Module | None:
    """The learnable module, or None: ``__call__(s_maps, t_maps, train[, phase])`` ->
    ``(s_maps, t_maps)`` as the loss reads them; built from the maps' shapes at start-up,
    trained with the student; a ``phase`` argument, if it declares one, is True in the
    initialisation phase. In the step it may draw random numbers from the 'adapter' rng
    (``self.make_rng('adapter')``; absent at initialisation: ``self.has_rng``)."""
    return None

  def init_state(self, rng: jax.Array, num_data: int) -> Mapping[str, Any]:
    """Non-trainable state carried in the train state (e.g. CRD's memory); num_data: the
    size of the train split (the example index's range)."""
    return {}

  def host_sampler(self, split: TrainSplit) -> HostSampler | None:
    """What this method draws on the host for each batch (``ctx.host`` in the loss), or
    None; called once at start-up. A ValueError refuses the configuration (one line)."""
    return None

  def transform_batch(self, batch: Mapping[str, jax.Array], rng: jax.Array
                      ) -> Mapping[str, jax.Array]:
    """The batch that every network of the step reads instead of the loader's (e.g. function
    matching's mixup): applied once per step inside the jitted step, before the teachers
    and the student run, so they all read the same view (the global batch; ``rng`` is the
    step's). Default: unchanged. One objective of a run at most may change the batch, and
    a teacher cache is refused beside it."""
    return batch

  def make_view(self, view: str, batch: Mapping[str, jax.Array], rng: jax.Array,
                augment: Any) -> Mapping[str, jax.Array]:
    """View ``view`` (one of ``views``) of the loader's batch, inside the jitted step:
    ``batch`` as the loader gives it (the global batch; uint8 images where the data is
    augmented on the device, ``augment`` then being its ``device_augment.Spec``, else
    None and the images the host's); returns the batch with the view's float32 images. A
    ValueError (e.g. for host-augmented data) refuses the run at plan time."""
    raise NotImplementedError(f"method {self.name!r} makes no view {view!r}")

  def check_view(self, view: str, augment: Any) -> None:
    """Raises ValueError (one line) if ``view`` cannot be made from batches whose device
    augmentation is ``augment`` (None: augmented on the host); called at plan time."""

  def loss(self, ctx: Context) -> jax.Array | tuple[jax.Array, Mapping[str, Any]]:
    """The scalar loss of the main phase, or ``(loss, new state entries)``."""
    raise NotImplementedError(f"method {self.name!r} defines no loss")

  def phase_loss(self, ctx: Context) -> jax.Array | tuple[jax.Array, Mapping[str, Any]]:
    """The loss of the initialisation phase (default: the main loss)."""
    return self.loss(ctx)

  def phase_lr(self, student: str, main_lr: float) -> float:
    """The phase's learning rate for ``student`` (a model name), given the main one."""
    return main_lr if self.phase.lr is None else self.phase.lr

  @property
  def frozen(self) -> tuple[str, ...]:
    """Adapter sub-modules that are not optimised in the main phase."""
    p = self.phase
    return tuple(t for t in p.trains if t != STUDENT_FEATURES) if p and p.frozen_after else ()

  @classmethod
  def hparams(cls) -> dict[str, Any]:
    """``{name: default}`` of the hyperparameters, in declaration order."""
    return {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
            for f in dataclasses.fields(cls)}


def check_ranges(method: Method) -> None:
  """Raises ValueError (one line) for the first hyperparameter outside its ``ranges`` (a
  traced value, of a method built inside a jitted function, is not checked)."""
  for name, allowed in type(method).ranges.items():
    value = getattr(method, name)
    if any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(value)):
      continue
    if value not in allowed:
      each = " (each)" if isinstance(value, (tuple, list)) else ""
      raise ValueError(f"{name} must be {allowed}{each}, got {value!r}")


def transforms_batch(method: Method) -> bool:
  """Whether ``method`` changes the batch the networks read (overrides ``transform_batch``)."""
  return type(method).transform_batch is not Method.transform_batch


def sum_over_layers(fn, s_maps: Sequence[jax.Array], t_maps: Sequence[jax.Array],
                    **hparams) -> jax.Array:
  """``sum_i fn(s_i, t_i, **hparams)`` over the selected layers, zipped as RepDistiller
  zips them (with unequal counts the shorter list decides)."""
  return sum(fn(s, t, **hparams) for s, t in zip(s_maps, t_maps))


REGISTRY: dict[str, type[Method]] = {}


def register(name: str):
  """Class decorator: makes ``cls`` a frozen dataclass and registers it as ``name``."""
  def wrap(cls: type[Method]) -> type[Method]:
    if not (isinstance(cls, type) and issubclass(cls, Method)):
      raise TypeError(f"register({name!r}): {cls!r} is not a subclass of kd_jax.methods.Method")
    if not dataclasses.is_dataclass(cls) or "__dataclass_fields__" not in cls.__dict__:
      cls = dataclasses.dataclass(frozen=True)(cls)
    old = REGISTRY.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
      raise ValueError(f"method {name!r} is already registered ({old.__module__}."
                       f"{old.__qualname__}); choose another name")
    cls.name = name
    REGISTRY[name] = cls
    return cls
  return wrap


def get(name: str) -> type[Method]:
  return REGISTRY[name]


def names() -> list[str]:
  return sorted(REGISTRY)


_LOADED: dict[str, Any] = {}


def import_modules(specs: Sequence[str], where: str = "config.method_modules") -> None:
  """Imports the modules that register methods: module names (``my_lab.methods``, found on
  ``sys.path``) or paths of ``.py`` files (``~`` expanded). Each is imported once per
  process."""
  from kd_jax.errors import KdJaxError  # Late: errors is a leaf, but keep the API small.
  if isinstance(specs, str):
    raise KdJaxError(f"{where} must be a list of module names or .py paths, got {specs!r}")
  for spec in specs:
    if spec in _LOADED:
      continue
    try:
      if spec.endswith(".py"):
        path = os.path.abspath(os.path.expanduser(spec))
        if not os.path.isfile(path):
          raise KdJaxError(f"{where}: {spec!r} is not a file")
        name = "kd_jax_user_methods." + os.path.splitext(os.path.basename(path))[0]
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
      else:
        module = importlib.import_module(spec)
    except KdJaxError:
      raise
    except Exception as err:  # pylint: disable=broad-except  (any import error, one line)
      raise KdJaxError(f"{where}: importing {spec!r} failed: {type(err).__name__}: "
                       f"{str(err).splitlines()[0] if str(err) else ''}") from err
    _LOADED[spec] = module

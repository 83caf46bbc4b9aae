"""Teacher outputs computed once over the training set and fed to the step by example index.

A frozen teacher in inference mode gives every example the same outputs in every epoch when
the training data has no random augmentation (proxy data is often used so). With
``config.teacher_cache`` set, the outputs the objectives read are computed once at start-up
and each batch carries its examples' rows; the step then runs no teacher.

Which outputs: exactly those the train step depends on, found by dead-code elimination of
the step's jaxpr with every teacher output fed from the batch (``needed_outputs``); other
features are neither computed into the cache nor stored.

Format (``config.teacher_cache = <directory>``; ``'memory'`` keeps the same arrays in host
memory instead): ``<dir>/<teacher>/<key>.npy``, one array per output, float32 (a bfloat16 teacher's outputs
are widened exactly; the step narrows them back), shape ``[index_size, ...]``, row ``i`` = the output for the train example whose ``index``
is ``i`` (rows of examples not in this process's shard or filtered out are zero); ``key`` is
``logits`` or the feature name with ``/`` written as ``__``. ``<dir>/meta.json`` records what
the cache was computed from (teacher checkpoints and steps, data config, input shape,
index size, process); a cache whose meta differs from the run's is recomputed. meta.json is
removed before a computation starts and written (atomically) after every array is complete,
so a build stopped half-way leaves no cache that any run would read.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np

from kd_jax import methods
from kd_jax.data import sources
from kd_jax.errors import KdJaxError

from kd_jax.distill.teachers import cached_key as batch_key


def _file_name(output: str) -> str:
  return output.replace("/", "__") + ".npy"


def used_inputs(jaxpr: jax_core.Jaxpr, outputs: Sequence[bool] | None = None) -> list[bool]:
  """Per input of ``jaxpr``, whether one of its ``outputs`` (default: all) depends on it: a
  backward walk over its equations with the public ``jax.extend.core`` types. A nested
  ``jit`` is walked into; any other equation counts all its operands as used."""
  outputs = [True] * len(jaxpr.outvars) if outputs is None else outputs
  is_var = lambda v: not isinstance(v, jax_core.Literal)
  live = {v for v, u in zip(jaxpr.outvars, outputs) if u and is_var(v)}
  for eqn in reversed(jaxpr.eqns):
    needed = [v in live for v in eqn.outvars]
    if not (eqn.effects or any(needed)):
      continue
    inner = eqn.params.get("jaxpr")
    inner = getattr(inner, "jaxpr", inner)  # A ClosedJaxpr's Jaxpr.
    if isinstance(inner, jax_core.Jaxpr) and len(inner.invars) == len(eqn.invars) \
        and not eqn.effects:
      uses = used_inputs(inner, needed)
    else:
      uses = [True] * len(eqn.invars)
    live.update(v for v, u in zip(eqn.invars, uses) if u and is_var(v))
  return [v in live for v in jaxpr.invars]


def needed_outputs(make_step: Callable[[Sequence[str]], Callable], state, batch: Mapping,
                   rng, teacher_shapes: Mapping[str, Any]) -> dict[str, list[str]]:
  """``{teacher: [output, ...]}``: the teacher outputs the train step reads (always
  ``logits``, which are small).

  ``make_step(cached)`` builds the step reading the ``cached`` teachers from the batch;
  ``teacher_shapes``: ``{teacher: Outputs of ShapeDtypeStructs}`` (shapes with a leading
  batch dimension). The step is traced with every output in the batch and the outputs
  its results do not depend on are dropped (``used_inputs``)."""
  full = dict(batch)
  keys = []
  b = next(iter(batch.values())).shape[0]
  for t, out in teacher_shapes.items():
    for name, shape in [("logits", out.logits), *out.features.items()]:
      full[batch_key(t, name)] = jax.ShapeDtypeStruct((b, *shape.shape[1:]), shape.dtype)
      keys.append((t, name))
  step = make_step(sorted(teacher_shapes))
  closed = jax.make_jaxpr(step)(state, full, rng)
  used = used_inputs(closed.jaxpr)
  leaves = jax.tree_util.tree_leaves_with_path((state, full, rng))
  used_paths = {jax.tree_util.keystr(p) for (p, _), u in zip(leaves, used) if u}
  out: dict[str, list[str]] = {t: ["logits"] for t in teacher_shapes}
  for t, name in keys:
    if jax.tree_util.keystr((jax.tree_util.SequenceKey(1),
                             jax.tree_util.DictKey(batch_key(t, name)))) in used_paths \
        and name != "logits":
      out[t].append(name)
  return out


class TeacherCache:
  """Host arrays ``{batch key: [index_size, ...]}``; ``attach`` adds a batch's rows."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    self.arrays = dict(arrays)

  def attach(self, batches: Iterator[dict]) -> Iterator[dict]:
    for batch in batches:
      index = batch["index"]
      yield {**batch, **{k: np.asarray(a[index]) for k, a in self.arrays.items()}}


def _meta(config, teachers_meta: Mapping[str, Any], input_shape, index_size: int,
          needed: Mapping[str, Sequence[str]]) -> dict[str, Any]:
  return {"teachers": {n: dict(teachers_meta[n]) for n in sorted(needed)},
          "outputs": {n: sorted(v) for n, v in needed.items()},
          "data": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in config.data.to_dict().items()},
          "dtype": config.dtype, "input_shape": list(input_shape), "index_size": int(index_size),
          "process": f"{jax.process_index()}/{jax.process_count()}", "format": 1}


def build(config, data, teachers: Mapping[str, tuple[Any, Any]],
          teachers_meta: Mapping[str, Any], needed: Mapping[str, Sequence[str]],
          log: Callable[[str], None] = print) -> TeacherCache:
  """Computes (or loads, when ``config.teacher_cache`` is a directory holding a matching
  cache) the ``needed`` outputs of each teacher over this process's train examples."""
  where = config.teacher_cache
  needed = {t: list(v) for t, v in needed.items() if v}
  meta = _meta(config, teachers_meta, data.input_shape, data.index_size, needed)
  directory = None if where == "memory" else where
  if directory and jax.process_count() > 1:
    directory = os.path.join(directory, f"process_{jax.process_index()}")
  if directory and _matches(directory, meta):
    arrays = {batch_key(t, o): np.load(os.path.join(directory, t, _file_name(o)), mmap_mode="r")
              for t, outs in needed.items() for o in outs}
    log(f"teacher outputs read from the cache in {directory}")
    return TeacherCache(arrays)
  forward = {}
  for t in needed:
    module, variables = teachers[t]
    outs = tuple(needed[t])

    def fn(images, module=module, variables=variables, outs=outs):
      logits, feats = module.apply(variables, images, train=False)
      got = {"logits": logits, **feats}
      return {o: got[o].astype(jnp.float32) for o in outs}

    forward[t] = jax.jit(fn)
  arrays: dict[str, np.ndarray] = {}
  if directory and os.path.exists(os.path.join(directory, "meta.json")):
    # The arrays are about to be overwritten: a build stopped half-way must not leave a
    # meta.json that still matches the cache they held before.
    os.remove(os.path.join(directory, "meta.json"))
  for t, outs in needed.items():
    shapes = jax.eval_shape(forward[t], jax.ShapeDtypeStruct((1, *data.input_shape), jnp.float32))
    for o in outs:
      shape = (data.index_size, *shapes[o].shape[1:])
      if directory:
        os.makedirs(os.path.join(directory, t), exist_ok=True)
        arrays[batch_key(t, o)] = np.lib.format.open_memmap(
            os.path.join(directory, t, _file_name(o)), mode="w+", dtype=np.float32, shape=shape)
      else:
        arrays[batch_key(t, o)] = np.zeros(shape, np.float32)
  count = 0
  for batch in data.train_split_once():
    real = batch["mask"] > 0
    index = batch["index"][real]
    for t, outs in needed.items():
      got = jax.device_get(forward[t](batch["image"]))
      for o in outs:
        arrays[batch_key(t, o)][index] = got[o][real]
    count += int(real.sum())
  size = sum(a.nbytes for a in arrays.values())
  if directory:
    for a in arrays.values():
      a.flush()
    with open(os.path.join(directory, "meta.json.tmp"), "w") as f:
      json.dump(meta, f, indent=1)
      f.flush()
      os.fsync(f.fileno())
    os.replace(os.path.join(directory, "meta.json.tmp"), os.path.join(directory, "meta.json"))
  log(f"teacher outputs cached for {count} train examples "
      f"({', '.join(f'{t}: ' + ', '.join(o) for t, o in needed.items())}; "
      f"{size / 2**20:.1f} MiB{' in ' + directory if directory else ' in memory'})")
  return TeacherCache(arrays)


def _matches(directory: str, meta: Mapping[str, Any]) -> bool:
  path = os.path.join(directory, "meta.json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    try:
      return json.load(f) == json.loads(json.dumps(meta))
    except json.JSONDecodeError:
      return False


def check_config(config, objectives: Sequence[Any] = ()) -> None:
  """One-line errors for a teacher cache that cannot be right (``kd_jax.plan`` checks every
  run with it before anything trains)."""
  if not config.teacher_cache:
    return
  for obj in objectives:
    if methods.transforms_batch(obj.method):
      raise KdJaxError(f"config.teacher_cache: objective {obj.name!r} changes the images in "
                       f"every step ({obj.loss}'s transform_batch), so the teachers' outputs "
                       f"cannot be computed once; set config.teacher_cache=''")
    if obj.method.views or obj.view:
      raise KdJaxError(f"config.teacher_cache: objective {obj.name!r} reads another view of "
                       f"the batch ({obj.view or ', '.join(obj.method.views)}), drawn anew in "
                       f"every step, so the teachers' outputs cannot be computed once; set "
                       f"config.teacher_cache=''")
  if not config.teachers:
    raise KdJaxError("config.teacher_cache is set but config.teachers is empty")
  if "+" in config.data.name:
    raise KdJaxError("config.teacher_cache: not available for a union of data sets")
  train_augment, _ = sources.augmentation(config.data, config.data.name)
  if train_augment != "none":
    raise KdJaxError(f"config.teacher_cache needs training data without random augmentation "
                     f"(config.data.train_augment='none'; it is {train_augment!r}): the "
                     f"teacher's outputs would differ from epoch to epoch")

"""Several prepared data sets as one (``data.name = "a+b"``): training draws from each in
proportion to its size, the eval split is their concatenation, labels and indices offset so
that the data sets follow each other (see ``kd_jax.data.pipelines``).

Labelled and unlabelled together (``data.unlabeled_parts``: e.g. an unlabelled proxy set
beside a labelled target set): the label space is that of the labelled data sets alone
(offset among them), train batches carry ``label_mask`` (1 for an example of a labelled data
set; an unlabelled one's label reads 0 and is masked), and the eval split is the labelled
data sets' (an unlabelled one has no label in that space)."""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from kd_jax.data.dataset import Dataset, padded, seed_of_epoch
from kd_jax.errors import KdJaxError

@dataclasses.dataclass
class UnionDataset:
  """Several prepared data sets as one (``data.name = "a+b"``): see the module docstring."""

  parts: list[Dataset]
  global_batch_size: int
  eval_batch_size: int
  cache: bool = True
  _eval: tf.data.Dataset | None = dataclasses.field(default=None, repr=False)

  local_batch_size = Dataset.local_batch_size
  steps_per_epoch = Dataset.steps_per_epoch
  num_eval_steps = Dataset.num_eval_steps

  @property
  def name(self) -> str:
    return "+".join(p.name for p in self.parts)

  @property
  def has_labels(self) -> bool:
    return any(p.has_labels for p in self.parts)

  @property
  def device_augment(self) -> None:
    """None: a union's train batches are prepared on the host (``Dataset.device_augment``)."""
    return None

  @property
  def mixed(self) -> bool:
    """Whether labelled and unlabelled data sets are joined (``data.unlabeled_parts``)."""
    return self.has_labels and not all(p.has_labels for p in self.parts)

  @property
  def _evaluated(self) -> list[Dataset]:
    """The data sets whose eval splits (and classes) make the union's."""
    return [p for p in self.parts if self._evaluates(p)]

  def _evaluates(self, part: Dataset) -> bool:
    return part.has_labels or not self.mixed

  @property
  def labeled_fraction(self) -> float:
    """The fraction of train examples whose label is used (< 1 when mixed)."""
    if not self.mixed:
      return 1.0
    return sum(p.num_train_examples for p in self.parts if p.has_labels) / self.num_train_examples

  @property
  def num_classes(self) -> int | None:
    sizes = [p.num_classes for p in self._evaluated]
    return None if None in sizes else sum(sizes)

  @property
  def num_train_examples(self) -> int:
    return sum(p.num_train_examples for p in self.parts)

  @property
  def num_eval_examples(self) -> int:
    return sum(p.num_eval_examples for p in self._evaluated)

  @property
  def index_size(self) -> int:
    return sum(p.index_size for p in self.parts)

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return self.parts[0].input_shape

  def _offsets(self):
    index = np.cumsum([0] + [p.index_size for p in self.parts])[:-1]
    counted = [(p.num_classes or 0) if self._evaluates(p) else 0 for p in self.parts]
    label = np.cumsum([0] + counted)[:-1]
    return [(int(i), int(l)) for i, l in zip(index, label)]

  @staticmethod
  def _shift(ds: tf.data.Dataset, index_offset: int, label_offset: int) -> tf.data.Dataset:
    def shift(ex):
      ex = {**ex, "index": ex["index"] + index_offset}
      if "label" in ex:
        ex["label"] = ex["label"] + label_offset
      return ex
    return ds.map(shift, num_parallel_calls=tf.data.AUTOTUNE)

  def train_labels(self) -> np.ndarray:
    """int32 [index_size]: ``Dataset.train_labels`` of each data set, offset like the batches."""
    return np.concatenate([np.where(labels >= 0, labels + l_off, -1).astype(np.int32)
                           for labels, (_, l_off) in zip((p.train_labels() for p in self.parts),
                                                         self._offsets())])

  def train_batches(self, epoch: int, start: int = 0, seed: int = 0,
                    stream: int = 0) -> Iterator[dict]:
    """One epoch's batches: examples drawn from the data sets in proportion to their sizes
    (deterministic in ``(seed, epoch)``), from batch ``start``."""
    epoch_seed = seed_of_epoch(seed, epoch, stream)
    streams = []
    for part, (i_off, l_off) in zip(self.parts, self._offsets()):
      ds, finish = part._train_examples(epoch_seed)
      ds = self._shift(ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE), i_off, l_off)
      if self.mixed:
        ds = ds.map(_with_label_mask if part.has_labels else _masked_label,
                    num_parallel_calls=tf.data.AUTOTUNE)
      streams.append(ds)
    sizes = np.array([p.num_train_examples for p in self.parts], np.float64)
    ds = tf.data.Dataset.sample_from_datasets(streams, list(sizes / sizes.sum()),
                                              seed=epoch_seed)
    ds = ds.skip(start * self.local_batch_size)
    ds = ds.batch(self.local_batch_size, drop_remainder=True)
    ds = ds.take(self.steps_per_epoch - start).prefetch(tf.data.AUTOTUNE)
    return tfds.as_numpy(ds)

  def eval_batches(self) -> Iterator[dict]:
    """The eval splits one after the other, padded like ``Dataset.eval_batches``."""
    local = self.eval_batch_size // jax.process_count()
    if self._eval is None:
      ds = None
      for part, (i_off, l_off) in zip(self.parts, self._offsets()):
        if not self._evaluates(part):
          continue
        one = self._shift(part.eval_examples(), i_off, l_off)
        ds = one if ds is None else ds.concatenate(one)
      ds = ds.batch(local)
      self._eval = (ds.cache() if self.cache else ds).prefetch(tf.data.AUTOTUNE)
    return padded(self._eval, local, self.num_eval_steps())


def _with_label_mask(ex):
  return {**ex, "label_mask": tf.constant(1.0, tf.float32)}


def _masked_label(ex):
  """An example of an unlabelled data set in a mixed union: label 0, masked."""
  return {**ex, "label": tf.constant(0, tf.int32), "label_mask": tf.constant(0.0, tf.float32)}


class _Cfg(dict):
  """A dict read like a ConfigDict (``cfg.name``, ``cfg.get``)."""
  __getattr__ = dict.__getitem__


def create_union(data_cfg, global_batch_size: int, eval_batch_size: int | None,
                 create_one: Callable[..., Dataset]) -> UnionDataset:
  """The union of the data sets ``data_cfg.name`` joins with ``+``, each built by
  ``create_one(config, global_batch_size, eval_batch_size)``."""
  names = data_cfg.name.split("+")
  splits = {}
  for field in ("train_split", "eval_split"):
    value = data_cfg[field].split("+")
    if len(value) not in (1, len(names)):
      raise KdJaxError(f"config.data.{field}: {data_cfg[field]!r} names {len(value)} splits "
                       f"for {len(names)} data sets")
    splits[field] = value * len(names) if len(value) == 1 else value
  if data_cfg.get("classes") or data_cfg.get("labeled_fraction", 1.0) < 1.0:
    raise KdJaxError("config.data: classes and labeled_fraction do not apply to a union of "
                     "data sets")
  unlabeled = tuple(data_cfg.get("unlabeled_parts", ()) or ())
  bad = [n for n in unlabeled if n not in names]
  if bad or (unlabeled and set(unlabeled) >= set(names)):
    raise KdJaxError(f"config.data.unlabeled_parts must name some (not all) of the data sets "
                     f"of {data_cfg.name!r}, got {list(unlabeled)} (all unlabelled: "
                     f"config.data.unlabeled=True)")
  if data_cfg.get("augment_on") == "device":
    raise KdJaxError("config.data.augment_on='device' does not apply to a union of data sets "
                     "(their train batches are prepared on the host)")
  parts = []
  for i, name in enumerate(names):
    cfg = dict(data_cfg.items()) if hasattr(data_cfg, "items") else dict(data_cfg)
    cfg.update(name=name, train_split=splits["train_split"][i], eval_split=splits["eval_split"][i],
               augment_on="host")
    if name in unlabeled:
      cfg["unlabeled"] = True
    parts.append(create_one(_Cfg(cfg), global_batch_size, eval_batch_size))
  shapes = {p.input_shape for p in parts}
  if len(shapes) > 1:
    raise KdJaxError(f"config.data.name: the data sets of {data_cfg.name!r} give different "
                     f"input shapes {sorted(shapes)}; set config.data.image_size and channels")
  return UnionDataset(parts, global_batch_size, eval_batch_size or global_batch_size,
                      cache=bool(data_cfg.get("cache", True)))

"""One prepared data set as batches for this process (``Dataset``; ``kd_jax.data.pipelines``
builds it from a config and describes the batches)."""
from __future__ import annotations

import dataclasses
from typing import Iterator

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from kd_jax.data import augment
from kd_jax.data import device_augment
from kd_jax.errors import KdJaxError

def _index_from_tfds_id(tfds_id: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
  """'name-split.tfrecord-00003-of-00016__417' -> offsets[3] + 417 (position in the split)."""
  parts = tf.strings.split(tfds_id, "__")
  position = tf.strings.to_number(parts[-1], tf.int64)
  shard = tf.strings.to_number(
      tf.strings.regex_replace(parts[0], r"^.*-(\d+)-of-\d+$", r"\1"), tf.int64)
  shard = tf.minimum(shard, tf.cast(tf.size(offsets) - 1, tf.int64))
  return tf.gather(offsets, shard) + position


@tf.autograph.experimental.do_not_convert  # Plain TensorFlow: no autograph pass (seconds).
def _index_only(ex: dict) -> tf.Tensor:
  return ex["index"]


@dataclasses.dataclass
class Dataset:
  """A prepared TFDS data set as configured by ``config.data`` (see kd_jax/config.py)."""

  name: str
  train_split: str
  eval_split: str
  global_batch_size: int
  eval_batch_size: int
  image_size: int
  channels: int | None
  train_augment: str
  eval_preprocess: str
  mean: tuple[float, ...]
  std: tuple[float, ...]
  unlabeled: bool
  cache: bool
  labeled_fraction: float
  labeled_seed: int
  classes: tuple[int, ...] | None
  builder: tfds.core.DatasetBuilder
  num_classes: int | None
  num_train_examples: int
  num_eval_examples: int
  augment_on: str = "host"  # "device": train batches carry uint8 images (``device_augment``).
  _cached_train: tf.data.Dataset | None = dataclasses.field(default=None, repr=False)
  _eval: tf.data.Dataset | None = dataclasses.field(default=None, repr=False)

  @property
  def local_batch_size(self) -> int:
    return self.global_batch_size // jax.process_count()

  @property
  def steps_per_epoch(self) -> int:
    return max(1, self.num_train_examples // self.global_batch_size)

  @property
  def has_labels(self) -> bool:
    return not self.unlabeled and "label" in self.builder.info.features

  @property
  def index_size(self) -> int:
    """One more than the largest example ``index`` of the train split: the size of its base
    split (indices are positions in it, also for a slice like ``train[:10%]``)."""
    base = self.train_split.split("[")[0]
    splits = self.builder.info.splits
    known = splits[base].num_examples if base in splits else 0
    return max(int(known), self.num_train_examples)

  @property
  def input_shape(self) -> tuple[int, int, int]:
    channels = self.channels or self.builder.info.features["image"].shape[-1]
    return (self.image_size, self.image_size, channels)

  @property
  def device_augment(self) -> device_augment.Spec | None:
    """What the train step does to the uint8 train images (``augment_on == "device"``:
    the random crop and flip of ``train_augment`` and the normalisation), else None."""
    return device_augment.spec(self.augment_on, self.train_augment, self.image_size,
                               *self._norm())

  def _norm(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
    channels = self.input_shape[-1]
    if len(self.mean) != channels:
      return self.mean[:1] * channels, self.std[:1] * channels
    return self.mean, self.std

  # -- tf.data construction -------------------------------------------------
  def labeled_examples(self) -> np.ndarray:
    """Bool [index_size]: the train examples whose labels are used (all, unless
    ``labeled_fraction`` < 1: then a random ``round(fraction * N)`` of them, drawn with
    ``numpy.random.RandomState(labeled_seed)``, the same for every run and seed)."""
    n = self.index_size
    if self.labeled_fraction >= 1.0:
      return np.ones(n, bool)
    keep = int(round(self.labeled_fraction * self.num_train_examples))
    order = np.random.RandomState(self.labeled_seed).permutation(n)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    return rank < keep

  def train_labels(self) -> np.ndarray:
    """int32 [index_size]: the label of the train example with each ``index``, -1 where none
    is known (no such example, a class not in ``classes``, or a label not used with
    ``labeled_fraction`` < 1). One pass over the whole split's labels and indices (every
    process reads all of it; images are not decoded)."""
    labels = np.full(self.index_size, -1, np.int32)
    if not self.has_labels:
      return labels
    ds = self._read(self.train_split, shuffle_files=False, seed=None, train=True,
                    whole_split=True, images=False)
    for batch in tfds.as_numpy(ds.batch(4096).prefetch(tf.data.AUTOTUNE)):
      known = batch.get("label_mask", np.ones(len(batch["index"]))) > 0
      labels[batch["index"][known]] = batch["label"][known]
    return labels

  def _read(self, split: str, shuffle_files: bool, seed: int | None,
            train: bool = False, whole_split: bool = False,
            images: bool = True) -> tf.data.Dataset:
    """This process's shard of ``split`` (``whole_split``: all of it) as examples with
    image (unless not ``images``: then not decoded and dropped), index, label, label_mask."""
    read_config = tfds.ReadConfig(add_tfds_id=True, shuffle_seed=seed,
                                  interleave_cycle_length=16 if shuffle_files else 1)
    shard = split if whole_split else tfds.split_for_jax_process(split)
    if jax.process_count() > 1 and self.builder.info.splits[shard].num_examples == 0:
      shard_is_empty = True  # More processes than examples: as_dataset refuses an empty
      shard = split          # shard; this one reads none of the split's examples.
    else:
      shard_is_empty = False
    decoders = None if images else {"image": tfds.decode.SkipDecoding()}
    ds = self.builder.as_dataset(split=shard, shuffle_files=shuffle_files,
                                 read_config=read_config, decoders=decoders)
    if shard_is_empty:
      ds = ds.take(0)
    base = split.split("[")[0]
    splits = self.builder.info.splits
    shard_lengths = (list(splits[base].shard_lengths) if base in splits else []) or [0]
    offsets = tf.constant(np.concatenate([[0], np.cumsum(shard_lengths)[:-1]]), tf.int64)
    has_index = "index" in self.builder.info.features
    # Proxy data (``unlabeled``) drops the train labels; evaluation still reads its labels.
    keep_label = self.has_labels or (not train and "label" in self.builder.info.features)
    if self.classes:
      table = np.full(self.builder.info.features["label"].num_classes, -1, np.int64)
      table[list(self.classes)] = np.arange(len(self.classes))
      relabel = tf.constant(table)
      ds = ds.filter(lambda ex: tf.gather(relabel, ex["label"]) >= 0)
      ds = ds.map(lambda ex: {**ex, "label": tf.gather(relabel, ex["label"])})
    label_mask = None
    if train and keep_label and self.labeled_fraction < 1.0:
      label_mask = tf.constant(self.labeled_examples().astype(np.float32))

    def select(ex):
      index = ex["index"] if has_index else _index_from_tfds_id(ex["tfds_id"], offsets)
      out = {"index": tf.cast(index, tf.int32)}
      if images:
        out["image"] = ex["image"]
      if keep_label:
        out["label"] = tf.cast(ex["label"], tf.int32)
      if label_mask is not None:
        out["label_mask"] = tf.gather(label_mask, index)
      return out

    return ds.map(select, num_parallel_calls=tf.data.AUTOTUNE)

  def _finish(self, ex: dict, train: bool, seed: tf.Tensor | None,
              for_step: bool = False) -> dict:
    """An example prepared: ``train`` augmentation (random with ``seed``) or eval
    preprocessing, normalised float32; ``for_step`` with ``augment_on == "device"``: uint8,
    left for the train step to augment and normalise (``device_augment``)."""
    stored_channels = self.builder.info.features["image"].shape[-1] or 3
    image = ex["image"]
    if train and self.train_augment == "inception":
      image = augment.inception_crop(image, seed, self.image_size)
    elif not train and self.eval_preprocess == "center_crop":
      image = augment.resize_center_crop(image, self.image_size)
    else:
      image = augment.resize(image, self.image_size)
      on_host = not (for_step and self.augment_on == "device")
      if train and on_host and self.train_augment in ("cifar", "pad_crop"):
        image = augment.pad_crop_flip(image, seed, pad=device_augment.crop_pad(self.image_size),
                                      flip=self.train_augment == "cifar")
    image = tf.ensure_shape(image, (self.image_size, self.image_size, stored_channels))
    in_channels = stored_channels
    if self.channels and self.channels != in_channels:
      if in_channels != 1:
        raise KdJaxError(f"config.data.channels={self.channels}: can only expand "
                         f"1-channel images, this data set has {in_channels}.")
      image = tf.repeat(image, self.channels, axis=-1)
    if for_step and self.augment_on == "device":
      return {**ex, "image": image}  # uint8: the step augments and normalises it.
    mean, std = self._norm()
    return {**ex, "image": augment.normalize(image, mean, std)}

  def train_batches(self, epoch: int, start: int = 0, seed: int = 0,
                    stream: int = 0) -> Iterator[dict]:
    """The ``steps_per_epoch`` batches of ``epoch`` for this process, from batch ``start``.
    ``stream`` > 0 gives another order of the same data (e.g. an initialisation phase's)."""
    epoch_seed = seed_of_epoch(seed, epoch, stream)
    ds, finish = self._train_examples(epoch_seed)
    ds = ds.skip(start * self.local_batch_size)
    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(self.local_batch_size, drop_remainder=True)
    ds = ds.take(self.steps_per_epoch - start).prefetch(tf.data.AUTOTUNE)
    return tfds.as_numpy(ds)

  def _train_source(self, shuffle_seed: int | None) -> tf.data.Dataset:
    """The train split's examples: read and decoded once and cached (``cache``; in storage
    order), else read anew (files shuffled with ``shuffle_seed`` unless None)."""
    if self.cache:
      if self._cached_train is None:
        cached = self._read(self.train_split, shuffle_files=False, seed=None, train=True).cache()
        # Filled by one whole pass now: tf.data discards a cache that an iterator left
        # unfinished, and an epoch reads only ``steps_per_epoch`` full batches of it (it
        # then decoded the whole split again every epoch).
        for _ in cached.map(_index_only).batch(4096):
          pass
        self._cached_train = cached
      return self._cached_train
    return self._read(self.train_split, shuffle_files=shuffle_seed is not None,
                      seed=shuffle_seed, train=True)

  def _train_examples(self, epoch_seed: int):
    """``(examples, finish)``: the train split shuffled for one epoch and repeated, and the
    per-example augmentation and normalisation to map over it."""
    ds = self._train_source(epoch_seed)
    n_local = max(1, self.num_train_examples // jax.process_count())
    ds = ds.shuffle(min(n_local, 50_000), seed=epoch_seed, reshuffle_each_iteration=False)
    ds = ds.repeat()  # Only matters when a split holds fewer examples than it claims.

    def finish(ex):
      ex_seed = tf.stack([tf.constant(epoch_seed, tf.int64), tf.cast(ex["index"], tf.int64)])
      return self._finish(ex, train=True, seed=ex_seed, for_step=True)

    return ds, finish

  def train_split_once(self) -> Iterator[dict]:
    """Every train example of this process's shard once (also beyond ``num_train_examples``),
    in storage order, prepared as for training (which must not augment), in local batches,
    the last padded with ``mask == 0`` (teacher caches)."""
    ds = self._train_source(None)
    if self.train_augment != "none":
      raise KdJaxError(f"config.data.train_augment is {self.train_augment!r}: outputs computed "
                       f"once cannot follow random augmentation (set it to 'none')")
    ds = ds.map(lambda ex: {**self._finish(ex, train=True, seed=None),
                            "mask": tf.constant(1.0, tf.float32)},
                num_parallel_calls=tf.data.AUTOTUNE)
    local = self.local_batch_size
    for batch in tfds.as_numpy(ds.batch(local).prefetch(tf.data.AUTOTUNE)):
      n = len(batch["mask"])
      if n < local:
        batch = {k: np.concatenate([v, np.zeros((local - n,) + v.shape[1:], v.dtype)])
                 for k, v in batch.items()}
      yield batch

  def num_eval_steps(self) -> int:
    per_process = -(-self.num_eval_examples // jax.process_count())
    return max(1, -(-per_process // (self.eval_batch_size // jax.process_count())))

  def eval_examples(self) -> tf.data.Dataset:
    """The eval split once (its first ``num_eval_examples``; on several processes the first
    of each process's shard), prepared, each example with ``mask`` 1."""
    ds = self._read(self.eval_split, shuffle_files=False, seed=None)
    # This process's share of num_eval_examples (all of its shard when that is the split's
    # size); without it the padded batches went on reading real examples past the count.
    ds = ds.take(-(-self.num_eval_examples // jax.process_count()))
    return ds.map(lambda ex: {**self._finish(ex, train=False, seed=None),
                              "mask": tf.constant(1.0, tf.float32)},
                  num_parallel_calls=tf.data.AUTOTUNE)

  def eval_batches(self) -> Iterator[dict]:
    """The eval split once, padded with ``mask == 0`` examples to ``num_eval_steps()`` full batches."""
    local = self.eval_batch_size // jax.process_count()
    if self._eval is None:
      ds = self.eval_examples().batch(local)
      self._eval = (ds.cache() if self.cache else ds).prefetch(tf.data.AUTOTUNE)
    return padded(self._eval, local, self.num_eval_steps())


def seed_of_epoch(seed: int, epoch: int, stream: int = 0) -> int:
  entropy = [seed, epoch] + ([stream] if stream else [])
  return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2**31))


def padded(ds: tf.data.Dataset, local: int, num_steps: int) -> Iterator[dict]:
  """``num_steps`` batches of ``local`` examples from ``ds``; short ones padded with zeros
  (``mask`` 0), missing ones (processes with fewer examples still step) all padding."""
  steps = 0
  for batch in tfds.as_numpy(ds):
    if steps == num_steps:
      break
    n = len(batch["mask"])
    if n < local:
      batch = {k: np.concatenate([v, np.zeros((local - n,) + v.shape[1:], v.dtype)])
               for k, v in batch.items()}
    steps += 1
    yield batch
  padding = {k: np.zeros((local, *spec.shape[1:]), spec.dtype.as_numpy_dtype)
             for k, spec in ds.element_spec.items()}  # Also where this shard had nothing.
  while steps < num_steps:
    yield padding
    steps += 1

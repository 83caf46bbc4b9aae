"""TFDS split -> tf.data -> numpy batches for this process.

A ``Dataset`` resolves a config's data set once (prepared in the TFDS data_dir,
downloaded there if it can be), and hands out

* ``train_batches(epoch, start, seed)``: the batches of one epoch for this process,
  deterministic in ``(seed, epoch)``; ``start`` skips the first batches (resuming
  mid-epoch costs no decoding of the skipped images);
* ``eval_batches()``: the whole eval split once, padded to full batches, with a
  ``mask`` marking real examples.

Every batch is a dict of numpy arrays: ``image`` float32 [b, H, W, C] normalised,
``index`` int32 [b] (the example's position in its split; for data sets without an
index feature it is derived from the TFDS record id), ``label`` int32 [b] unless
the train split is unlabelled (``data.unlabeled``: proxy data), ``mask`` float32 [b] for eval, and
``label_mask`` float32 [b] for training when only a fraction of the train split keeps its
labels (``data.labeled_fraction`` < 1: 1 for the examples whose label may be used).
``data.classes`` keeps only the examples of those classes (both splits), relabelled
0..len-1 in the order given (e.g. an expert trained on digits 5-9 sees labels 0-4); their
``index`` stays their position in the unfiltered split.

Several data sets joined by ``+`` (``data.name = "caltech_birds2011+stanford_dogs"``) are
their union (``UnionDataset``): training draws from each in proportion to its size, the
eval split is their concatenation, labels and indices are offset so that the data sets
follow each other (CUB's 200 classes, then the dogs' 120: the label space of an
amalgamated student). Splits may name one split per data set the same way (``train+train``);
``num_train_examples``/``num_eval_examples`` then count per data set.
``b`` is the global batch divided by the number of processes: each process reads
its own shard of the split (``tfds.split_for_jax_process``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
import os
import socket
import sys
import urllib.parse
from typing import Any, Iterator

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from kd_jax.data import augment
from kd_jax.data import digits as _digits  # noqa: F401  (registers sklearn_digits)
from kd_jax.data import folder as _folder
from kd_jax.errors import KdJaxError

CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4867, 0.4408)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2675, 0.2565, 0.2761)}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Per data set defaults: how to augment for training, how to prepare eval images,
# the normalisation statistics and the model input size.
PRESETS: dict[str, dict[str, Any]] = {
    "sklearn_digits": dict(train_augment="none", eval_preprocess="none",
                           mean=(0.3053,), std=(0.3759,), image_size=8),
    "sklearn_digits_transposed": dict(train_augment="none", eval_preprocess="none",
                                      mean=(0.3053,), std=(0.3759,), image_size=8),
    "cifar10": dict(train_augment="cifar", eval_preprocess="none",
                    mean=CIFAR_MEAN["cifar10"], std=CIFAR_STD["cifar10"], image_size=32),
    "cifar100": dict(train_augment="cifar", eval_preprocess="none",
                     mean=CIFAR_MEAN["cifar100"], std=CIFAR_STD["cifar100"], image_size=32),
    "imagenet2012": dict(train_augment="inception", eval_preprocess="center_crop",
                         mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=224),
}
# Split sizes known before the data set is prepared (dry runs, benchmarks).
KNOWN_SPLIT_SIZES: dict[str, dict[str, int]] = {
    "cifar10": {"train": 50_000, "test": 10_000},
    "cifar100": {"train": 50_000, "test": 10_000},
    "imagenet2012": {"train": 1_281_167, "validation": 50_000},
}
# Fine-grained and other transfer data sets: ImageNet's preparation.
for _name in ("caltech_birds2011", "stanford_dogs", "oxford_flowers102", "oxford_iiit_pet",
              "cars196", "food101", "dtd", "caltech101", "imagenette"):
  PRESETS[_name] = PRESETS["imagenet2012"]


def default_data_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  if name.startswith(_folder.PREFIX):
    return _folder.builder(name, data_dir)
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    close = difflib.get_close_matches(name, tfds.list_builders(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise KdJaxError(
        f"config.data.name: unknown data set {name!r}: it is not a TFDS data set.{hint} "
        f"(`tfds.list_builders()` lists them; sklearn_digits is the embedded one.)") from None


def _unreachable(url: str, timeout: float = 5.0) -> Exception | None:
  """Why ``url``'s host (or the HTTPS proxy, where one is set) cannot be connected to, or
  None where it can (or the URL names no host, or downloads are mocked). Seconds, where
  TFDS's downloader retries for minutes before it gives up."""
  download = tfds.core.DatasetBuilder.download_and_prepare
  if getattr(download, "__module__", "").startswith("tensorflow_datasets.testing"):
    return None  # tfds.testing.mock_data: the download is a no-op, no network involved.
  proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
  target = urllib.parse.urlsplit(proxy or url)
  if not target.hostname:
    return None
  try:
    socket.create_connection((target.hostname, target.port or 443), timeout=timeout).close()
  except OSError as err:
    return err
  return None


def _is_local(builder: tfds.core.DatasetBuilder) -> bool:
  """The embedded data sets and image folders: prepared without a network."""
  return builder.name.startswith("sklearn_digits") or isinstance(builder, _folder.KdJaxImageFolder)


def _root(builder: tfds.core.DatasetBuilder) -> str:
  return os.path.dirname(os.path.dirname(builder.data_dir))


def _not_prepared(name: str, data_dir: str) -> KdJaxError:
  return KdJaxError(
      f"data set {name!r} is not prepared in {data_dir} and config.data.download is False: "
      f"run `tfds build {name} --data_dir={data_dir}` (on a machine with network), "
      f"or point --config.data.data_dir to a directory that holds it.")


def _not_downloaded(name: str, data_dir: str, err: Exception) -> KdJaxError:
  what = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
  manual = (" ImageNet needs the manual download: put ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar in {data_dir}/downloads/manual first."
            if name.startswith("imagenet") else "")
  return KdJaxError(
      f"data set {name!r} is not prepared in {data_dir} and could not be downloaded "
      f"({type(err).__name__}: {what[:200]}).{manual} Run `tfds build {name} "
      f"--data_dir={data_dir}` on a machine with network and copy {data_dir}/{name} "
      f"here, or set --config.data.data_dir to where it is prepared.")


def _builders(data_cfg) -> list[tuple[str, tfds.core.DatasetBuilder]]:
  """``(name, builder)`` of each data set of ``config.data`` (several joined by ``+``)."""
  data_dir = data_cfg.get("data_dir") or default_data_dir()
  return [(name, _builder(name, data_dir)) for name in data_cfg.name.split("+")]


def check_available(data_cfg) -> None:
  """Raises the one-line error that preparing ``config.data`` would raise, in seconds and
  before anything trains, where a data set is neither prepared nor local and downloads are
  off or its host cannot be reached (no network)."""
  for name, builder in _builders(data_cfg):
    if builder.is_prepared() or _is_local(builder):
      continue
    if not data_cfg.get("download", True):
      raise _not_prepared(name, _root(builder))
    err = _unreachable(builder.info.homepage or "")
    if err is not None:
      raise _not_downloaded(name, _root(builder), err)


def prepare_local(data_cfg) -> None:
  """Prepares the data sets of ``config.data`` that need no network (embedded, folders)."""
  for _, builder in _builders(data_cfg):
    if _is_local(builder):
      _prepare(builder, download=True)


def _prepare(builder: tfds.core.DatasetBuilder, download: bool) -> None:
  """Prepares the data set in its data_dir unless it already is; one-line error if it can't.
  The embedded data sets are prepared quietly, with one line that says so; a download shows
  TFDS's progress bars on a terminal only."""
  if builder.is_prepared():
    return
  name, data_dir = builder.name, _root(builder)
  local = _is_local(builder)
  if not download and not local:
    raise _not_prepared(name, data_dir)
  if jax.process_index() > 0:  # Multi-host: one writer; the data_dir must be shared.
    return
  try:
    if local:
      what = "image folder" if isinstance(builder, _folder.KdJaxImageFolder) else "embedded"
      print(f"kd_jax: preparing the {what} data set {name} in {data_dir} (once; later runs "
            f"read it from there)", flush=True)
      tfds.display_progress_bar(False)
      with contextlib.redirect_stdout(io.StringIO()):  # TFDS's "Downloading and preparing".
        builder.download_and_prepare()
    else:
      err = _unreachable(builder.info.homepage or "")
      if err is not None:
        raise err
      tfds.display_progress_bar(sys.stderr.isatty())  # No escape sequences in log files.
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  except Exception as err:  # pylint: disable=broad-except
    raise _not_downloaded(name, data_dir, err) from None


def _index_from_tfds_id(tfds_id: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
  """'name-split.tfrecord-00003-of-00016__417' -> offsets[3] + 417 (position in the split)."""
  parts = tf.strings.split(tfds_id, "__")
  position = tf.strings.to_number(parts[-1], tf.int64)
  shard = tf.strings.to_number(
      tf.strings.regex_replace(parts[0], r"^.*-(\d+)-of-\d+$", r"\1"), tf.int64)
  shard = tf.minimum(shard, tf.cast(tf.size(offsets) - 1, tf.int64))
  return tf.gather(offsets, shard) + position


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

  def _read(self, split: str, shuffle_files: bool, seed: int | None,
            train: bool = False) -> tf.data.Dataset:
    read_config = tfds.ReadConfig(add_tfds_id=True, shuffle_seed=seed,
                                  interleave_cycle_length=16 if shuffle_files else 1)
    shard = tfds.split_for_jax_process(split)
    if jax.process_count() > 1 and self.builder.info.splits[shard].num_examples == 0:
      shard_is_empty = True  # More processes than examples: as_dataset refuses an empty
      shard = split          # shard; this one reads none of the split's examples.
    else:
      shard_is_empty = False
    ds = self.builder.as_dataset(split=shard, shuffle_files=shuffle_files,
                                 read_config=read_config, decoders=None)
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
      out = {"image": ex["image"], "index": tf.cast(index, tf.int32)}
      if keep_label:
        out["label"] = tf.cast(ex["label"], tf.int32)
      if label_mask is not None:
        out["label_mask"] = tf.gather(label_mask, index)
      return out

    return ds.map(select, num_parallel_calls=tf.data.AUTOTUNE)

  def _finish(self, ex: dict, train: bool, seed: tf.Tensor | None) -> dict:
    stored_channels = self.builder.info.features["image"].shape[-1] or 3
    image = ex["image"]
    if train and self.train_augment == "inception":
      image = augment.inception_crop(image, seed, self.image_size)
    elif not train and self.eval_preprocess == "center_crop":
      image = augment.resize_center_crop(image, self.image_size)
    else:
      image = augment.resize(image, self.image_size)
      if train and self.train_augment in ("cifar", "pad_crop"):
        pad = 4 if self.image_size >= 32 else max(1, self.image_size // 8)
        image = augment.pad_crop_flip(image, seed, pad=pad, flip=self.train_augment == "cifar")
    image = tf.ensure_shape(image, (self.image_size, self.image_size, stored_channels))
    in_channels = stored_channels
    if self.channels and self.channels != in_channels:
      if in_channels != 1:
        raise KdJaxError(f"config.data.channels={self.channels}: can only expand "
                         f"1-channel images, this data set has {in_channels}.")
      image = tf.repeat(image, self.channels, axis=-1)
    mean, std = self.mean, self.std
    if len(mean) != image.shape[-1]:
      mean, std = mean[:1] * image.shape[-1], std[:1] * image.shape[-1]
    return {**ex, "image": augment.normalize(image, mean, std)}

  def train_batches(self, epoch: int, start: int = 0, seed: int = 0,
                    stream: int = 0) -> Iterator[dict]:
    """The ``steps_per_epoch`` batches of ``epoch`` for this process, from batch ``start``.
    ``stream`` > 0 gives another order of the same data (e.g. an initialisation stage's)."""
    epoch_seed = _epoch_seed(seed, epoch, stream)
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
        self._cached_train = self._read(self.train_split, shuffle_files=False, seed=None,
                                        train=True).cache()
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
      return self._finish(ex, train=True, seed=ex_seed)

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
    """The eval split once, prepared, each example with ``mask`` 1."""
    ds = self._read(self.eval_split, shuffle_files=False, seed=None)
    return ds.map(lambda ex: {**self._finish(ex, train=False, seed=None),
                              "mask": tf.constant(1.0, tf.float32)},
                  num_parallel_calls=tf.data.AUTOTUNE)

  def eval_batches(self) -> Iterator[dict]:
    """The eval split once, padded with ``mask == 0`` examples to ``num_eval_steps()`` full batches."""
    local = self.eval_batch_size // jax.process_count()
    if self._eval is None:
      ds = self.eval_examples().batch(local)
      self._eval = (ds.cache() if self.cache else ds).prefetch(tf.data.AUTOTUNE)
    return _padded(self._eval, local, self.num_eval_steps())


def _epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
  entropy = [seed, epoch] + ([stream] if stream else [])
  return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2**31))


def _padded(ds: tf.data.Dataset, local: int, num_steps: int) -> Iterator[dict]:
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


@dataclasses.dataclass
class UnionDataset:
  """Several prepared data sets as one (``data.name = "a+b"``): see the module docstring."""

  parts: list[Dataset]
  global_batch_size: int
  eval_batch_size: int
  cache: bool = True
  _eval: tf.data.Dataset | None = dataclasses.field(default=None, repr=False)

  labeled_fraction = 1.0
  local_batch_size = Dataset.local_batch_size
  steps_per_epoch = Dataset.steps_per_epoch
  num_eval_steps = Dataset.num_eval_steps

  @property
  def name(self) -> str:
    return "+".join(p.name for p in self.parts)

  @property
  def has_labels(self) -> bool:
    return all(p.has_labels for p in self.parts)

  @property
  def num_classes(self) -> int | None:
    sizes = [p.num_classes for p in self.parts]
    return None if None in sizes else sum(sizes)

  @property
  def num_train_examples(self) -> int:
    return sum(p.num_train_examples for p in self.parts)

  @property
  def num_eval_examples(self) -> int:
    return sum(p.num_eval_examples for p in self.parts)

  @property
  def index_size(self) -> int:
    return sum(p.index_size for p in self.parts)

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return self.parts[0].input_shape

  def _offsets(self):
    index = np.cumsum([0] + [p.index_size for p in self.parts])[:-1]
    label = np.cumsum([0] + [p.num_classes or 0 for p in self.parts])[:-1]
    return [(int(i), int(l)) for i, l in zip(index, label)]

  @staticmethod
  def _shift(ds: tf.data.Dataset, index_offset: int, label_offset: int) -> tf.data.Dataset:
    def shift(ex):
      ex = {**ex, "index": ex["index"] + index_offset}
      if "label" in ex:
        ex["label"] = ex["label"] + label_offset
      return ex
    return ds.map(shift, num_parallel_calls=tf.data.AUTOTUNE)

  def train_batches(self, epoch: int, start: int = 0, seed: int = 0,
                    stream: int = 0) -> Iterator[dict]:
    """One epoch's batches: examples drawn from the data sets in proportion to their sizes
    (deterministic in ``(seed, epoch)``), from batch ``start``."""
    epoch_seed = _epoch_seed(seed, epoch, stream)
    streams = []
    for part, (i_off, l_off) in zip(self.parts, self._offsets()):
      ds, finish = part._train_examples(epoch_seed)
      streams.append(self._shift(ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE),
                                 i_off, l_off))
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
        one = self._shift(part.eval_examples(), i_off, l_off)
        ds = one if ds is None else ds.concatenate(one)
      ds = ds.batch(local)
      self._eval = (ds.cache() if self.cache else ds).prefetch(tf.data.AUTOTUNE)
    return _padded(self._eval, local, self.num_eval_steps())


def _count_examples(builder: tfds.core.DatasetBuilder, split: str,
                    classes: tuple[int, ...]) -> int:
  """How many examples of ``split`` have a label in ``classes`` (images not decoded)."""
  ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
  labels = np.fromiter(tfds.as_numpy(ds.map(lambda ex: ex["label"])), np.int64)
  return int(np.isin(labels, classes).sum())


def _create_union(data_cfg, global_batch_size: int, eval_batch_size: int | None) -> UnionDataset:
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
  parts = []
  for i, name in enumerate(names):
    cfg = dict(data_cfg.items()) if hasattr(data_cfg, "items") else dict(data_cfg)
    cfg.update(name=name, train_split=splits["train_split"][i], eval_split=splits["eval_split"][i])
    parts.append(create_dataset(_Cfg(cfg), global_batch_size, eval_batch_size))
  shapes = {p.input_shape for p in parts}
  if len(shapes) > 1:
    raise KdJaxError(f"config.data.name: the data sets of {data_cfg.name!r} give different "
                     f"input shapes {sorted(shapes)}; set config.data.image_size and channels")
  return UnionDataset(parts, global_batch_size, eval_batch_size or global_batch_size,
                      cache=bool(data_cfg.get("cache", True)))


class _Cfg(dict):
  """A dict read like a ConfigDict (``cfg.name``, ``cfg.get``)."""
  __getattr__ = dict.__getitem__


def _image_size(data_cfg, name: str, features) -> int:
  """The model input size: ``data.image_size``, else the data set's preset, else its images'."""
  size = data_cfg.get("image_size", -1)
  if size in (None, "", -1) or size <= 0:
    size = PRESETS.get(name, {}).get("image_size") or features["image"].shape[0]
  if not size:
    raise KdJaxError(f"config.data.image_size must be set for {name!r}: its images vary in size.")
  return int(size)


def create_dataset(data_cfg, global_batch_size: int, eval_batch_size: int | None = None
                   ) -> Dataset | UnionDataset:
  """Resolves ``config.data`` into a prepared ``Dataset`` (one-line ``KdJaxError`` on problems)."""
  if "+" in data_cfg.name:
    return _create_union(data_cfg, global_batch_size, eval_batch_size)
  name = data_cfg.name
  preset = PRESETS.get(name, {})
  data_dir = data_cfg.get("data_dir") or default_data_dir()
  builder = _builder(name, data_dir)
  _prepare(builder, download=data_cfg.get("download", True))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("kd_jax:data_prepared")
    builder = _builder(name, data_dir)
  info = builder.info
  features = info.features
  if "image" not in features:
    raise KdJaxError(f"config.data.name: data set {name!r} has no 'image' feature "
                     f"(features: {', '.join(features.keys())}).")
  classes = tuple(int(c) for c in data_cfg.get("classes", ()) or ())
  if classes:
    total = features["label"].num_classes if "label" in features else 0
    bad = [c for c in classes if not 0 <= c < total]
    if bad or len(set(classes)) != len(classes):
      raise KdJaxError(f"config.data.classes must be distinct class ids of {name!r} "
                       f"(0..{total - 1}), got {list(classes)}")
  sizes = {}
  for field, split in (("train", data_cfg.train_split), ("eval", data_cfg.eval_split)):
    given = data_cfg.get(f"num_{field}_examples", -1)
    if given and given > 0:
      sizes[field] = int(given)
    elif split.split("[")[0] in info.splits:
      sizes[field] = (_count_examples(builder, split, classes) if classes
                      else info.splits[split].num_examples)
    else:
      raise KdJaxError(f"config.data.{field}_split: data set {name!r} has no split {split!r} "
                       f"(splits: {', '.join(info.splits.keys()) or 'unknown'}).")

  def pick(field, default):
    value = data_cfg.get(field)
    empty = value in (None, "", -1) or (isinstance(value, (tuple, list)) and not value)
    return default if empty else value

  train_augment = pick("train_augment", preset.get("train_augment", "none"))
  eval_preprocess = pick("eval_preprocess", preset.get("eval_preprocess", "none"))
  image_size = _image_size(data_cfg, name, features)
  num_classes = features["label"].num_classes if "label" in features else None
  if classes:
    num_classes = len(classes)
  return Dataset(
      name=name, train_split=data_cfg.train_split, eval_split=data_cfg.eval_split,
      global_batch_size=global_batch_size,
      eval_batch_size=eval_batch_size or global_batch_size,
      image_size=int(image_size), channels=data_cfg.get("channels") or None,
      train_augment=train_augment, eval_preprocess=eval_preprocess,
      mean=tuple(pick("mean", preset.get("mean", (0.5,)))),
      std=tuple(pick("std", preset.get("std", (0.5,)))),
      unlabeled=bool(data_cfg.get("unlabeled", False)),
      cache=bool(data_cfg.get("cache", True)),
      labeled_fraction=float(data_cfg.get("labeled_fraction", 1.0)),
      labeled_seed=int(data_cfg.get("labeled_seed", 0)),
      classes=classes or None, builder=builder, num_classes=num_classes,
      num_train_examples=sizes["train"], num_eval_examples=sizes["eval"],
  )


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What a model needs to know of a data set, read from its TFDS metadata alone."""
  input_shape: tuple[int, int, int]
  num_classes: int | None
  num_train_examples: int | None  # None: the metadata holds no split sizes (not prepared).
  num_eval_examples: int | None = None
  prepared: bool = True  # Every data set of it is prepared in its data_dir.


def describe(data_cfg) -> DataInfo:
  """``config.data``'s input shape, classes, split sizes and whether it is prepared, without
  preparing or reading the data (benchmarks on random batches of the real shapes, dry runs)."""
  infos = []

  def size(info, name, field, default):
    given = data_cfg.get(f"num_{field}_examples", -1)
    split = data_cfg.get(f"{field}_split", default).split("+")[0]
    base = split.split("[")[0]
    if given and given > 0:
      return int(given)
    if base in info.splits:
      return info.splits[base].num_examples
    return KNOWN_SPLIT_SIZES.get(name, {}).get(base) if split == base else None

  for name, builder in _builders(data_cfg):
    info = builder.info
    image = info.features["image"].shape
    image_size = _image_size(data_cfg, name, info.features)
    channels = data_cfg.get("channels") or image[-1] or 3
    classes = tuple(data_cfg.get("classes", ()) or ())
    num_classes = (len(classes) if classes else
                   info.features["label"].num_classes if "label" in info.features else None)
    infos.append(DataInfo((int(image_size), int(image_size), int(channels)), num_classes,
                          size(info, name, "train", "train"), size(info, name, "eval", "test"),
                          builder.is_prepared()))

  def total(values):
    return sum(values) if all(v is not None for v in values) else None

  return DataInfo(infos[0].input_shape,
                  sum(i.num_classes or 0 for i in infos) or None,
                  total([i.num_train_examples for i in infos]),
                  total([i.num_eval_examples for i in infos]),
                  all(i.prepared for i in infos))

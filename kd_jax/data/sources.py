"""Where data comes from: TFDS builders (the embedded digits, image folders, any TFDS data
set), their preparation in the TFDS data_dir (downloaded where it can be, one-line errors
where it cannot), and the per-data-set presets (augmentation, normalisation, input size)."""
from __future__ import annotations

import contextlib
import difflib
import io
import os
import socket
import sys
import urllib.parse
from typing import Any

import jax
import numpy as np
import tensorflow_datasets as tfds

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
    "cifar10": dict(train_augment="cifar", eval_preprocess="none", augment_on="device",
                    mean=CIFAR_MEAN["cifar10"], std=CIFAR_STD["cifar10"], image_size=32),
    "cifar100": dict(train_augment="cifar", eval_preprocess="none", augment_on="device",
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


def builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
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


def _first_line(err: Exception) -> str:
  return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _not_downloaded(name: str, data_dir: str, err: Exception) -> KdJaxError:
  what = _first_line(err)
  manual = (" ImageNet needs the manual download: put ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar in {data_dir}/downloads/manual first."
            if name.startswith("imagenet") else "")
  return KdJaxError(
      f"data set {name!r} is not prepared in {data_dir} and could not be downloaded "
      f"({type(err).__name__}: {what[:200]}).{manual} Run `tfds build {name} "
      f"--data_dir={data_dir}` on a machine with network and copy {data_dir}/{name} "
      f"here, or set --config.data.data_dir to where it is prepared.")


def builders(data_cfg) -> list[tuple[str, tfds.core.DatasetBuilder]]:
  """``(name, builder)`` of each data set of ``config.data`` (several joined by ``+``)."""
  data_dir = data_cfg.get("data_dir") or default_data_dir()
  return [(name, builder(name, data_dir)) for name in data_cfg.name.split("+")]


def check_metadata(data_cfg, name: str, builder: tfds.core.DatasetBuilder) -> None:
  """The refusals that data set ``name``'s metadata decides (an image feature, class ids, the
  splits once it is prepared), one line each: ``pipelines.create_dataset`` makes them, and so
  does a job's plan (``data.info.describe``) before anything trains."""
  features = builder.info.features
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
  if not builder.is_prepared():
    return  # Its splits are known once it is.
  splits = builder.info.splits
  for field, split in (("train", data_cfg.get("train_split", "train")),
                       ("eval", data_cfg.get("eval_split", "test"))):
    given = data_cfg.get(f"num_{field}_examples", -1)
    if not (given and given > 0) and split.split("[")[0] not in splits:
      raise KdJaxError(f"config.data.{field}_split: data set {name!r} has no split {split!r} "
                       f"(splits: {', '.join(splits.keys()) or 'unknown'}).")


def check_available(data_cfg) -> None:
  """Raises the one-line error that preparing ``config.data`` would raise, in seconds and
  before anything trains, where a data set is neither prepared nor local and downloads are
  off or its host cannot be reached (no network)."""
  for name, builder in builders(data_cfg):
    if builder.is_prepared() or _is_local(builder):
      continue
    if not data_cfg.get("download", True):
      raise _not_prepared(name, _root(builder))
    err = _unreachable(builder.info.homepage or "")
    if err is not None:
      raise _not_downloaded(name, _root(builder), err)


def prepare_local(data_cfg) -> None:
  """Prepares the data sets of ``config.data`` that need no network (embedded, folders)."""
  for _, builder in builders(data_cfg):
    if _is_local(builder):
      prepare(builder, download=True)


def prepare(builder: tfds.core.DatasetBuilder, download: bool) -> None:
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
  except KdJaxError:
    raise
  except Exception as err:  # pylint: disable=broad-except
    if local:  # Nothing to download: say what failed, not how to get it elsewhere.
      raise KdJaxError(f"could not prepare data set {name!r} in {data_dir}: "
                       f"{type(err).__name__}: {_first_line(err)[:200]}") from None
    raise _not_downloaded(name, data_dir, err) from None


def count_examples(builder: tfds.core.DatasetBuilder, split: str,
                    classes: tuple[int, ...]) -> int:
  """How many examples of ``split`` have a label in ``classes`` (images not decoded)."""
  ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
  labels = np.fromiter(tfds.as_numpy(ds.map(lambda ex: ex["label"])), np.int64)
  return int(np.isin(labels, classes).sum())


def input_size(data_cfg, name: str, features) -> int:
  """The model input size: ``data.image_size``, else the data set's preset, else its images'."""
  size = data_cfg.get("image_size", -1)
  if size in (None, "", -1) or size <= 0:
    size = PRESETS.get(name, {}).get("image_size") or features["image"].shape[0]
  if not size:
    raise KdJaxError(f"config.data.image_size must be set for {name!r}: its images vary in size.")
  return int(size)


def preset_value(data_cfg, name: str, field: str, default):
  """``config.data.<field>``, else data set ``name``'s preset, else ``default`` (empty values:
  None, '', -1, ())."""
  value = data_cfg.get(field)
  empty = value in (None, "", -1) or (isinstance(value, (tuple, list)) and not value)
  return PRESETS.get(name, {}).get(field, default) if empty else value


def augmentation(data_cfg, name: str) -> tuple[str, str]:
  """``(train_augment, augment_on)`` of data set ``name``: the config's, else its preset's.
  A preset's device path (CIFAR) falls back to the host for inception crops; asked for
  explicitly with them, it is refused."""
  train_augment = preset_value(data_cfg, name, "train_augment", "none")
  augment_on = preset_value(data_cfg, name, "augment_on", "host")
  if augment_on == "device" and train_augment == "inception":
    if data_cfg.get("augment_on"):
      raise KdJaxError("config.data.augment_on='device' takes train_augment none, cifar or "
                       "pad_crop; 'inception' crops are prepared on the host")
    augment_on = "host"
  if "+" in str(data_cfg.get("name", name)):
    augment_on = "host"  # Unions are prepared on the host (kd_jax.data.union).
  return str(train_augment), str(augment_on)


def normalization(data_cfg, name: str, channels: int) -> tuple[tuple[float, ...], ...]:
  """``(mean, std)`` per channel: the config's, else the preset's, else 0.5 (one value
  given: every channel)."""
  mean = tuple(preset_value(data_cfg, name, "mean", (0.5,)))
  std = tuple(preset_value(data_cfg, name, "std", (0.5,)))
  if len(mean) != channels:
    mean, std = mean[:1] * channels, std[:1] * channels
  return mean, std

"""Your own images: a local folder as a TFDS data set (``data.name = "folder:<path>"``).

Layout (as torchvision's ``ImageFolder`` per split)::

  <path>/train/<class name>/*.png|jpg|jpeg|bmp|gif
  <path>/test/<class name>/...        (any split names: the first level of folders)

or, with no split level, ``<path>/<class name>/*.png``: one split ``train``; hold part of it
out with TFDS slicing (``data.train_split="train[:90%]"``, ``data.eval_split="train[90%:]"``).
A class's images are the files directly in its folder (``ImageFolder`` also reads its
subfolders); a folder that fits neither layout is refused, not guessed at.

Class ids are the class folder names sorted (over all splits). The folder is prepared once
into the TFDS data_dir (``kd_jax_image_folder/<folder name>_<hash>``, PNG-encoded images,
``label``, ``index`` = the position in its split, in sorted file order), so everything else
(split slicing, per-host sharding, caching, the example index CRD and teacher caches key on)
works as for any TFDS data set. The hash covers the folder's path and every file's name,
size and modification time: changed files are prepared again. Images are RGB, or grey
(1 channel) if every image is grey (with or without alpha); alpha is dropped, and 16-bit
grey images (PNG) are scaled to 8 bits (``round(x / 257)``: 65535 -> 255). With images of
different sizes ``data.image_size`` must be set (each image is resized to it).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.errors import KdJaxError

PREFIX = "folder:"
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Pillow's modes of 16-bit grey images (a 16-bit PNG opens as "I;16"; older Pillow: "I").
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_GREY = frozenset({"1", "L", "LA", "La", "F", *_WIDE_GREY})


@dataclasses.dataclass(frozen=True)
class Listing:
  """The image files of a folder: ``splits = {split: [(path, class name), ...]}`` sorted."""
  root: str
  splits: dict
  classes: tuple
  channels: int
  shape: tuple | None  # (H, W) if every image has it, else None.

  def fingerprint(self) -> str:
    digest = hashlib.sha256(self.root.encode())
    for split, files in sorted(self.splits.items()):
      for path, label in files:
        stat = os.stat(path)
        digest.update(f"{split}|{label}|{os.path.relpath(path, self.root)}|{stat.st_size}|"
                      f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def _images(folder: str) -> list[str]:
  return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                if f.lower().endswith(EXTENSIONS) and os.path.isfile(os.path.join(folder, f)))


def _subfolders(folder: str) -> list[str]:
  return sorted(f for f in os.listdir(folder)
                if os.path.isdir(os.path.join(folder, f)) and not f.startswith("."))


def list_folder(root: str) -> Listing:
  """Reads the layout of ``root`` (file names and image headers only); one-line errors."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root = os.path.abspath(os.path.expanduser(root))
  where = f"config.data.name: {PREFIX}{root}"
  if not os.path.isdir(root):
    raise KdJaxError(f"{where}: no such folder")
  # Each first-level folder's (subfolders, images), listed once; empty ones play no part.
  contents = {d: (_subfolders(os.path.join(root, d)), _images(os.path.join(root, d)))
              for d in _subfolders(root)}
  contents = {d: (sub, images) for d, (sub, images) in contents.items() if sub or images}
  top = list(contents)
  # Split level present when the first-level folders hold class folders, not images.
  nested = bool(top) and all(sub and not images for sub, images in contents.values())
  if top and not nested:
    split_like = [d for d, (sub, images) in contents.items() if sub and not images]
    if split_like or all(sub for sub, _ in contents.values()):  # Neither layout: refused.
      mixed = [d for d, (sub, images) in contents.items() if sub and images]
      if mixed:  # A stray image beside a split's class folders, or folders in a class folder.
        stray = contents[mixed[0]][1]
        raise KdJaxError(
            f"{where}: {mixed[0]}/ holds both folders and {len(stray)} image(s) "
            f"(e.g. {os.path.basename(stray[0])}); expected "
            f"<folder>/<split>/<class>/<image> (no image directly in a split folder) or "
            f"<folder>/<class>/<image> (no folder in a class folder)")
      classes = [d for d in top if d not in split_like]
      raise KdJaxError(f"{where}: {split_like[0]}/ holds folders only (a split?) but "
                       f"{classes[0]}/ holds images (a class?); expected <folder>/<split>/"
                       f"<class>/<image> or <folder>/<class>/<image>")
  split_dirs = {d: os.path.join(root, d) for d in top} if nested else {"train": root}
  splits = {}
  for split, folder in split_dirs.items():
    files = [(path, label) for label in _subfolders(folder)
             for path in _images(os.path.join(folder, label))]
    if files:
      splits[split] = files
  if not splits:
    raise KdJaxError(f"{where}: no images found; expected <folder>/<split>/<class>/<image> or "
                     f"<folder>/<class>/<image> ({', '.join(EXTENSIONS)})")
  classes = tuple(sorted({label for files in splits.values() for _, label in files}))
  modes, shapes = set(), set()
  for files in splits.values():
    for path, _ in files:
      try:
        with Image.open(path) as image:  # Reads the header only.
          modes.add(image.mode)
          shapes.add((image.height, image.width))
      except OSError as err:
        raise KdJaxError(f"{where}: cannot read image {path}: {err}") from None
  channels = 1 if modes <= _GREY else 3
  return Listing(root, splits, classes, channels, shapes.pop() if len(shapes) == 1 else None)


class ImageFolderConfig(tfds.core.BuilderConfig):
  def __init__(self, listing: Listing):
    base = re.sub(r"[^a-z0-9_]+", "_", os.path.basename(listing.root).lower()).strip("_")
    super().__init__(name=f"{base or 'images'}_{listing.fingerprint()}",
                     description=f"Images of {listing.root}")
    self.listing = listing


class KdJaxImageFolder(tfds.core.GeneratorBasedBuilder):
  """A local folder of images, one class per folder (see the module docstring)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Images PNG-encoded, labels from sorted class folder names.",
                   "1.1.0": "16-bit grey images scaled to 8 bits (1.0.0 clipped them at 255); "
                            "grey images with alpha are grey."}

  def _info(self) -> tfds.core.DatasetInfo:
    listing = self.builder_config.listing
    shape = (*(listing.shape or (None, None)), listing.channels)
    return self.dataset_info_from_configs(
        description=f"The images under {listing.root}, one class per folder.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=shape),
            "label": tfds.features.ClassLabel(names=list(listing.classes)),
            "index": np.int64,
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Local files: nothing to download.
    return {split: self._generate_examples(files)
            for split, files in self.builder_config.listing.splits.items()}

  def _generate_examples(self, files):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    listing = self.builder_config.listing
    for position, (path, label) in enumerate(files):
      try:
        with Image.open(path) as image:
          pixels = decode(image, listing.channels)
      except OSError as err:  # A file whose header reads but whose pixels do not (truncated).
        raise KdJaxError(f"config.data.name: {PREFIX}{listing.root}: cannot read image {path}: "
                         f"{err}") from None
      yield position, {"image": pixels, "label": label, "index": position}


def decode(image, channels: int) -> np.ndarray:
  """A PIL image as ``[H, W, channels]`` uint8 (1: grey, 3: RGB; alpha dropped)."""
  if image.mode in _WIDE_GREY:
    # Pillow's convert("L") or ("RGB") clips a 16-bit value at 255 instead of scaling it.
    wide = np.asarray(image, dtype=np.float64)
    grey = np.rint(np.clip(wide, 0, 65535) / 257).astype(np.uint8)[..., None]
    return np.repeat(grey, channels, axis=-1)
  pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
  return pixels if pixels.ndim == 3 else pixels[..., None]


def builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """The TFDS builder of ``folder:<path>`` in ``data_dir`` (not yet prepared)."""
  listing = list_folder(name[len(PREFIX):])
  return KdJaxImageFolder(data_dir=data_dir, config=ImageFolderConfig(listing))

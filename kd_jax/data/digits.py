"""The embedded default data set: scikit-learn's 8x8 handwritten digits as a TFDS builder.

scikit-learn ships the 1,797 images (UCI "optdigits" test set, 10 classes) inside
the package, so this data set is prepared offline. Pixels in sklearn are integers
0..16; they are stored as uint8 0..255 (``round(v * 255 / 16)``) with shape
(8, 8, 1). Splits are fixed and stratified: ``test`` holds 36 images of each class
(360), ``train`` the remaining 1,437, drawn with ``numpy.random.RandomState(0)``.
Each example carries ``index``: its position in its split (0..N-1), which CRD
memory banks and proxy-data pipelines key on.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

TEST_PER_CLASS = 36
IMAGE_SHAPE = (8, 8, 1)


def split_indices() -> dict[str, np.ndarray]:
  """Indices into ``sklearn.datasets.load_digits()`` for each split (sorted)."""
  from sklearn.datasets import load_digits
  labels = load_digits().target
  rng = np.random.RandomState(0)
  test = []
  for c in range(10):
    members = np.flatnonzero(labels == c)
    test.extend(rng.choice(members, TEST_PER_CLASS, replace=False))
  test = np.sort(np.asarray(test))
  train = np.setdiff1d(np.arange(len(labels)), test)
  return {"train": train, "test": test}


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 digits (1,797 images, 10 classes), offline."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Fixed stratified train (1,437) / test (360) splits."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=IMAGE_SHAPE),
            "label": tfds.features.ClassLabel(num_classes=10),
            "index": np.int64,
        }),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # The data ships with scikit-learn: nothing to download.
    return {name: self._generate_examples(idx) for name, idx in split_indices().items()}

  def _generate_examples(self, indices: np.ndarray):
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    for position, i in enumerate(indices):
      yield int(position), {
          "image": images[i],
          "label": int(digits.target[i]),
          "index": position,
      }


class SklearnDigitsTransposed(SklearnDigits):
  """The same digits and splits, each image transposed (mirrored about its diagonal): a
  downstream task no model trained on the upright digits has seen (10 classes), for
  transfer evaluation on the embedded data."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "sklearn_digits with every image transposed."}

  def _generate_examples(self, indices: np.ndarray):
    for key, ex in super()._generate_examples(indices):
      yield key, {**ex, "image": np.ascontiguousarray(ex["image"].transpose(1, 0, 2))}

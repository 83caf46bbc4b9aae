"""The embedded sklearn_digits TFDS builder."""
import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from kd_jax.data import digits


@pytest.fixture(scope="module")
def splits(tfds_data_dir):
  builder = tfds.builder("sklearn_digits", data_dir=tfds_data_dir)
  builder.download_and_prepare()
  return {s: tfds.as_numpy(builder.as_dataset(split=s, batch_size=-1)) for s in ("train", "test")}


def test_split_sizes(splits):
  assert len(splits["train"]["label"]) == 1437
  assert len(splits["test"]["label"]) == 360


def test_test_split_is_stratified(splits):
  assert np.bincount(splits["test"]["label"], minlength=10).tolist() == [36] * 10


def test_splits_partition_the_data(splits):
  idx = digits.split_indices()
  assert len(np.intersect1d(idx["train"], idx["test"])) == 0
  assert len(np.union1d(idx["train"], idx["test"])) == 1797


def test_images_and_labels_match_sklearn(splits):
  d = load_digits()
  train = digits.split_indices()["train"]
  order = np.argsort(splits["train"]["index"])
  images = splits["train"]["image"][order]
  assert images.shape == (1437, 8, 8, 1) and images.dtype == np.uint8
  np.testing.assert_array_equal(splits["train"]["label"][order], d.target[train])
  np.testing.assert_array_equal(images[..., 0], np.round(d.images[train] * 255 / 16).astype(np.uint8))


def test_index_is_position_in_split(splits):
  assert sorted(splits["train"]["index"].tolist()) == list(range(1437))
  assert sorted(splits["test"]["index"].tolist()) == list(range(360))


def test_split_indices_are_deterministic():
  a, b = digits.split_indices(), digits.split_indices()
  np.testing.assert_array_equal(a["test"], b["test"])

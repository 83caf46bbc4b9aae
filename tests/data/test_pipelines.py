"""tfds -> tf.data -> batches: digits for real, cifar100 and imagenet2012 with mock data."""
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from kd_jax.data import digits, pipelines, sources
from kd_jax.errors import KdJaxError


def _cfg(**kw):
  base = dict(name="sklearn_digits", train_split="train", eval_split="test")
  return ml_collections.ConfigDict({**base, **kw})


def _range(mean, std):
  lo = min((0 - m) / s for m, s in zip(mean, std))
  hi = max((1 - m) / s for m, s in zip(mean, std))
  return lo - 1e-5, hi + 1e-5


@pytest.fixture(scope="module")
def digits_ds():
  return pipelines.create_dataset(_cfg(), 32)


def test_digits_train_batch_shapes(digits_ds):
  batch = next(iter(digits_ds.train_batches(0)))
  assert batch["image"].shape == (32, 8, 8, 1) and batch["image"].dtype == np.float32
  assert batch["label"].dtype == np.int32 and batch["index"].dtype == np.int32
  lo, hi = _range(digits_ds.mean, digits_ds.std)
  assert lo <= batch["image"].min() and batch["image"].max() <= hi


def test_normalisation_statistics_can_be_set():
  data = pipelines.create_dataset(_cfg(mean=(0.0,), std=(1.0,)), 32)
  image = next(iter(data.eval_batches()))["image"]
  assert (data.mean, data.std) == ((0.0,), (1.0,))
  assert image.min() == 0.0 and image.max() == 1.0  # Digits' pixels span 0..255.


def test_digits_epoch_covers_split_once(digits_ds):
  seen = np.concatenate([b["index"] for b in digits_ds.train_batches(0)])
  assert len(seen) == digits_ds.steps_per_epoch * 32 == 1437 // 32 * 32
  assert len(np.unique(seen)) == len(seen)


def test_train_order_is_deterministic_per_epoch(digits_ds):
  first = [b["index"] for b in digits_ds.train_batches(1, seed=3)]
  again = [b["index"] for b in digits_ds.train_batches(1, seed=3)]
  other = [b["index"] for b in digits_ds.train_batches(2, seed=3)]
  np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
  assert not np.array_equal(np.concatenate(first), np.concatenate(other))


def _assert_resume_gives_the_remaining_batches(data, start=5):
  """Epoch 4 from batch ``start`` is the uninterrupted epoch's tail, images included."""
  full = list(data.train_batches(4, seed=0))
  tail = list(data.train_batches(4, start=start, seed=0))
  assert len(tail) == len(full) - start
  for a, b in zip(full[start:], tail):
    np.testing.assert_array_equal(a["index"], b["index"])
    np.testing.assert_array_equal(a["image"], b["image"])
  return full


def test_resume_mid_epoch_gives_the_remaining_batches(digits_ds):
  _assert_resume_gives_the_remaining_batches(digits_ds)


def test_resume_mid_epoch_gives_the_same_augmented_batches(digits_ds):
  """Augmentation (pad 1, crop, flip on 8x8 digits) is a function of (seed, epoch, example):
  a run resumed mid-epoch sees the images the uninterrupted run saw."""
  augmented = pipelines.create_dataset(_cfg(train_augment="cifar"), 32)
  full = _assert_resume_gives_the_remaining_batches(augmented)
  plain = list(digits_ds.train_batches(4, seed=0))
  changed = [not np.array_equal(a["image"][i], p["image"][i])
             for a, p in zip(full, plain) for i in range(32)]
  assert all(np.array_equal(a["index"], p["index"]) for a, p in zip(full, plain))
  assert sum(changed) > len(changed) // 2  # Most examples moved or flipped.


def test_eval_is_padded_and_masked(digits_ds):
  batches = list(digits_ds.eval_batches())
  assert len(batches) == digits_ds.num_eval_steps() == 12  # ceil(360 / 32)
  assert sum(b["mask"].sum() for b in batches) == 360
  assert all(b["image"].shape == (32, 8, 8, 1) for b in batches)


def test_channels_and_resize():
  ds = pipelines.create_dataset(_cfg(image_size=16, channels=3), 8)
  batch = next(iter(ds.train_batches(0)))
  assert batch["image"].shape == (8, 16, 16, 3)
  np.testing.assert_array_equal(batch["image"][..., 0], batch["image"][..., 2])


def test_unlabeled_split_drops_labels_keeps_index():
  ds = pipelines.create_dataset(_cfg(unlabeled=True), 16)
  batch = next(iter(ds.train_batches(0)))
  assert "label" not in batch and batch["index"].shape == (16,)
  assert not ds.has_labels


def test_unlabeled_proxy_data_still_evaluates_with_labels():
  ds = pipelines.create_dataset(_cfg(unlabeled=True), 16, 40)
  batch = next(iter(ds.eval_batches()))
  assert batch["label"].shape == (40,)


def test_classes_keep_only_those_examples_relabelled_in_the_order_given():
  ds = pipelines.create_dataset(_cfg(classes=(7, 2)), 16, 16)
  full = pipelines.create_dataset(_cfg(), 16, 16)
  assert ds.num_classes == 2
  assert ds.num_eval_examples == 72  # 36 test images per class.
  labels = np.concatenate([b["label"][b["mask"] > 0] for b in ds.eval_batches()])
  images = np.concatenate([b["image"][b["mask"] > 0] for b in ds.eval_batches()])
  assert sorted(set(labels.tolist())) == [0, 1] and (labels == 0).sum() == 36
  # Label 0 is digit 7: the same images as the unfiltered test split's sevens.
  sevens = np.concatenate([b["image"][(b["mask"] > 0) & (b["label"] == 7)]
                           for b in full.eval_batches()])
  np.testing.assert_array_equal(np.sort(images[labels == 0].ravel()), np.sort(sevens.ravel()))
  from sklearn.datasets import load_digits
  train_labels = load_digits().target[digits.split_indices()["train"]]
  assert ds.num_train_examples == int(np.isin(train_labels, [7, 2]).sum())
  train = list(ds.train_batches(0))
  assert len(train) == ds.steps_per_epoch == ds.num_train_examples // 16
  assert all(set(b["label"].tolist()) <= {0, 1} for b in train)


def test_classes_out_of_range_fail_in_one_line():
  with pytest.raises(KdJaxError, match=r"config.data.classes must be distinct class ids"):
    pipelines.create_dataset(_cfg(classes=(3, 10)), 16)


def test_transposed_digits_hold_the_transposed_images_with_the_same_labels():
  plain = next(iter(pipelines.create_dataset(_cfg(), 16, 360).eval_batches()))
  trans = next(iter(pipelines.create_dataset(_cfg(name="sklearn_digits_transposed"), 16,
                                             360).eval_batches()))
  np.testing.assert_array_equal(trans["label"], plain["label"])
  np.testing.assert_allclose(trans["image"], plain["image"].transpose(0, 2, 1, 3))


def test_cifar100_mock_train_batch_augmented_on_the_host():
  with tfds.testing.mock_data(num_examples=96):
    ds = pipelines.create_dataset(
        _cfg(name="cifar100", num_train_examples=96, num_eval_examples=96, augment_on="host"),
        16)
    batch = next(iter(ds.train_batches(0)))
    evals = list(ds.eval_batches())
  assert ds.train_augment == "cifar" and ds.num_classes == 100 and ds.device_augment is None
  assert batch["image"].shape == (16, 32, 32, 3) and batch["image"].dtype == np.float32
  lo, hi = _range(sources.CIFAR_MEAN["cifar100"], sources.CIFAR_STD["cifar100"])
  assert lo <= batch["image"].min() and batch["image"].max() <= hi
  assert ((0 <= batch["label"]) & (batch["label"] < 100)).all()
  assert ((0 <= batch["index"]) & (batch["index"] < 96)).all()
  assert sum(b["mask"].sum() for b in evals) == 96


def test_cifar_augmentation_is_crop_of_padded_image():
  """Every augmented image is a 32x32 window of the zero-padded (40x40) image, maybe flipped;
  over 64 seeds the windows and flips vary (torchvision's RandomCrop(32, 4) + flip: 81
  offsets, half flipped), and the same seed gives the same image."""
  import tensorflow as tf
  from kd_jax.data import augment
  image = tf.reshape(tf.range(32 * 32 * 3) % 251 + 1, (32, 32, 3))
  image = tf.cast(image, tf.uint8)
  padded = np.pad(image.numpy(), ((4, 4), (4, 4), (0, 0)))
  windows = {(y, x): padded[y:y + 32, x:x + 32] for y in range(9) for x in range(9)}
  seen = []
  for i in range(64):
    out = augment.pad_crop_flip(image, tf.constant([7, i], tf.int64), pad=4, flip=True).numpy()
    found = [(yx, flipped) for yx, w in windows.items() for flipped, v in ((False, w), (True, w[:, ::-1]))
             if np.array_equal(out, v)]
    assert len(found) == 1, i
    seen.append(found[0])
  offsets = {yx for yx, _ in seen}
  flips = sum(flipped for _, flipped in seen)
  assert len(offsets) >= 20 and offsets - {(4, 4)}  # Off-centre windows, many of them.
  assert 16 <= flips <= 48
  again = augment.pad_crop_flip(image, tf.constant([7, 0], tf.int64), pad=4, flip=True).numpy()
  assert np.array_equal(again, windows[seen[0][0]][:, ::-1] if seen[0][1] else windows[seen[0][0]])


def test_imagenet_mock_train_and_eval():
  with tfds.testing.mock_data(num_examples=32):
    ds = pipelines.create_dataset(
        _cfg(name="imagenet2012", eval_split="validation", image_size=64,
             num_train_examples=32, num_eval_examples=32), 8)
    train = next(iter(ds.train_batches(0)))
    evals = list(ds.eval_batches())
  assert ds.train_augment == "inception" and ds.eval_preprocess == "center_crop"
  assert train["image"].shape == (8, 64, 64, 3) and evals[0]["image"].shape == (8, 64, 64, 3)
  lo, hi = _range(sources.IMAGENET_MEAN, sources.IMAGENET_STD)
  for x in (train["image"], evals[0]["image"]):
    assert lo <= x.min() and x.max() <= hi
  assert ((0 <= train["label"]) & (train["label"] < 1000)).all()
  assert sum(b["mask"].sum() for b in evals) == 32


def test_unknown_dataset_is_one_clear_line():
  with pytest.raises(KdJaxError) as info:
    pipelines.create_dataset(_cfg(name="cifar1000"), 8)
  # Ours, then TFDS's suggestion (its wording is the library's): one line.
  assert str(info.value).startswith("config.data.name: unknown data set 'cifar1000'")
  assert "\n" not in str(info.value)
  assert "cifar100" in str(info.value).split("'cifar1000'", 1)[1]  # The suggestion.


def test_unprepared_dataset_that_cannot_download(tmp_path, monkeypatch):
  def no_network(self, *a, **k):
    raise ConnectionError("network unreachable")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
  with pytest.raises(KdJaxError, match=r"'cifar10' is not prepared in .* could not be downloaded"
                     r".*tfds build cifar10"):
    pipelines.create_dataset(_cfg(name="cifar10", data_dir=str(tmp_path)), 8)


def test_labeled_fraction_marks_the_same_random_subset_in_every_epoch_and_seed():
  ds = pipelines.create_dataset(_cfg(labeled_fraction=0.1), 64)
  table = ds.labeled_examples()
  assert table.shape == (1437,) and table.sum() == 144  # round(0.1 * 1437)
  for epoch, seed in ((0, 0), (3, 1)):
    batch = next(iter(ds.train_batches(epoch, 0, seed)))
    np.testing.assert_array_equal(batch["label_mask"], table[batch["index"]].astype(np.float32))
  assert "label_mask" not in next(iter(ds.eval_batches()))


def test_a_union_of_data_sets_offsets_labels_and_indices():
  """digits + transposed digits: 20 classes (the second's labels follow the first's), the
  second's indices after the first's 1,437, eval splits one after the other."""
  ds = pipelines.create_dataset(_cfg(name="sklearn_digits+sklearn_digits_transposed"), 32, 40)
  assert ds.num_classes == 20 and ds.num_train_examples == 2 * 1437
  assert ds.index_size == 2 * 1437 and ds.num_eval_examples == 720
  assert ds.input_shape == (8, 8, 1) and ds.steps_per_epoch == 2874 // 32
  evals = list(ds.eval_batches())
  labels = np.concatenate([b["label"][b["mask"] > 0] for b in evals])
  assert len(labels) == 720 and labels[:360].max() <= 9 and labels[360:].min() >= 10
  train = list(ds.train_batches(0, seed=1))
  assert len(train) == ds.steps_per_epoch
  labels = np.concatenate([b["label"] for b in train])
  index = np.concatenate([b["index"] for b in train])
  assert ((labels >= 10) == (index >= 1437)).all()  # Offsets move together.
  assert 0.4 < (labels >= 10).mean() < 0.6         # Drawn in proportion to the sizes.
  again = list(ds.train_batches(0, seed=1))
  np.testing.assert_array_equal(np.concatenate([b["index"] for b in again]), index)
  resumed = list(ds.train_batches(0, start=5, seed=1))
  np.testing.assert_array_equal(resumed[0]["index"], train[5]["index"])
  by_index = ds.train_labels()  # CRD's class index: the same labels at the same indices.
  assert by_index.shape == (2874,) and (by_index >= 0).all()
  np.testing.assert_array_equal(by_index[index], labels)


def test_an_unlabelled_proxy_beside_a_labelled_target_masks_the_proxys_labels():
  """Unlabelled digits + labelled transposed digits: the label space is the target's (10
  classes, not offset), batches mark which labels count, evaluation is the target's."""
  ds = pipelines.create_dataset(_cfg(name="sklearn_digits+sklearn_digits_transposed",
                                     unlabeled_parts=("sklearn_digits",)), 32, 40)
  assert ds.has_labels and ds.num_classes == 10 and ds.labeled_fraction == 0.5
  assert ds.index_size == 2 * 1437 and ds.num_eval_examples == 360
  train = list(ds.train_batches(0, seed=1))
  index = np.concatenate([b["index"] for b in train])
  mask = np.concatenate([b["label_mask"] for b in train])
  labels = np.concatenate([b["label"] for b in train])
  np.testing.assert_array_equal(mask, (index >= 1437).astype(np.float32))
  assert (labels[mask == 0] == 0).all() and labels[mask == 1].max() == 9
  by_index = ds.train_labels()
  assert (by_index[:1437] == -1).all() and (by_index[1437:] >= 0).all()
  np.testing.assert_array_equal(by_index[index[mask == 1]], labels[mask == 1])
  transposed = pipelines.create_dataset(_cfg(name="sklearn_digits_transposed"), 40)
  want = np.concatenate([b["label"][b["mask"] > 0] for b in transposed.eval_batches()])
  got = np.concatenate([b["label"][b["mask"] > 0] for b in ds.eval_batches()])
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("parts", [("cifar10",), ("sklearn_digits", "sklearn_digits_transposed")])
def test_unlabeled_parts_must_name_some_of_the_joined_data_sets(parts):
  from kd_jax import config as config_lib
  c = config_lib.base_config()
  c.data.name, c.data.unlabeled_parts = "sklearn_digits+sklearn_digits_transposed", parts
  with pytest.raises(KdJaxError, match=r"^config\.data\.unlabeled_parts must list some \(not "
                     r"all\) of the data sets joined in config\.data\.name"):
    config_lib.validate(c)


def test_a_union_names_one_split_per_data_set_or_one_for_all():
  with pytest.raises(KdJaxError, match=r"^config\.data\.eval_split: 'test\+test\+test' names 3 "
                     r"splits for 2 data sets$"):
    pipelines.create_dataset(_cfg(name="sklearn_digits+sklearn_digits_transposed",
                                  eval_split="test+test+test"), 32)

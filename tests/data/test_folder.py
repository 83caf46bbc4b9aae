"""A local folder of images as a data set: data.name = "folder:<path>"."""
import os
import sys

import ml_collections
import numpy as np
import pytest
from PIL import Image

from kd_jax.data import folder, pipelines
from kd_jax.errors import KdJaxError

from tests import forkserver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASSES = ("zebra", "ant", "cat")  # Class ids: sorted names -> ant 0, cat 1, zebra 2.


def _pixels(label_id: int, k: int, size=(6, 6)) -> np.ndarray:
  """A grey image whose mean encodes its class and number: 10 * (label_id * 5 + k) + 40."""
  return np.full(size, 10 * (label_id * 5 + k) + 40, np.uint8)


def _write(root, splits=("train", "test"), per_class=(4, 2), mode="L", sizes=None):
  for split, n in zip(splits, per_class):
    for name in CLASSES:
      label_id = sorted(CLASSES).index(name)
      d = os.path.join(root, split, name) if split else os.path.join(root, name)
      os.makedirs(d, exist_ok=True)
      for k in range(n):
        size = sizes[k % len(sizes)] if sizes else (6, 6)
        image = Image.fromarray(_pixels(label_id, k, size)).convert(mode)
        image.save(os.path.join(d, f"{k:03d}.{'png' if mode == 'L' else 'jpg'}"))
  return str(root)


def _cfg(root, **kw):
  base = dict(name=f"folder:{root}", train_split="train", eval_split="test",
              mean=(0.0,), std=(1.0 / 255,))  # Normalised pixels = the stored 0..255 values.
  return ml_collections.ConfigDict({**base, **kw})


def test_split_and_class_folders_become_splits_and_sorted_class_ids(tmp_path):
  root = _write(tmp_path / "shapes")
  ds = pipelines.create_dataset(_cfg(root), 6, eval_batch_size=6)
  assert (ds.num_classes, ds.num_train_examples, ds.num_eval_examples) == (3, 12, 6)
  assert ds.input_shape == (6, 6, 1)
  eval_ = [b for b in ds.eval_batches()]
  images = np.concatenate([b["image"] for b in eval_])
  labels = np.concatenate([b["label"] for b in eval_])
  index = np.concatenate([b["index"] for b in eval_])
  # index = the position of the file in the split, files sorted by class folder then name.
  order = np.argsort(index)
  np.testing.assert_array_equal(index[order], np.arange(6))
  np.testing.assert_array_equal(labels[order], [0, 0, 1, 1, 2, 2])
  expected = [_pixels(label, k).mean() for label in range(3) for k in range(2)]
  np.testing.assert_allclose(images[order].mean(axis=(1, 2, 3)), expected, atol=1e-3)


def test_every_train_image_once_per_epoch(tmp_path):
  ds = pipelines.create_dataset(_cfg(_write(tmp_path / "shapes")), 4)
  seen = np.concatenate([b["index"] for b in ds.train_batches(0)])
  assert sorted(seen) == list(range(12))


def test_a_folder_without_split_level_is_one_train_split_that_slices(tmp_path):
  root = _write(tmp_path / "flat", splits=("",), per_class=(5,))
  listing = folder.list_folder(root)
  assert list(listing.splits) == ["train"] and listing.classes == ("ant", "cat", "zebra")
  ds = pipelines.create_dataset(_cfg(root, train_split="train[:80%]",
                                     eval_split="train[80%:]"), 4)
  assert (ds.num_train_examples, ds.num_eval_examples) == (12, 3)


def test_colour_images_of_several_sizes_need_an_image_size(tmp_path):
  root = _write(tmp_path / "rgb", mode="RGB", sizes=[(6, 6), (9, 7)])
  with pytest.raises(KdJaxError, match="config.data.image_size must be set"):
    pipelines.create_dataset(_cfg(root), 4)
  ds = pipelines.create_dataset(_cfg(root, image_size=16), 4)
  assert next(iter(ds.train_batches(0)))["image"].shape == (4, 16, 16, 3)


# 16-bit values and their 8-bit images, round(x / 257): 128 / 257 = 0.498 -> 0, 129 -> 1.
WIDE = np.array([[0, 128, 129], [257, 384, 1000], [32896, 65279, 65535]], np.uint16)
WIDE_AS_8_BIT = np.array([[0, 0, 1], [1, 1, 4], [128, 254, 255]], np.uint8)


def _eval_images(root, **kw) -> np.ndarray:
  """The eval split's images as stored (0..255, to float32 rounding), in file order."""
  batches = list(pipelines.create_dataset(_cfg(root, **kw), 2, eval_batch_size=2).eval_batches())
  keep = np.concatenate([b["mask"] for b in batches]) > 0  # Not the last batch's padding.
  index = np.concatenate([b["index"] for b in batches])[keep]
  return np.concatenate([b["image"] for b in batches])[keep][np.argsort(index)]


def test_sixteen_bit_grey_images_are_scaled_to_eight_bits_not_clipped(tmp_path):
  """Pillow's own conversion clips a 16-bit PNG's values at 255 (all but 0 white)."""
  for split in ("train", "test"):
    for name in ("a", "b"):
      os.makedirs(tmp_path / split / name)
      Image.fromarray(WIDE).save(tmp_path / split / name / "0.png")
  assert Image.open(tmp_path / "test" / "a" / "0.png").mode == "I;16"
  images = _eval_images(tmp_path)
  assert images.shape == (2, 3, 3, 1)
  for image in images:
    np.testing.assert_allclose(image[..., 0], WIDE_AS_8_BIT, atol=1e-3)


def test_sixteen_bit_grey_beside_colour_images_is_scaled_to_grey_rgb(tmp_path):
  for split in ("train", "test"):
    os.makedirs(tmp_path / split / "grey")
    os.makedirs(tmp_path / split / "colour")
    Image.fromarray(WIDE).save(tmp_path / split / "grey" / "0.png")
    Image.fromarray(np.full((3, 3, 3), (10, 20, 30), np.uint8)).save(
        tmp_path / split / "colour" / "0.png")
  colour, grey = _eval_images(tmp_path, mean=(0.0,) * 3, std=(1.0 / 255,) * 3)
  np.testing.assert_allclose(grey, np.repeat(WIDE_AS_8_BIT[..., None], 3, axis=-1), atol=1e-3)
  np.testing.assert_allclose(colour, np.broadcast_to([10, 20, 30], (3, 3, 3)), atol=1e-3)


def test_grey_images_with_alpha_are_one_grey_channel(tmp_path):
  grey_alpha = np.stack([np.full((3, 3), 77, np.uint8), np.arange(9, dtype=np.uint8).reshape(3, 3)],
                        -1)
  for split in ("train", "test"):
    os.makedirs(tmp_path / split / "a")
    Image.fromarray(grey_alpha, "LA").save(tmp_path / split / "a" / "0.png")
  (image,) = _eval_images(tmp_path)
  np.testing.assert_allclose(image, np.full((3, 3, 1), 77), atol=1e-3)


def test_changed_files_are_prepared_again(tmp_path):
  root = _write(tmp_path / "shapes")
  first = pipelines.create_dataset(_cfg(root), 4).num_train_examples
  Image.fromarray(_pixels(0, 9)).save(os.path.join(root, "train", "ant", "new.png"))
  assert (first, pipelines.create_dataset(_cfg(root), 4).num_train_examples) == (12, 13)


def test_missing_or_empty_folders_fail_in_one_line(tmp_path):
  with pytest.raises(KdJaxError, match=r"^config.data.name: folder:.*/nope: no such folder$"):
    pipelines.create_dataset(_cfg(tmp_path / "nope"), 4)
  os.makedirs(tmp_path / "empty" / "train" / "a")
  with pytest.raises(KdJaxError, match="no images found; expected <folder>/<split>/<class>"):
    pipelines.create_dataset(_cfg(tmp_path / "empty"), 4)


def test_an_image_beside_the_class_folders_of_a_split_fails_in_one_line(tmp_path):
  """Not read as a flat folder whose classes are the split names (the layout misread)."""
  root = _write(tmp_path / "shapes")
  Image.fromarray(_pixels(0, 0)).save(os.path.join(root, "train", "stray.png"))
  with pytest.raises(KdJaxError, match=r"^config.data.name: folder:.*/shapes: train/ holds both "
                                       r"folders and 1 image\(s\) \(e.g. stray.png\); expected "):
    pipelines.create_dataset(_cfg(root), 4)


def test_a_class_folder_beside_the_split_folders_fails_in_one_line(tmp_path):
  """Not read as a flat folder (the splits' class folders ignored, 'extra' the one class)."""
  root = _write(tmp_path / "shapes")
  os.makedirs(os.path.join(root, "extra"))
  Image.fromarray(_pixels(0, 0)).save(os.path.join(root, "extra", "0.png"))
  with pytest.raises(KdJaxError, match=r"^config.data.name: folder:.*/shapes: test/ holds folders "
                                       r"only \(a split\?\) but extra/ holds images \(a class\?\); "
                                       r"expected "):
    pipelines.create_dataset(_cfg(root), 4)


def test_an_image_whose_pixels_cannot_be_read_fails_in_one_line_naming_it(tmp_path):
  root = _write(tmp_path / "shapes", sizes=[(32, 32)])
  path = os.path.join(root, "train", "cat", "001.png")
  noise = np.random.RandomState(0).randint(0, 256, (32, 32), np.uint8)
  Image.fromarray(noise).save(path)
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:  # The header reads (the listing), the pixels do not.
    f.write(data[:len(data) // 2])
  with pytest.raises(KdJaxError, match=rf"^config.data.name: folder:{root}: cannot read image "
                                       rf"{path}: image file is truncated"):
    pipelines.create_dataset(_cfg(root), 4)


def test_a_folder_that_cannot_be_prepared_says_so_not_how_to_download_it(tmp_path):
  (tmp_path / "a_file").write_text("")
  with pytest.raises(KdJaxError, match=r"^could not prepare data set 'kd_jax_image_folder' in "
                                       r".*a_file.*: NotADirectoryError") as err:
    pipelines.create_dataset(_cfg(_write(tmp_path / "shapes"), data_dir=str(tmp_path / "a_file")),
                             4)
  assert "could not be downloaded" not in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_the_readme_command_trains_on_a_folder(tmp_path):
  """docs/data.md: python -m kd_jax.train --config=configs/digits/supervised.py
  --config.data.name=folder:<path> (one epoch here)."""
  root = _write(tmp_path / "shapes", per_class=(12, 4))
  proc = forkserver.run(
      [sys.executable, "-m", "kd_jax.train", "--config=configs/digits/supervised.py",
       f"--config.data.name=folder:{root}", "--config.num_epochs=1", "--config.batch_size=12",
       f"--workdir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True, check=False,
      timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "done: test accuracy" in proc.stdout
  assert os.path.exists(tmp_path / "run" / "results.json")

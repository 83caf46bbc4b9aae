"""What a train batch holds, checked on a label-coded data set: every image spells out its own
label, its index and the position of each of its pixels, so each example of a batch is
checked against its image (label, index, crop and flip) after shuffling, batching, process
sharding, unions and ``labeled_fraction``, on the host path and inside the train step."""
import os

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from kd_jax import job
from kd_jax.data import pipelines
from tests import probes
from tests.builders import make_tiny_config

SIZE, CLASSES, PER_CLASS, BATCH = 12, 4, 16, 16  # 64 train images: 4 batches an epoch.
PAD = 1  # CIFAR-style crops of a 12-pixel image: max(1, 12 // 8).
CENTRE = SIZE // 2


def _image(label_code: int, index: int) -> np.ndarray:
  """uint8 [SIZE, SIZE, 3]: channel 0 numbers the pixels 1..144 row by row (0 is padding),
  channel 1 holds ``label_code``, channel 2 ``index + 1``."""
  rows, cols = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
  return np.stack([1 + rows * SIZE + cols, np.full_like(rows, label_code),
                   np.full_like(rows, index + 1)], -1).astype(np.uint8)


def _write(root, label_base: int = 100) -> str:
  """Train: PER_CLASS images of each class; the file order (class folder, then name) makes the
  image numbered ``c * PER_CLASS + k`` the example with that index. Test: 2 of each."""
  for split, n in (("train", PER_CLASS), ("test", 2)):
    for c in range(CLASSES):
      d = os.path.join(root, split, f"c{c}")
      os.makedirs(d, exist_ok=True)
      for k in range(n):
        Image.fromarray(_image(label_base + c, c * n + k)).save(os.path.join(d, f"{k:03d}.png"))
  return str(root)


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
  return _write(tmp_path_factory.mktemp("coded"))


@pytest.fixture(scope="module")
def coded_b(tmp_path_factory):
  return _write(tmp_path_factory.mktemp("coded_b"), label_base=150)


def _data(name: str, **kw) -> ml_collections.ConfigDict:
  # Normalised pixels are the stored 0..255 values.
  base = dict(name=name, train_split="train", eval_split="test", mean=(0.0,),
              std=(1.0 / 255,), train_augment="cifar", augment_on="host")
  return ml_collections.ConfigDict({**base, **kw})


def _decode(image: np.ndarray) -> tuple[int, int, tuple[int, int, bool]]:
  """(label code, index, (row offset, column offset, flipped)) of a [SIZE, SIZE, 3] image
  in 0..255 (float or uint8), read from its centre; asserts that the whole image is that
  crop (offsets 0..2 on the zero-padded image) of its coded image, mirrored if flipped."""
  image = np.rint(np.asarray(image, np.float64)).astype(np.int64)
  label_code, index = int(image[CENTRE, CENTRE, 1]), int(image[CENTRE, CENTRE, 2]) - 1
  pos, right = image[CENTRE, CENTRE, 0] - 1, image[CENTRE, CENTRE + 1, 0] - 1
  flipped = bool(right < pos)
  row, col = divmod(int(pos), SIZE)
  dy = row - CENTRE + PAD
  dx = (col - (SIZE - 1 - CENTRE) if flipped else col - CENTRE) + PAD
  assert 0 <= dy <= 2 * PAD and 0 <= dx <= 2 * PAD, (dy, dx)
  padded = np.pad(_image(label_code, index), ((PAD, PAD), (PAD, PAD), (0, 0)))
  expected = padded[dy:dy + SIZE, dx:dx + SIZE]
  if flipped:
    expected = expected[:, ::-1]
  np.testing.assert_array_equal(image, expected, err_msg="not a crop of the image it codes")
  return label_code, index, (dy, dx, flipped)


def _check_batches(batches, label_base=100, labeled=None) -> tuple[list, set]:
  """Every example's label and index are those its image codes (label_mask: ``labeled`` at
  its index); returns each batch's indices and the distinct crops seen."""
  indices, crops = [], set()
  for b in batches:
    assert b["image"].shape == (BATCH, SIZE, SIZE, 3)
    decoded = [_decode(im) for im in b["image"]]
    np.testing.assert_array_equal(b["label"], [code - label_base for code, _, _ in decoded])
    np.testing.assert_array_equal(b["index"], [i for _, i, _ in decoded])
    if labeled is not None:
      np.testing.assert_array_equal(b["label_mask"], labeled[b["index"]].astype(np.float32))
    indices.append(list(b["index"]))
    crops |= {c for _, _, c in decoded}
  return indices, crops


def test_host_batches_carry_each_images_label_and_index_every_epoch(coded):
  """Two epochs of four batches: each example as its image codes it, each epoch every index
  once in an order of its own, the images cropped and flipped in more than one way."""
  ds = pipelines.create_dataset(_data(f"folder:{coded}"), BATCH)
  epochs = [_check_batches(ds.train_batches(e, seed=3)) for e in range(2)]
  for indices, _ in epochs:
    assert sorted(sum(indices, [])) == list(range(CLASSES * PER_CLASS))
  assert epochs[0][0] != epochs[1][0]
  assert len(epochs[0][1] | epochs[1][1]) > 4


@pytest.mark.parametrize("num_eval_examples, eval_batch", [(-1, 3), (5, 4)])
def test_eval_batches_hold_the_first_examples_once_each_uncropped_and_the_rest_is_padding(
    coded, num_eval_examples, eval_batch):
  """The test split (8 images) or its first 5, in batches of 3 or 4: each real example
  (mask 1) once, as its image codes it and uncropped; the padding (mask 0) after them."""
  ds = pipelines.create_dataset(_data(f"folder:{coded}", num_eval_examples=num_eval_examples),
                                BATCH, eval_batch_size=eval_batch)
  n = 8 if num_eval_examples < 0 else num_eval_examples
  batches = list(ds.eval_batches())
  assert len(batches) == -(-n // eval_batch) == ds.num_eval_steps()
  mask = np.concatenate([b["mask"] for b in batches])
  np.testing.assert_array_equal(mask, np.arange(len(mask)) < n)
  seen = []
  for b in batches:
    for image, label, index, real in zip(b["image"], b["label"], b["index"], b["mask"]):
      if real:
        code, i, crop = _decode(image)
        assert (label, index, crop) == (code - 100, i, (PAD, PAD, False))
        seen.append(int(index))
  assert sorted(seen) == sorted(set(seen)) and len(seen) == n


def test_labeled_fraction_masks_the_labels_of_the_examples_drawn_for_it(coded):
  ds = pipelines.create_dataset(_data(f"folder:{coded}", labeled_fraction=0.25), BATCH)
  labeled = ds.labeled_examples()
  assert labeled.sum() == 16
  indices, _ = _check_batches(ds.train_batches(0), labeled=labeled)
  assert sorted(sum(indices, [])) == list(range(64))


def test_a_union_offsets_each_parts_labels_and_indices(coded, coded_b):
  """The second data set's labels follow the first's 4 classes and its indices the first's
  64 examples; every batch draws from both (each in proportion to its size, with its own
  shuffled order: no example twice before its part's 64 are drawn)."""
  ds = pipelines.create_dataset(_data(f"folder:{coded}+folder:{coded_b}"), BATCH)
  seen = {False: [], True: []}
  for b in ds.train_batches(0, seed=1):
    codes, idx, _ = zip(*[_decode(im) for im in b["image"]])
    second = np.array(codes) >= 150
    assert 0 < second.sum() < BATCH
    np.testing.assert_array_equal(b["label"], np.array(codes) - np.where(second, 150 - 4, 100))
    np.testing.assert_array_equal(b["index"], np.array(idx) + 64 * second)
    for part in (False, True):
      seen[part] += list(b["index"][second == part])
  for part, indices in seen.items():
    first = indices[:64]
    assert len(set(first)) == len(first) and set(first) <= set(range(64 * part, 64 * part + 64))


def test_each_process_reads_its_own_half_with_its_labels(coded, monkeypatch):
  """Two processes (one simulated at a time): each reads batches of 8 of its own 32
  examples; together every example once per epoch."""
  datasets = [pipelines.create_dataset(_data(f"folder:{coded}"), BATCH) for _ in range(2)]
  halves = []
  for process, ds in enumerate(datasets):  # Each its own: a process caches its shard.
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda p=process: p)
    seen = []
    for b in ds.train_batches(0):
      assert b["image"].shape[0] == BATCH // 2
      decoded = [_decode(im) for im in b["image"]]
      np.testing.assert_array_equal(b["label"], [code - 100 for code, _, _ in decoded])
      np.testing.assert_array_equal(b["index"], [i for _, i, _ in decoded])
      seen += list(b["index"])
    halves.append(set(seen))
    assert len(seen) == 32 == len(halves[-1])
  assert halves[0] | halves[1] == set(range(64))


@pytest.mark.parametrize("augment_on", ["device", "host"])
def test_the_step_reads_each_image_cropped_and_flipped_with_its_label(coded, tmp_path,
                                                                      augment_on):
  """A run of two epochs: the images the objectives read are crops and flips of the coded
  images (drawn in the step on the device path), in several ways, each with its label and
  index; every index once per epoch."""
  cfg = make_tiny_config(batch_size=BATCH, eval_batch_size=8)
  cfg.data.update(_data(f"folder:{coded}", augment_on=augment_on, num_train_examples=-1))
  cfg.objectives = {"ce": dict(weight=1.0), "batch_probe": dict(weight=1.0)}
  with probes.registered():
    job.run(cfg, str(tmp_path))
    batches = probes.recorded()
  assert len(batches) == 8
  indices, crops = _check_batches(batches)
  for epoch in (indices[:4], indices[4:]):
    assert sorted(sum(epoch, [])) == list(range(64))
  assert len(crops) > 4

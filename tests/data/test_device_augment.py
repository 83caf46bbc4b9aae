"""CIFAR's train augmentation on the device (``data.augment_on = "device"``): the crops and
flips the host path draws, drawn in the step; the host's normalisation; uint8 batches."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from kd_jax import config as config_lib
from kd_jax.data import augment, device_augment, info, pipelines, sources
from kd_jax.errors import KdJaxError

_N = 4000  # Crops drawn by each path: a bin's frequency has a standard deviation <= 0.008.


def _position_image() -> np.ndarray:
  """uint8 [32, 32, 3]: channel 0 holds the row + 1, channel 1 the column + 1 (0 = padding)."""
  rows, cols = np.meshgrid(np.arange(32) + 1, np.arange(32) + 1, indexing="ij")
  return np.stack([rows, cols, np.full_like(rows, 7)], -1).astype(np.uint8)


def _crop_and_flip(out: np.ndarray) -> tuple[int, int, bool]:
  """(row offset, column offset, flipped) of a pad-4 crop of ``_position_image``, from two
  central pixels (the crop's offsets on the 40x40 padded image, 0..8)."""
  row, col, next_col = out[16, 16, 0], out[16, 16, 1], out[16, 17, 1]
  flipped = next_col < col
  return int(row) - 13, int(col) - (12 if flipped else 13), bool(flipped)


def _host_draws() -> list[tuple[int, int, bool]]:
  image = tf.constant(_position_image())
  ds = tf.data.Dataset.range(_N).map(
      lambda i: augment.pad_crop_flip(image, tf.stack([tf.constant(11, tf.int64), i]), 4, True))
  return [_crop_and_flip(out) for batch in tfds.as_numpy(ds.batch(1000)) for out in batch]


def _device_draws() -> tuple[np.ndarray, list[tuple[int, int, bool]]]:
  images = jnp.broadcast_to(jnp.asarray(_position_image()), (_N, 32, 32, 3))
  out = np.asarray(jax.jit(lambda x, k: device_augment.pad_crop_flip(x, k, 4, True))(
      images, jax.random.PRNGKey(5)))
  return out, [_crop_and_flip(o) for o in out]


def _frequencies(draws, field: int, values) -> np.ndarray:
  column = np.array([d[field] for d in draws])
  return np.array([np.mean(column == v) for v in values])


def test_device_crops_and_flips_have_the_host_paths_distribution():
  """Row and column offsets uniform over 0..8, flips half the time, on both paths: every bin
  within 0.03 of its probability (about 4 standard deviations at 4,000 draws) and within
  0.04 of the other path's; offsets and flips independent (correlations below 0.06)."""
  host, (_, device) = _host_draws(), _device_draws()
  for draws in (host, device):
    for field, values, p in ((0, range(9), 1 / 9), (1, range(9), 1 / 9), (2, (False, True), 0.5)):
      freq = _frequencies(draws, field, values)
      assert np.abs(freq - p).max() < 0.03, (field, freq)
    corr = np.corrcoef(np.array(draws, np.float64).T)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.06, corr
  for field, values in ((0, range(9)), (1, range(9)), (2, (False, True))):
    gap = np.abs(_frequencies(host, field, values) - _frequencies(device, field, values))
    assert gap.max() < 0.04, (field, gap)


def test_a_device_crop_is_the_zero_padded_image_at_its_offset_maybe_mirrored():
  out, draws = _device_draws()
  padded = np.pad(_position_image(), ((4, 4), (4, 4), (0, 0)))
  for o, (dy, dx, flipped) in zip(out[:200], draws[:200]):
    want = padded[dy:dy + 32, dx:dx + 32]
    np.testing.assert_array_equal(o, want[:, ::-1] if flipped else want)


def test_device_normalisation_is_the_hosts():
  values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, -1)
  mean, std = sources.CIFAR_MEAN["cifar100"], sources.CIFAR_STD["cifar100"]
  host = augment.normalize(tf.constant(values), mean, std).numpy()
  device = np.asarray(device_augment.normalize(jnp.asarray(values), mean, std))
  assert device.dtype == np.float32
  np.testing.assert_allclose(device, host, rtol=0, atol=1e-6)


def test_no_padding_and_no_flip_leave_the_images_as_they_are():
  images = jnp.asarray(np.random.RandomState(0).randint(0, 256, (4, 8, 8, 1)).astype(np.uint8))
  out = device_augment.pad_crop_flip(images, jax.random.PRNGKey(0), 0, False)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(images))


def _cifar(**kw):
  return ml_collections.ConfigDict(dict(name="cifar100", train_split="train", eval_split="test",
                                        num_train_examples=64, num_eval_examples=32, **kw))


def test_cifar_ships_uint8_train_images_and_float_eval_images_by_default():
  """CIFAR's preset augments on the device: train batches hold the decoded uint8 images
  (3,072 bytes each, a quarter of float32's), eval batches the host-normalised ones."""
  with tfds.testing.mock_data(num_examples=64):
    ds = pipelines.create_dataset(_cifar(), 16)
    batch = next(iter(ds.train_batches(0)))
    evals = next(iter(ds.eval_batches()))
  mean, std = sources.CIFAR_MEAN["cifar100"], sources.CIFAR_STD["cifar100"]
  assert ds.device_augment == device_augment.Spec(pad=4, flip=True, mean=mean, std=std)
  assert batch["image"].dtype == np.uint8 and batch["image"].shape == (16, 32, 32, 3)
  assert batch["image"][0].nbytes == 3072
  assert evals["image"].dtype == np.float32
  assert info.describe(_cifar()).device_augment == ds.device_augment


def test_device_images_are_the_hosts_decoded_images_unaugmented():
  """With train_augment none the two paths differ only in where the normalisation runs:
  the device path's batch, normalised by the step's function, is the host path's batch."""
  with tfds.testing.mock_data(num_examples=64):
    on_device = pipelines.create_dataset(_cifar(train_augment="none"), 16)
    on_host = pipelines.create_dataset(_cifar(train_augment="none", augment_on="host"), 16)
    raw, ready = (next(iter(d.train_batches(0, seed=3))) for d in (on_device, on_host))
  spec = on_device.device_augment
  assert spec.pad == 0 and not spec.flip
  np.testing.assert_array_equal(raw["index"], ready["index"])
  np.testing.assert_allclose(np.asarray(device_augment.normalize(raw["image"], spec.mean,
                                                                 spec.std)),
                             ready["image"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("fields, message", [
    (dict(augment_on="gpu"), "augment_on must be host or device"),
    (dict(augment_on="device", train_augment="inception"), "augment_on='device' takes one"),
    (dict(augment_on="device", name="cifar10+cifar100"), "augment_on='device' takes one"),
])
def test_bad_device_augmentation_settings_are_refused_in_one_line(fields, message):
  cfg = config_lib.base_config()
  cfg.data.update(fields)
  with pytest.raises(KdJaxError, match=message):
    config_lib.validate(cfg)


def test_the_inception_crop_keeps_the_cifar_preset_on_the_host():
  with tfds.testing.mock_data(num_examples=64):
    ds = pipelines.create_dataset(_cifar(train_augment="inception"), 16)
  assert ds.augment_on == "host" and ds.device_augment is None


def test_the_train_step_augments_uint8_images_before_any_network():
  """A step given uint8 images and the spec trains exactly as a step given the images the
  host would have normalised (no crop, no flip); with crops on, the step runs and the
  state moves."""
  from kd_jax.distill import parsing
  from kd_jax.distill import student as student_lib
  from kd_jax.distill.step import make_train_step
  from tests import builders
  student = student_lib.create("resnet8", 10, {}, dtype=jnp.float32)
  objectives = parsing.parse_objectives({"ce": {"weight": 1.0}}, [], has_labels=True,
                                    all_labeled=True)
  tx = builders.optimizer(builders.sgd(), objectives)
  state = builders.train_state(student, objectives, tx, input_shape=(8, 8, 3))
  rs = np.random.RandomState(0)
  raw = rs.randint(0, 256, (4, 8, 8, 3)).astype(np.uint8)
  labels = {"label": np.arange(4, dtype=np.int32), "index": np.arange(4, dtype=np.int32)}
  mean, std = sources.CIFAR_MEAN["cifar10"], sources.CIFAR_STD["cifar10"]
  spec = device_augment.Spec(pad=0, flip=False, mean=mean, std=std)
  host = augment.normalize(tf.constant(raw), mean, std).numpy()
  rng = jax.random.PRNGKey(0)
  step = lambda **kw: jax.jit(make_train_step(student, {}, objectives, tx, True, **kw))
  on_device, m_device = step(augment=spec)(state, {"image": raw, **labels}, rng)
  on_host, m_host = step()(state, {"image": host, **labels}, rng)
  np.testing.assert_allclose(m_device.compute()["loss"], m_host.compute()["loss"], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               on_device.params, on_host.params)
  cropped, _ = step(augment=device_augment.Spec(1, True, mean, std))(
      state, {"image": raw, **labels}, rng)
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), cropped.params,
                                       state.params))
  assert max(moved) > 0

"""kd_jax.data.randaugment (MLKD's strong view, on the device) against its authors' Pillow code
(``randaugment_reference``): each operation on random uint8 RGB images at random magnitudes
in its range, equal to Pillow's uint8 output (the geometric ones: at most 0.5% of the pixels
read a neighbouring source pixel, where a coordinate falls on a pixel boundary that Pillow's
float64 arithmetic and kd_jax's float32 round to different sides); Cutout's square; and the
draws (uniform operations with replacement, magnitudes in range)."""
import numpy as np
import pytest
from PIL import Image

import jax
import jax.numpy as jnp

from kd_jax.data import randaugment as ra
from tests.data import randaugment_reference as ref

REFERENCE = {"auto_contrast": ref.AutoContrast, "brightness": ref.Brightness, "color": ref.Color,
             "contrast": ref.Contrast, "equalize": ref.Equalize, "identity": ref.Identity,
             "posterize": ref.Posterize, "rotate": ref.Rotate, "sharpness": ref.Sharpness,
             "shear_x": ref.ShearX, "shear_y": ref.ShearY, "solarize": ref.Solarize,
             "translate_x": ref.TranslateX, "translate_y": ref.TranslateY}
GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")


def test_the_operations_are_the_references_in_its_order():
  assert [(REFERENCE[n], lo, hi) for n, lo, hi in ra.OPS] == ref.augment_list()


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_each_operation_equals_pillow(name):
  rng = np.random.RandomState(sorted(REFERENCE).index(name))
  _, lo, hi = [op for op in ra.OPS if op[0] == name][0]
  images, magnitudes = [], []
  for _ in range(24):  # Value ranges of every width, so that the histogram operations act.
    a, b = sorted(rng.randint(0, 256, 2))
    images.append(rng.randint(a, b + 1, (32, 32, 3)).astype(np.uint8))
    magnitudes.append(lo + (hi - lo) * rng.rand())
  got = np.asarray(jax.jit(jax.vmap(ra.FUNCTIONS[name]))(
      jnp.asarray(np.stack(images)), jnp.asarray(magnitudes, jnp.float32)))
  want = np.stack([np.asarray(REFERENCE[name](Image.fromarray(x), v))
                   for x, v in zip(images, magnitudes)])
  if name in GEOMETRIC:
    assert np.mean(np.any(got != want, axis=-1)) <= 0.005
  else:
    np.testing.assert_array_equal(got, want)


def test_auto_contrast_keeps_pillows_float64_rounding():
  """Pillow maps the top of [0, 25] to 254, not 255: int(25 * (255 / 25) + 0.0) = 254."""
  image = np.zeros((4, 4, 3), np.uint8)
  image[0, 0] = 25
  got = np.asarray(ra.auto_contrast(jnp.asarray(image), 0.0))
  want = np.asarray(ref.AutoContrast(Image.fromarray(image), 0.0))
  assert got[0, 0, 0] == want[0, 0, 0] == 254


@pytest.mark.parametrize("v,x0,y0", [(0.3, 5.5, 20.2), (0.45, 0.0, 31.9), (0.02, 16.0, 16.0),
                                     (0.5, 31.0, 2.0)])
def test_cutout_fills_the_references_square(v, x0, y0, monkeypatch):
  image = np.random.RandomState(0).randint(0, 256, (32, 32, 3)).astype(np.uint8)
  draws = iter([x0, y0])
  monkeypatch.setattr(ref.np.random, "uniform", lambda _: next(draws))
  want = np.asarray(ref.Cutout(Image.fromarray(image), v))
  got = np.asarray(ra.cutout(jnp.asarray(image), jnp.float32(v * 32), jnp.float32(x0),
                             jnp.float32(y0)))
  np.testing.assert_array_equal(got, want)


def test_draws_are_uniform_operations_with_magnitudes_in_range():
  d = ra.draw(jax.random.PRNGKey(0), 7000, 2, 32)
  counts = np.bincount(np.asarray(d["index"]).ravel(), minlength=len(ra.OPS))
  assert counts.shape == (14,) and counts.min() > 850 and counts.max() < 1150  # 1000 each.
  low = np.asarray([lo for _, lo, _ in ra.OPS])[np.asarray(d["index"])]
  high = np.asarray([hi for _, _, hi in ra.OPS])[np.asarray(d["index"])]
  m = np.asarray(d["magnitude"])
  assert np.all((m >= low) & (m <= high))
  assert 0 <= float(d["size"].min()) and float(d["size"].max()) <= 16.0


def test_rand_augment_applies_the_drawn_operations_then_cutout():
  images = jnp.asarray(np.random.RandomState(1).randint(0, 256, (6, 8, 8, 3)), jnp.uint8)
  key = jax.random.PRNGKey(3)
  got = jax.jit(ra.rand_augment)(images, key)
  d = ra.draw(key, 6, 2, 8)

  @jax.jit
  def composed(images):
    for i in range(2):
      images = jax.vmap(ra.apply_op)(images, d["index"][:, i], d["magnitude"][:, i])
    return jax.vmap(ra.cutout)(images, d["size"], d["x0"], d["y0"])

  want = composed(images)
  assert got.dtype == jnp.uint8 and got.shape == images.shape
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_grey_images_take_the_same_operations():
  """One channel (the digits): Color is the identity, Cutout fills with 125."""
  image = jnp.asarray(np.random.RandomState(2).randint(0, 17, (8, 8, 1)) * 15, jnp.uint8)
  np.testing.assert_array_equal(np.asarray(ra.color(image, jnp.float32(0.3))), np.asarray(image))
  cut = np.asarray(ra.cutout(image, jnp.float32(4.0), jnp.float32(4.0), jnp.float32(4.0)))
  assert np.all(cut[2:7, 2:7] == 125)
  grey = np.asarray(ref.Equalize(Image.fromarray(np.asarray(image)[..., 0]), 0))
  np.testing.assert_array_equal(np.asarray(ra.equalize(image, 0.0))[..., 0], grey)

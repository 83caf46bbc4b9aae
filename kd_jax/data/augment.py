"""Per-example image preprocessing in tf.data (uint8 HWC in, float32 HWC out).

Random ops are stateless and seeded per example from ``(seed, index)``, so a batch
is the same whatever the tf.data parallelism, and a resumed run sees the images it
would have seen.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def normalize(image: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
  """uint8 [H, W, C] -> float32 ``(image / 255 - mean) / std`` (per channel)."""
  image = tf.cast(image, tf.float32) / 255.0
  return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def pad_crop_flip(image: tf.Tensor, seed: tf.Tensor, pad: int, flip: bool) -> tf.Tensor:
  """torchvision ``RandomCrop(size, padding=pad)`` (zero padding) then optional
  ``RandomHorizontalFlip``, on a uint8 [H, W, C] image."""
  seeds = tf.random.experimental.stateless_split(seed, 2)
  shape = tf.shape(image)
  padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
  image = tf.image.stateless_random_crop(padded, shape, seed=seeds[0])
  if flip:
    image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
  return image


def inception_crop(image: tf.Tensor, seed: tf.Tensor, size: int,
                   area_range=(0.08, 1.0), flip: bool = True) -> tf.Tensor:
  """torchvision ``RandomResizedCrop(size)`` + ``RandomHorizontalFlip`` on uint8
  [H, W, C]; returns uint8 [size, size, C]."""
  seeds = tf.random.experimental.stateless_split(seed, 2)
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image), bounding_boxes=tf.zeros([1, 0, 4]), seed=seeds[0],
      area_range=area_range, aspect_ratio_range=(3 / 4, 4 / 3),
      min_object_covered=0.0, max_attempts=10, use_image_if_no_bounding_boxes=True)
  image = tf.slice(image, begin, crop_size)
  image = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
  image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
  if flip:
    image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
  return image


def resize_center_crop(image: tf.Tensor, size: int, crop_fraction: float = 0.875) -> tf.Tensor:
  """torchvision eval transform: ``Resize(size / crop_fraction)`` on the short side,
  then ``CenterCrop(size)``; uint8 in and out."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = (size / crop_fraction) / tf.reduce_min(shape)
  new_hw = tf.cast(tf.round(shape * scale), tf.int32)
  image = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
  top = (new_hw[0] - size) // 2
  left = (new_hw[1] - size) // 2
  image = image[top:top + size, left:left + size]
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
  """Resize a uint8 image to [size, size] (bilinear) when its size differs."""
  if image.shape[0] == size and image.shape[1] == size:
    return image
  image = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

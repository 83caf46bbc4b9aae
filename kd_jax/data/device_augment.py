"""CIFAR's train augmentation on the device, inside the jitted step (``data.augment_on =
"device"``).

The host then ships uint8 images (a quarter of float32's bytes) and does no per-example
work beyond decoding; the step pads, crops, flips and normalises the whole batch at once
(``apply``). The random crops and flips have the host path's distribution
(``kd_jax/data/augment.py``: torchvision's ``RandomCrop(size, padding)`` with zero padding,
then ``RandomHorizontalFlip``): each offset uniform over the ``2 * pad + 1`` positions of
each axis, each flip with probability 1/2, independent per example. They are drawn from the
step's key, not from ``(seed, index)`` as on the host, so the two paths see different crops
of the same image.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Spec:
  """What the step does to a uint8 batch: zero ``pad`` then random crop back to the size
  (``pad`` 0: none), random horizontal ``flip``, then ``(x / 255 - mean) / std`` per
  channel (one value: every channel)."""
  pad: int
  flip: bool
  mean: tuple[float, ...]
  std: tuple[float, ...]


def crop_pad(image_size: int) -> int:
  """The zero padding of CIFAR-style random crops (both paths): 4 for 32 px and larger,
  else an eighth of the size (at least 1)."""
  return 4 if image_size >= 32 else max(1, image_size // 8)


def spec(augment_on: str, train_augment: str, image_size: int, mean, std) -> Spec | None:
  """The step's work on uint8 train images where ``augment_on == "device"``, else None."""
  if augment_on != "device":
    return None
  return Spec(pad=crop_pad(image_size) if train_augment in ("cifar", "pad_crop") else 0,
              flip=train_augment == "cifar", mean=tuple(mean), std=tuple(std))


def pad_crop_flip(images: jax.Array, rng: jax.Array, pad: int, flip: bool) -> jax.Array:
  """[b, H, W, C] -> [b, H, W, C], same dtype: each image zero-padded by ``pad`` on every
  side, cropped back to [H, W] at a uniformly random offset (``randint(0, 2 * pad + 1)``
  per axis) and, with ``flip``, mirrored left-right with probability 1/2."""
  b, h, w, _ = images.shape
  k_crop, k_flip = jax.random.split(rng)
  if pad > 0:
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(k_crop, (b, 2), 0, 2 * pad + 1)
    crop = lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1], 0),
                                                  (h, w, image.shape[-1]))
    images = jax.vmap(crop)(padded, offsets)
  if flip:
    mirrored = jax.random.bernoulli(k_flip, 0.5, (b,))
    images = jnp.where(mirrored[:, None, None, None], images[:, :, ::-1], images)
  return images


def normalize(images: jax.Array, mean, std) -> jax.Array:
  """uint8 [..., C] -> float32 ``(images / 255 - mean) / std``, the host's arithmetic
  (``augment.normalize``)."""
  channels = images.shape[-1]
  mean, std = tuple(mean), tuple(std)
  if len(mean) != channels:
    mean, std = mean[:1] * channels, std[:1] * channels
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def apply(spec: Spec, batch: Mapping[str, jax.Array], rng: jax.Array) -> dict:
  """``batch`` with its uint8 ``image`` augmented and normalised (float32)."""
  images = batch["image"]
  if images.dtype != jnp.uint8:
    raise TypeError(f"device augmentation takes uint8 images, got {images.dtype}")
  images = pad_crop_flip(images, rng, spec.pad, spec.flip)
  return {**batch, "image": normalize(images, spec.mean, spec.std)}

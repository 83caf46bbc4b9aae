"""What a data set is, read from its TFDS metadata alone (input shape, classes, split sizes,
whether it is prepared): dry runs and benchmarks on random batches of the real shapes."""
from __future__ import annotations

import dataclasses

from kd_jax.data import device_augment
from kd_jax.data.sources import (KNOWN_SPLIT_SIZES, augmentation, builders, check_metadata,
                                 input_size, normalization)

@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What a model needs to know of a data set, read from its TFDS metadata alone."""
  input_shape: tuple[int, int, int]
  num_classes: int | None
  num_train_examples: int | None  # None: the metadata holds no split sizes (not prepared).
  num_eval_examples: int | None = None
  prepared: bool = True  # Every data set of it is prepared in its data_dir.
  # What the train step does to uint8 train images (``data.augment_on == "device"``).
  device_augment: device_augment.Spec | None = None


def describe(data_cfg) -> DataInfo:
  """``config.data``'s input shape, classes, split sizes and whether it is prepared, without
  preparing or reading the data (benchmarks on random batches of the real shapes, dry runs)."""
  infos = []

  def size(info, name, field, default):
    given = data_cfg.get(f"num_{field}_examples", -1)
    split = data_cfg.get(f"{field}_split", default).split("+")[0]
    base = split.split("[")[0]
    if given and given > 0:
      return int(given)
    if base in info.splits:
      return info.splits[base].num_examples
    return KNOWN_SPLIT_SIZES.get(name, {}).get(base) if split == base else None

  for name, builder in builders(data_cfg):
    check_metadata(data_cfg, name, builder)
    info = builder.info
    image = info.features["image"].shape
    image_size = input_size(data_cfg, name, info.features)
    channels = data_cfg.get("channels") or image[-1] or 3
    classes = tuple(data_cfg.get("classes", ()) or ())
    num_classes = (len(classes) if classes else
                   info.features["label"].num_classes if "label" in info.features else None)
    infos.append(DataInfo((int(image_size), int(image_size), int(channels)), num_classes,
                          size(info, name, "train", "train"), size(info, name, "eval", "test"),
                          builder.is_prepared()))

  def total(values):
    return sum(values) if all(v is not None for v in values) else None

  # Beside unlabelled data sets (``unlabeled_parts``), classes and evaluation are the
  # labelled ones' (``kd_jax.data.union``).
  unlabeled = set(data_cfg.get("unlabeled_parts", ()) or ())
  evaluated = [i for (name, _), i in zip(builders(data_cfg), infos) if name not in unlabeled]
  first = data_cfg.name.split("+")[0]
  train_augment, augment_on = augmentation(data_cfg, first)
  shape = infos[0].input_shape
  spec = device_augment.spec(augment_on, train_augment, shape[0],
                             *normalization(data_cfg, first, shape[-1]))
  return DataInfo(infos[0].input_shape,
                  sum(i.num_classes or 0 for i in evaluated) or None,
                  total([i.num_train_examples for i in infos]),
                  total([i.num_eval_examples for i in evaluated]),
                  all(i.prepared for i in infos), spec)

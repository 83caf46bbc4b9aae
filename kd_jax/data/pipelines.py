"""TFDS split -> tf.data -> numpy batches for this process.

A ``Dataset`` resolves a config's data set once (prepared in the TFDS data_dir,
downloaded there if it can be), and hands out

* ``train_batches(epoch, start, seed)``: the batches of one epoch for this process,
  deterministic in ``(seed, epoch)``; ``start`` skips the first batches (resuming
  mid-epoch costs no decoding of the skipped images);
* ``eval_batches()``: the whole eval split once, padded to full batches, with a
  ``mask`` marking real examples.

Every batch is a dict of numpy arrays: ``image`` float32 [b, H, W, C] normalised,
``index`` int32 [b] (the example's position in its split; for data sets without an
index feature it is derived from the TFDS record id), ``label`` int32 [b] unless
the train split is unlabelled (``data.unlabeled``: proxy data), ``mask`` float32 [b] for eval, and
``label_mask`` float32 [b] for training when only a fraction of the train split keeps its
labels (``data.labeled_fraction`` < 1: 1 for the examples whose label may be used).
``data.classes`` keeps only the examples of those classes (both splits), relabelled
0..len-1 in the order given (e.g. an expert trained on digits 5-9 sees labels 0-4); their
``index`` stays their position in the unfiltered split.

Several data sets joined by ``+`` (``data.name = "caltech_birds2011+stanford_dogs"``) are
their union (``UnionDataset``): training draws from each in proportion to its size, the
eval split is their concatenation, labels and indices are offset so that the data sets
follow each other (CUB's 200 classes, then the dogs' 120: the label space of an
amalgamated student). ``data.unlabeled_parts`` names data sets of a union whose train labels
are dropped (an unlabelled proxy beside a labelled target): the label space and the eval
split are then the labelled ones', and train batches carry ``label_mask``. Splits may name one split per data set the same way (``train+train``);
``num_train_examples``/``num_eval_examples`` then count per data set.
``b`` is the global batch divided by the number of processes: each process reads
its own shard of the split (``tfds.split_for_jax_process``).
"""
from __future__ import annotations

import jax

from kd_jax.data import sources
from kd_jax.data.dataset import Dataset
from kd_jax.data.union import UnionDataset, create_union


def create_dataset(data_cfg, global_batch_size: int, eval_batch_size: int | None = None
                   ) -> Dataset | UnionDataset:
  """Resolves ``config.data`` into a prepared ``Dataset`` (one-line ``KdJaxError`` on problems)."""
  if "+" in data_cfg.name:
    return create_union(data_cfg, global_batch_size, eval_batch_size, create_dataset)
  name = data_cfg.name
  data_dir = data_cfg.get("data_dir") or sources.default_data_dir()
  builder = sources.builder(name, data_dir)
  sources.prepare(builder, download=data_cfg.get("download", True))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("kd_jax:data_prepared")
    builder = sources.builder(name, data_dir)
  info = builder.info
  features = info.features
  sources.check_metadata(data_cfg, name, builder)
  classes = tuple(int(c) for c in data_cfg.get("classes", ()) or ())
  sizes = {}
  for field, split in (("train", data_cfg.train_split), ("eval", data_cfg.eval_split)):
    given = data_cfg.get(f"num_{field}_examples", -1)
    if given and given > 0:
      sizes[field] = int(given)
    else:
      sizes[field] = (sources.count_examples(builder, split, classes) if classes
                      else info.splits[split].num_examples)

  train_augment, augment_on = sources.augmentation(data_cfg, name)
  eval_preprocess = sources.preset_value(data_cfg, name, "eval_preprocess", "none")
  image_size = sources.input_size(data_cfg, name, features)
  num_classes = features["label"].num_classes if "label" in features else None
  if classes:
    num_classes = len(classes)
  return Dataset(
      name=name, train_split=data_cfg.train_split, eval_split=data_cfg.eval_split,
      global_batch_size=global_batch_size,
      eval_batch_size=eval_batch_size or global_batch_size,
      image_size=int(image_size), channels=data_cfg.get("channels") or None,
      train_augment=train_augment, eval_preprocess=eval_preprocess,
      mean=tuple(sources.preset_value(data_cfg, name, "mean", (0.5,))),
      std=tuple(sources.preset_value(data_cfg, name, "std", (0.5,))),
      unlabeled=bool(data_cfg.get("unlabeled", False)),
      cache=bool(data_cfg.get("cache", True)),
      labeled_fraction=float(data_cfg.get("labeled_fraction", 1.0)),
      labeled_seed=int(data_cfg.get("labeled_seed", 0)), augment_on=augment_on,
      classes=classes or None, builder=builder, num_classes=num_classes,
      num_train_examples=sizes["train"], num_eval_examples=sizes["eval"],
  )

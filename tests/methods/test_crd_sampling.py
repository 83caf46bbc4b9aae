"""CRD's positives and negatives as RepDistiller's ``CIFAR100InstanceSample`` draws them
(``mode`` exact / relax / uniform), and the class index they are drawn from."""
import numpy as np
import pytest

from kd_jax import methods
from kd_jax.distill import host_inputs
from kd_jax.distill import parsing
from kd_jax.errors import KdJaxError
from kd_jax.methods.crd import ClassSampler

LABELS = np.repeat(np.arange(5), 20)  # 100 examples, 5 classes of 20: 80 of other classes.


def _draw(mode, k, index, labels=LABELS, seed=0):
  sampler = ClassSampler(labels, k, mode)
  got = sampler({"index": np.asarray(index)}, np.random.default_rng(seed))["contrast_index"]
  assert got.shape == (len(index), k + 1) and got.dtype == np.int32
  return got


def test_exact_positive_is_the_example_and_negatives_are_other_classes_without_replacement():
  index = np.array([0, 25, 99, 40])
  got = _draw("exact", 50, index)
  np.testing.assert_array_equal(got[:, 0], index)
  for row, i in zip(got, index):
    assert np.all(LABELS[row[1:]] != LABELS[i])
    assert len(np.unique(row[1:])) == 50


def test_exact_negatives_are_uniform_over_every_example_of_the_other_classes():
  """2,000 draws of 10 negatives for example 0 (class 0): each of the 80 other-class
  examples is drawn with probability 10/80 per draw; every frequency within 0.04 of 0.125
  (5 standard deviations)."""
  sampler = ClassSampler(LABELS, 10, "exact")
  rng = np.random.default_rng(0)
  counts = np.zeros(100)
  for _ in range(2000):
    np.add.at(counts, sampler.draw(0, rng)[1:], 1)
  assert counts[:20].sum() == 0
  np.testing.assert_allclose(counts[20:] / 2000, 0.125, atol=0.04)


def test_negatives_are_drawn_with_replacement_only_when_other_classes_hold_fewer_than_k():
  got = _draw("exact", 500, [7, 63])
  for row, i in zip(got, [7, 63]):
    assert np.all(LABELS[row[1:]] != LABELS[i])
    assert len(np.unique(row[1:])) == 80  # Every other-class example, some several times.


def test_relax_positive_is_an_example_of_the_same_class():
  index = np.array([3, 17, 38, 61, 99])
  got = _draw("relax", 30, index)
  np.testing.assert_array_equal(LABELS[got[:, 0]], LABELS[index])
  assert np.any(got[:, 0] != index)  # Not simply the example itself.
  for row, i in zip(got, index):
    assert np.all(LABELS[row[1:]] != LABELS[i])


def test_an_example_without_a_known_label_draws_uniformly_over_the_split():
  labels = LABELS.copy()
  labels[10] = -1  # e.g. its label is not used (labeled_fraction < 1)
  got = _draw("exact", 2000, [10], labels)
  assert got[0, 0] == 10
  assert got.min() >= 0 and got.max() <= 99 and len(np.unique(got[0, 1:])) == 100
  assert LABELS[10] in LABELS[got[0, 1:]]  # Its own class included.


def test_examples_without_a_known_label_are_never_negatives():
  labels = LABELS.copy()
  labels[40:60] = -1  # class 2 unknown
  got = _draw("exact", 60, [0, 99], labels)
  assert not np.any((got[:, 1:] >= 40) & (got[:, 1:] < 60))


def test_the_same_step_draws_the_same_indices():
  a = host_inputs.draw({"crd": ClassSampler(LABELS, 20, "exact")}, {"index": np.arange(4)},
                       seed=3, stream=0, step=12)
  b = host_inputs.draw({"crd": ClassSampler(LABELS, 20, "exact")}, {"index": np.arange(4)},
                       seed=3, stream=0, step=12)
  c = host_inputs.draw({"crd": ClassSampler(LABELS, 20, "exact")}, {"index": np.arange(4)},
                       seed=3, stream=0, step=13)
  key = host_inputs.host_key("crd", "contrast_index")
  np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a[key], c[key])


def _objectives(**crd):
  return parsing.parse_objectives({"ce": dict(weight=1.0), "crd": dict(weight=0.8, **crd)},
                              ["t"], has_labels=True)


def test_exact_is_the_default_and_uniform_draws_in_the_step():
  split = methods.TrainSplit(100, True, lambda: LABELS)
  (sampler,) = host_inputs.build(_objectives(), split).values()
  assert sampler.mode == "exact"
  assert host_inputs.build(_objectives(mode="uniform"), split) == {}


def test_exact_and_relax_on_unlabelled_data_are_refused_in_one_line():
  split = methods.TrainSplit(100, False)
  for mode in ("exact", "relax"):
    with pytest.raises(KdJaxError) as err:
      host_inputs.build(_objectives(mode=mode), split)
    assert str(err.value) == (f"config.objectives.crd: mode={mode!r} draws negatives from the "
                              f"other classes, but the training data is unlabelled; set "
                              f"mode='uniform'")
  assert host_inputs.build(_objectives(mode="uniform"), split) == {}


def test_an_unknown_mode_is_refused_in_one_line():
  with pytest.raises(KdJaxError, match=r"^config.objectives.crd: mode must be one of exact, "
                                       r"relax, uniform, got 'hard'$"):
    _objectives(mode="hard")


@pytest.fixture(scope="module")
def digits(tfds_data_dir):
  from kd_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from kd_jax.data import pipelines  # pylint: disable=g-import-not-at-top

  def create(**data):
    cfg = config_lib.base_config().data
    cfg.update(data)
    return pipelines.create_dataset(cfg, 32)
  return create


def _stored_labels(data):
  """{index: label} of every train example, read with its image, as training reads it."""
  out = {}
  for batch in data.train_split_once():
    for i, label, m in zip(batch["index"], batch["label"], batch["mask"]):
      if m:
        out[int(i)] = int(label)
  return out


def test_the_class_index_covers_the_whole_train_split(digits):
  data = digits()
  labels = data.train_labels()
  stored = _stored_labels(data)
  assert len(stored) == data.num_train_examples == 1437 == np.sum(labels >= 0)
  assert all(labels[i] == c for i, c in stored.items())


def test_with_scarce_labels_the_class_index_holds_only_the_labelled_examples(digits):
  data = digits(labeled_fraction=0.1)
  labels = data.train_labels()
  used = data.labeled_examples()
  assert np.sum(labels >= 0) == round(0.1 * 1437)
  assert np.all((labels >= 0) == used[:len(labels)])


def test_a_class_subset_leaves_the_other_classes_out_of_the_index(digits):
  data = digits(classes=(5, 6, 7, 8, 9))
  labels = data.train_labels()
  assert set(np.unique(labels)) == {-1, 0, 1, 2, 3, 4}  # Relabelled 5..9 -> 0..4.
  assert np.sum(labels >= 0) == data.num_train_examples

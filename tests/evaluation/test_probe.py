"""The linear probe: logistic regression by L-BFGS over a grid of L2 weights, the weight
chosen on a validation part of the train split."""
import numpy as np

from kd_jax.evaluation import probe


def _blobs(n, seed, shift=3.0):
  rng = np.random.RandomState(seed)
  y = rng.randint(0, 3, n)
  centers = np.array([[shift, 0.0], [0.0, shift], [-shift, -shift]])
  return (centers[y] + rng.randn(n, 2)).astype(np.float32), y.astype(np.int32)


def test_separable_classes_are_learned():
  x, y = _blobs(300, 0, shift=10.0)
  params = probe.fit_logistic(x, y, 3, np.array([0.0, 1e-3]), steps=100)
  assert params["w"].shape == (2, 2, 3) and params["b"].shape == (2, 3)
  np.testing.assert_array_equal(probe.accuracy(params, x, y), [1.0, 1.0])


def test_a_larger_l2_weight_gives_smaller_weights():
  x, y = _blobs(200, 1)
  params = probe.fit_logistic(x, y, 3, np.array([1e-4, 1e-1, 10.0]), steps=100)
  norms = np.linalg.norm(np.asarray(params["w"]).reshape(3, -1), axis=1)
  assert norms[0] > norms[1] > norms[2]


def test_the_fit_reaches_the_regularised_optimum():
  """At the optimum the gradient of the documented objective, mean CE + l2/2 ||W||^2 (the
  bias not decayed), vanishes: written out here in numpy, not the implementation's loss."""
  x, y = _blobs(100, 2)
  l2 = 0.1
  params = probe.fit_logistic(x, y, 3, np.array([l2]), steps=200)
  w, b = (np.asarray(params[k][0], np.float64) for k in ("w", "b"))
  logits = x.astype(np.float64) @ w + b
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  residual = (p - np.eye(3)[y]) / len(y)  # d mean CE / d logits
  grad_w, grad_b = x.T.astype(np.float64) @ residual + l2 * w, residual.sum(0)
  assert max(np.abs(grad_w).max(), np.abs(grad_b).max()) < 1e-4


def test_linear_probe_reports_the_chosen_weight_and_test_accuracy():
  train, test = _blobs(300, 3), _blobs(100, 4)
  r = probe.linear_probe(train, test, 3, (1e-4, 1e-2, 100.0), steps=100)
  assert set(r["validation"]) == {"0.0001", "0.01", "100"}
  assert r["l2"] in (1e-4, 1e-2)  # 100 underfits on the validation split.
  assert r["validation"]["100"] < max(r["validation"].values())
  assert r["top1"] > 0.9 and r["train_top1"] > 0.9


def test_features_are_extracted_without_the_padding_rows():
  batches = [{"image": np.ones((4, 2)), "label": np.array([1, 2, 0, 0]),
              "mask": np.array([1.0, 1.0, 0.0, 0.0])}]
  x, y = probe.extract_features(lambda im: im * 2, batches)
  assert x.shape == (2, 2) and (x == 2).all() and y.tolist() == [1, 2]

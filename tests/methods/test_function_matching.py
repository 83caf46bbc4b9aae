"""Function matching: one view for teacher and student (the host's inception crop, then
mixup drawn once in the step), KL at T=1; the teacher still runs once per step."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from kd_jax import config as config_lib
from kd_jax import losses, models
from kd_jax.data import pipelines
from kd_jax.distill import parsing
from kd_jax.distill.step import make_train_step
from kd_jax.errors import KdJaxError
from kd_jax.methods import Context, Outputs
from kd_jax.methods.function_matching import FunctionMatching, mixup
from kd_jax.training import teacher_cache
from tests import builders


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compilation):
  """XLA optimisations off for this module (conftest.fast_compilation)."""


def test_mixup_mixes_each_image_with_the_one_before_it_at_one_pair_of_weights():
  images = jnp.array([1.0, 10.0, 100.0]).reshape(3, 1, 1, 1) * jnp.ones((3, 2, 2, 1))
  mixed, w = mixup(jax.random.PRNGKey(0), images, p=1.0, n=2)
  assert w.shape == (2,) and float(w.sum()) == pytest.approx(1.0) and 0.5 <= float(w[0]) <= 1.0
  want = [w[0] * 1 + w[1] * 100, w[0] * 10 + w[1] * 1, w[0] * 100 + w[1] * 10]  # roll by 1
  np.testing.assert_allclose(np.asarray(mixed[:, 0, 0, 0]), np.asarray(want), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(mixup(jax.random.PRNGKey(0), images, p=1.0, n=2)[0]),
                                np.asarray(mixed))


def test_the_weight_of_the_image_itself_is_uniform_on_a_half_to_one_at_p_1():
  """Dirichlet(1, 1) sorted: the larger weight is uniform on [0.5, 1] (mean 0.75)."""
  keys = jax.random.split(jax.random.PRNGKey(1), 4000)
  first = jax.vmap(lambda k: mixup(k, jnp.zeros((2, 1)), p=1.0, n=2)[1][0])(keys)
  assert float(first.min()) >= 0.5 and float(first.max()) <= 1.0
  assert float(first.mean()) == pytest.approx(0.75, abs=0.01)
  assert float(jnp.mean(first < 0.625)) == pytest.approx(0.25, abs=0.03)


def test_no_mixup_leaves_the_batch_as_it_is():
  batch = {"image": jnp.ones((2, 2, 2, 1)), "label": jnp.zeros(2, jnp.int32)}
  assert FunctionMatching(mixup_p=0.0).transform_batch(batch, jax.random.PRNGKey(0)) is batch


def test_the_loss_is_kl_from_the_teacher_at_temperature_1():
  s, t = jnp.array([[1.0, 0.0, -1.0]]), jnp.array([[0.0, 2.0, 0.0]])
  p = jax.nn.softmax(t[0])
  want = float(jnp.sum(p * (jnp.log(p) - jax.nn.log_softmax(s[0]))))
  ctx = Context(None, None, Outputs(s, {}), Outputs(t, {}), {}, None, None, None)
  assert float(FunctionMatching().loss(ctx)) == pytest.approx(want, rel=1e-6)
  assert float(losses.kd(s, t, temperature=1.0)) == pytest.approx(want, rel=1e-6)


SEEN: dict[str, list[np.ndarray]] = {"teacher": [], "student": []}


class Recorded(nn.Module):
  """A zoo model that records each input it is applied to (host callback: concrete values,
  once per execution)."""
  inner: nn.Module
  who: str

  @nn.compact
  def __call__(self, x, train: bool = False):
    jax.debug.callback(lambda v: SEEN[self.who].append(np.asarray(v)), x)
    return self.inner(x, train)


def _digits_batch(augment: str, size: int = 16):
  """The first train batch of the embedded digits as the host pipeline prepares it."""
  cfg = ml_collections.ConfigDict(dict(config_lib.base_config().data))
  cfg.train_augment = augment
  data = pipelines.create_dataset(cfg, size)
  return next(iter(data.train_batches(epoch=0, seed=0)))


def test_teacher_and_student_read_one_view_the_hosts_crop_mixed_once_in_the_step():
  batch = _digits_batch("inception")
  assert not np.array_equal(batch["image"], _digits_batch("none")["image"])  # Cropped.
  objs = parsing.parse_objectives({"function_matching": {}}, ["t"], True)
  student = Recorded(models.create("resnet8", 10), "student")
  teacher = Recorded(models.create("resnet14", 10), "teacher")
  tv = teacher.init(jax.random.PRNGKey(1), jnp.zeros((1, 8, 8, 1)))
  tx = builders.optimizer(builders.sgd(0.05), objs)
  state = builders.train_state(student, objs, tx, teachers={"t": (teacher, tv)})
  step = jax.jit(make_train_step(student, {"t": teacher}, objs, tx, True))
  for seen in SEEN.values():
    seen.clear()
  new_state, _ = step(state, batch, jax.random.PRNGKey(0))
  jax.effects_barrier()  # Every callback of the step has run.
  assert len(SEEN["teacher"]) == 1 and len(SEEN["student"]) == 1  # Each ran once.
  (t_in,), (s_in,) = SEEN["teacher"], SEEN["student"]
  np.testing.assert_array_equal(t_in, s_in)  # Same crop, same pairs, same weights.
  # The view is the host's cropped batch mixed with itself rolled by one, at one weight.
  x, rolled = batch["image"], np.roll(batch["image"], 1, axis=0)
  w = np.sum((t_in - rolled) * (x - rolled)) / np.sum((x - rolled) ** 2)
  assert 0.5 <= w <= 1.0
  np.testing.assert_allclose(t_in, w * x + (1 - w) * rolled, atol=1e-5)
  # The next step draws another mix of the same batch.
  step(new_state, batch, jax.random.PRNGKey(0))
  jax.effects_barrier()
  assert len(SEEN["teacher"]) == 2 and len(SEEN["student"]) == 2
  assert not np.array_equal(SEEN["teacher"][1], t_in)
  np.testing.assert_array_equal(SEEN["teacher"][1], SEEN["student"][1])


def test_two_objectives_that_change_the_batch_are_refused_in_one_line():
  with pytest.raises(KdJaxError, match=r"^config\.objectives: fm_a and fm_b each change the "
                     r"images the networks read \(transform_batch\); a run can have one of them$"):
    parsing.parse_objectives({"fm_a": {"loss": "function_matching"},
                      "fm_b": {"loss": "function_matching"}}, ["t"], True)


def test_a_teacher_cache_is_refused_beside_function_matching():
  c = config_lib.base_config()
  c.teacher_cache = "memory"
  c.teachers = {"t": dict(model="resnet8", run="t")}
  objs = parsing.parse_objectives({"function_matching": {}}, ["t"], True)
  with pytest.raises(KdJaxError, match=r"^config\.teacher_cache: objective 'function_matching' "
                     r"changes the images in every step"):
    teacher_cache.check_config(c, objs)

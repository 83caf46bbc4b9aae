"""CRD: memory-bank semantics, normalisers, the NCE loss, negative sampling, sharding."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import losses, methods
from tests.losses.helpers import run

CRD = methods.get("crd")()  # tau 0.07, momentum 0.5: the method's defaults.
crd = jax.jit(lambda *a, temperature=CRD.nce_t, momentum=CRD.nce_m: losses.crd(
    *a, temperature=temperature, momentum=momentum), static_argnames=("temperature", "momentum"))
memory_init = jax.jit(losses.crd_memory_init, static_argnums=(1, 2))


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def rand_unit(seed, shape):
  return unit(np.random.RandomState(seed).randn(*shape)).astype(np.float32)


def test_memory_init_is_uniform_in_the_reference_range_and_unset():
  m = memory_init(jax.random.PRNGKey(0), 1000, 128)
  a = 1 / np.sqrt(128 / 3)
  assert m.student.shape == m.teacher.shape == (1000, 128)
  assert float(m.student.min()) >= -a and float(m.student.max()) <= a
  assert float(m.student.std()) == pytest.approx(a / np.sqrt(3), rel=0.02)
  assert float(m.z_student) < 0 and float(m.z_teacher) < 0


@pytest.mark.parametrize("momentum", [0.5, 0.8])
def test_memory_update_is_momentum_then_renormalise_on_batch_rows_only(momentum):
  """row <- unit(momentum * row + (1 - momentum) * z) on the batch's rows; at 0.8 the old row
  and the new embedding weigh differently (at the default 0.5 a swap would not show)."""
  m = memory_init(jax.random.PRNGKey(1), 20, 8)
  z_s, z_t = rand_unit(2, (3, 8)), rand_unit(3, (3, 8))
  index = np.array([4, 0, 17])
  contrast = np.concatenate([index[:, None], np.array([[1, 2], [3, 5], [6, 7]])], axis=1)
  _, new = crd(z_s, z_t, m, index, contrast, momentum=momentum)
  want_s = unit(momentum * np.asarray(m.student)[index] + (1 - momentum) * z_s)
  np.testing.assert_allclose(np.asarray(new.student)[index], np.asarray(want_s), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(new.teacher)[index],
                             unit(momentum * np.asarray(m.teacher)[index] + (1 - momentum) * z_t),
                             rtol=1e-5, atol=1e-6)
  untouched = np.setdiff1d(np.arange(20), np.asarray(index))
  np.testing.assert_array_equal(np.asarray(new.student)[untouched], np.asarray(m.student)[untouched])
  np.testing.assert_array_equal(np.asarray(new.teacher)[untouched], np.asarray(m.teacher)[untouched])


def test_normalisers_are_set_on_the_first_batch_then_frozen():
  n, k = 50, 10
  m = memory_init(jax.random.PRNGKey(4), n, 16)
  index = np.arange(4)
  contrast = np.concatenate([index[:, None], np.arange(10, 50).reshape(4, k)], axis=1)
  z_s, z_t = rand_unit(5, (4, 16)), rand_unit(6, (4, 16))
  _, m1 = crd(z_s, z_t, m, index, contrast)
  scores_s = np.exp(np.einsum("bkd,bd->bk", np.asarray(m.teacher)[contrast], z_s) / 0.07)
  assert float(m1.z_student) == pytest.approx(n * float(scores_s.mean()), rel=1e-5)
  _, m2 = crd(rand_unit(7, (4, 16)), rand_unit(8, (4, 16)), m1, index, contrast)
  assert float(m2.z_student) == float(m1.z_student) and float(m2.z_teacher) == float(m1.z_teacher)


def test_nce_by_hand():
  # One example, K = 1, N = 4: m P_n = 1/4. x = [0.5, 0.25].
  x = np.array([[0.5, 0.25]])
  eps = 1e-7
  want = -(np.log(0.5 / (0.5 + 0.25 + eps)) + np.log(0.25 / (0.25 + 0.25 + eps)))
  assert float(run(losses.nce, x, 4)) == pytest.approx(want, rel=1e-6)


def test_loss_decreases_as_student_embeddings_move_toward_the_teacher():
  n, d, b, k = 256, 128, 8, 64
  teacher = rand_unit(9, (n, d))
  # A memory of teacher embeddings (as after training); normalisers set by the first batch.
  m = memory_init(jax.random.PRNGKey(10), n, d).replace(teacher=teacher)
  index = np.arange(b)
  contrast = np.concatenate(
      [index[:, None], np.random.RandomState(11).randint(b, n, (b, k))], axis=1)
  z_s0 = rand_unit(12, (b, d))
  _, first = crd(z_s0, teacher[index], m, index, contrast)
  m = m.replace(z_student=first.z_student, z_teacher=first.z_teacher)
  values = []
  for lam in (0.0, 0.25, 0.5, 0.75, 1.0):
    z_s = unit(z_s0 + lam * (teacher[index] - z_s0))
    values.append(float(crd(z_s, teacher[index], m, index, contrast)[0]))
  # Falls while the positive pair's score rises; once that term has saturated (about 0) the
  # negatives' terms move only within ~1% (their dot products are a random sample).
  assert values[-1] < 0.7 * values[0], values
  assert all(b < a * 1.01 for a, b in zip(values, values[1:])), values


def test_gradients_reach_each_embedding_through_its_own_anchor():
  """z_s is scored against the teacher's memory bank, z_t against the student's: replacing
  the student's bank changes z_t's gradient only, the teacher's bank z_s's only."""
  n, d = 30, 8
  m = memory_init(jax.random.PRNGKey(13), n, d)
  index = np.arange(4)
  contrast = np.concatenate([index[:, None], np.arange(4, 28).reshape(4, 6)], axis=1)
  grad = jax.jit(jax.grad(lambda s, t, m: crd(s, t, m, index, contrast)[0],
                          argnums=(0, 1)))
  s, t = rand_unit(14, (4, d)), rand_unit(15, (4, d))
  g_s, g_t = grad(s, t, m)
  assert float(jnp.abs(g_s).sum()) > 0 and float(jnp.abs(g_t).sum()) > 0
  assert bool(jnp.all(jnp.isfinite(g_s))) and bool(jnp.all(jnp.isfinite(g_t)))
  other = memory_init(jax.random.PRNGKey(99), n, d)
  g_s2, g_t2 = grad(s, t, m.replace(student=other.student))
  np.testing.assert_array_equal(g_s2, g_s)
  assert float(jnp.abs(g_t2 - g_t).max()) > 1e-3 * float(jnp.abs(g_t).max())
  g_s3, g_t3 = grad(s, t, m.replace(teacher=other.teacher))
  np.testing.assert_array_equal(g_t3, g_t)
  assert float(jnp.abs(g_s3 - g_s).max()) > 1e-3 * float(jnp.abs(g_s).max())


def test_bfloat16_memory_bank_halves_storage_and_keeps_the_loss():
  n, d = 40, 16
  m32 = memory_init(jax.random.PRNGKey(17), n, d)
  m16 = m32.replace(student=m32.student.astype(jnp.bfloat16), teacher=m32.teacher.astype(jnp.bfloat16))
  index = np.arange(4)
  contrast = np.concatenate([index[:, None], np.arange(4, 36).reshape(4, 8)], axis=1)
  z_s, z_t = rand_unit(18, (4, d)), rand_unit(19, (4, d))
  l32, _ = crd(z_s, z_t, m32, index, contrast)
  l16, new16 = crd(z_s, z_t, m16, index, contrast)
  assert new16.student.dtype == jnp.bfloat16
  assert float(l16) == pytest.approx(float(l32), rel=1e-2)


def test_in_step_sampling_draws_uniformly_from_the_whole_set_after_the_example_itself():
  got = np.asarray(run(losses.sample_contrast_index, jax.random.PRNGKey(22), np.arange(2), 1000, 30))
  np.testing.assert_array_equal(got[:, 0], [0, 1])
  assert got.min() >= 0 and got.max() <= 29 and len(np.unique(got[:, 1:])) == 30


# The CRD step on a batch of 64 sharded 8 ways equals the unsharded one (loss, both banks,
# both normalisers): reductions and the memory scatter see the global batch.
_SHARDED = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import functools
    from kd_jax import losses
    assert jax.device_count() == 8
    n, d, b, k = 1000, 32, 64, 128
    mem = losses.crd_memory_init(jax.random.PRNGKey(0), n, d)
    unit = lambda x: x / jnp.linalg.norm(x, axis=1, keepdims=True)
    z_s = unit(jax.random.normal(jax.random.PRNGKey(1), (b, d)))
    z_t = unit(jax.random.normal(jax.random.PRNGKey(2), (b, d)))
    index = jax.random.permutation(jax.random.PRNGKey(3), n)[:b]
    contrast = jnp.concatenate([index[:, None], jax.random.randint(jax.random.PRNGKey(4), (b, k), 0, n)], 1)
    out = {}
    for nd in (1, 8):
      mesh = Mesh(np.array(jax.devices()[:nd]), ("data",))
      repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
      f = jax.jit(functools.partial(losses.crd, temperature=0.07, momentum=0.5),
                  in_shardings=(data, data, repl, data, data), out_shardings=(repl, repl))
      state = jax.device_put(mem, repl)
      for _ in range(2):
        loss, state = f(z_s, z_t, state, index, contrast)
      out[nd] = (loss, state)
    rel = lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))
    print(json.dumps({"loss": rel(out[8][0], out[1][0]),
                      "memory": max(jax.tree.leaves(jax.tree.map(rel, out[8][1], out[1][1]))),
                      "shards": len(jax.device_put(z_s, NamedSharding(mesh, P("data"))).addressable_shards)}))
""")


def test_sharded_batch_gives_the_single_device_result():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _SHARDED], env=env, capture_output=True, text=True,
                       timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["shards"] == 8
  assert result["loss"] < 1e-5 and result["memory"] < 1e-5, result


def test_scoring_every_bank_row_equals_gathering_the_contrast_rows():
  """Small banks are scored by one matmul, large ones by gathering: the same scores and
  gradients."""
  from kd_jax.losses.contrastive import contrast_scores
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 8))
  idx = jax.random.randint(jax.random.PRNGKey(1), (4, 3), 0, 20)
  bank = jax.random.normal(jax.random.PRNGKey(2), (20, 8))
  gathered = jnp.einsum("bkd,bd->bk", bank[idx], z)
  np.testing.assert_allclose(contrast_scores(bank, idx, z), gathered, rtol=1e-5)  # 20 <= 8*3.
  big = jnp.concatenate([bank, jnp.zeros((200, 8))])  # 220 > 8*3 rows: the gather path.
  np.testing.assert_allclose(contrast_scores(big, idx, z), gathered, rtol=1e-5)
  g = lambda b: jax.grad(lambda z: jnp.sum(jnp.sin(contrast_scores(b, idx, z))))(z)
  np.testing.assert_allclose(g(bank), g(big), rtol=1e-5, atol=1e-6)

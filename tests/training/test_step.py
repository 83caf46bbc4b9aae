"""The train step: data parallel equals single device, no recompilation, one compile per run."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from tests import builders
from tests.commands import REPO

# Builds one train step of resnet8 (CE) and runs it on a 1-device mesh and on an 8-device
# mesh over the same global batch; prints the largest relative differences
# (||a - b|| / ||b|| per array) as JSON.
_EIGHT_DEVICES = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from kd_jax import models
    from kd_jax.distill import parsing
    from kd_jax.distill.step import make_train_step
    from tests import builders
    assert jax.device_count() == 8, jax.devices()
    model = models.create("resnet8", 10)
    objs = parsing.parse_objectives({"ce": {"weight": 1.0}}, [], True)
    tx = builders.optimizer(builders.sgd(0.1, weight_decay=5e-4), objs)
    step = make_train_step(model, {}, objs, tx, has_labels=True)
    rng = np.random.RandomState(0)
    batch = {"image": rng.randn(64, 8, 8, 1).astype(np.float32),
             "label": rng.randint(0, 10, 64).astype(np.int32),
             "index": np.arange(64, dtype=np.int32)}
    state0 = jax.device_get(builders.train_state(model, objs, tx))
    out = {}
    for n in (1, 8):
      mesh = Mesh(np.array(jax.devices()[:n]), ("data",))
      repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
      f = jax.jit(step, in_shardings=(repl, data, repl), out_shardings=(repl, repl))
      state = jax.device_put(state0, repl)
      for _ in range(2):  # Two steps: the second reads the momentum of the first.
        state, m = f(state, jax.device_put(batch, data), jax.device_put(jax.random.PRNGKey(1), repl))
      out[n] = (m.compute()["loss"], state.params, state.batch_stats)
    # Relative error of each array: ||a - b|| / ||b||.
    rel = lambda a, b: float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b)) /
                             max(np.linalg.norm(np.asarray(b, np.float64)), 1e-30))
    print(json.dumps({
        "loss": rel(out[8][0], out[1][0]),
        "params": max(jax.tree.leaves(jax.tree.map(rel, out[8][1], out[1][1]))),
        "batch_stats": max(jax.tree.leaves(jax.tree.map(rel, out[8][2], out[1][2]))),
        "shards": len(jax.device_put(batch, data)["image"].addressable_shards)}))
""")


def test_eight_device_step_equals_one_device_step():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-c", _EIGHT_DEVICES], env=env, capture_output=True,
                        text=True, timeout=300, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  diffs = json.loads(proc.stdout.strip().splitlines()[-1])
  assert diffs["shards"] == 8
  assert diffs["loss"] < 1e-5 and diffs["params"] < 1e-5 and diffs["batch_stats"] < 1e-5, diffs


def test_train_step_compiles_once(tmp_path):
  """Five steps of a run reuse the first step's executable (no recompilation)."""
  from kd_jax import config as config_lib, plan
  from kd_jax.distill import step as step_lib
  from kd_jax.training import loop
  cfg = config_lib.base_config()
  cfg.num_epochs = 1
  cfg.data.num_train_examples = 5 * 32  # 5 steps of 32.
  cfg.batch_size = 32
  compiled = []
  original = jax.jit

  def counting_jit(fun, *args, **kwargs):
    jitted = original(fun, *args, **kwargs)
    if isinstance(fun, step_lib.Step):  # make_train_step's.
      compiled.append(jitted)
    return jitted

  loop.jax.jit = counting_jit
  try:
    loop.train_and_evaluate(plan.make_run(cfg, str(tmp_path)))
  finally:
    loop.jax.jit = original
  assert len(compiled) == 1
  assert compiled[0]._cache_size() == 1


def test_step_is_pure_and_deterministic():
  from kd_jax import models
  from kd_jax.distill import parsing
  from kd_jax.distill.step import make_train_step
  model = models.create("resnet8", 10)
  objs = parsing.parse_objectives({"ce": {}}, [], True)
  tx = builders.optimizer(builders.sgd(0.1), objs)
  step = jax.jit(make_train_step(model, {}, objs, tx, True))
  state = builders.train_state(model, objs, tx)
  batch = {"image": jnp.ones((8, 8, 8, 1)), "label": jnp.arange(8) % 10}
  a, _ = step(state, batch, jax.random.PRNGKey(0))
  b, _ = step(state, batch, jax.random.PRNGKey(0))
  assert int(a.step) == 1 and int(state.step) == 0
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(x, y)

"""Seeds side by side on 8 CPU devices: seed k of a run of three trains as a run of seed k
alone with the students vmapped (the job: ``seeds_exactness.py``; a file of its own, so that
the test suite's two workers can run it beside ``test_seeds.py``'s one-device job)."""
import os
import subprocess
import sys

import pytest

from tests.training import seeds_exactness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_seed_k_of_three_trains_as_seed_k_alone_on_8_devices(tmp_path):
  """The same with the students vmapped (an accelerator's default) on 8 CPU devices (each
  batch of 32 sharded 4 per device), in a process of its own: to rounding (XLA may round a
  sum over [seeds, batch] differently in the last bit)."""
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT, "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
  out = subprocess.run([sys.executable, "-m", "tests.training.seeds_exactness", str(tmp_path),
                        "vmap"],
                       env=env, cwd=ROOT, capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = [line.split() for line in out.stdout.splitlines()]
  assert [line for line in lines if line[:1] == ["devices"]] == [["devices", "8"]]
  seeds_exactness.check([(run, ref, float(a), float(b), int(n))
          for _, run, ref, a, b, n in (line for line in lines if line[:1] == ["compare"])],
         "vmap")

"""The docs' "Adding a method" (``docs/adding_a_method.md``), done for real as written: a
method in one file outside the kd_jax tree (a logit loss with a learnable per-class temperature adapter and a 1-epoch
initialisation phase), named in a config, trained by ``python -m kd_jax.train`` on the
embedded digits, with no file of kd_jax touched."""
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import methods
from kd_jax.distill import parsing
from kd_jax.errors import KdJaxError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The page's files and command, as written (tests/test_readme.py finds the page's blocks).
PAGE = open(os.path.join(ROOT, "docs", "adding_a_method.md"), encoding="utf-8").read()
_BLOCKS = [textwrap.dedent(b) for b in re.findall(r"^[ \t]*```(?:python|bash)\n(.*?)^[ \t]*```",
                                                   PAGE, re.S | re.M)]
METHOD_FILE, CONFIG_FILE, COMMAND = _BLOCKS


def test_the_page_shows_a_method_a_config_and_a_command():
  assert "@methods.register(\"calibrated_kd\")" in METHOD_FILE
  assert "def get_config()" in CONFIG_FILE and "calibrated_kd.py" in CONFIG_FILE
  assert COMMAND.startswith("python -m kd_jax.train --config=<folder>/calibrated.py")


@pytest.fixture
def calibrated_kd(tmp_path):
  """The method file, imported as a config would import it."""
  path = tmp_path / "calibrated_kd.py"
  path.write_text(METHOD_FILE)
  methods.import_modules([str(path)])
  yield path
  methods.REGISTRY.pop("calibrated_kd", None)


def test_a_registered_method_takes_its_hyperparameters_and_defaults_from_its_class(calibrated_kd):
  obj, = parsing.parse_objectives({"calibrated_kd": dict(init_temperature=2.0)}, ["t"], True)
  assert obj.method.init_temperature == 2.0 and obj.init_epochs == 1 and obj.teacher == "t"
  obj, = parsing.parse_objectives({"calibrated_kd": {}}, ["t"], True)
  assert obj.method.init_temperature == 4.0 and obj.given == frozenset()


def test_the_adapter_divides_the_logits_by_the_class_temperatures(calibrated_kd):
  obj, = parsing.parse_objectives({"calibrated_kd": {}}, ["t"], True)
  zs, zt = jnp.array([[4.0, 8.0]]), jnp.array([[8.0, 0.0]])
  params = {"log_t": jnp.log(jnp.array([2.0, 4.0]))}
  # Scaled: student [2, 2], teacher [4, 0]: KD at T = 1 of softmax([4, 0]) against uniform.
  loss, _ = obj(methods.Outputs(zs, {}), {"t": methods.Outputs(zt, {})}, {}, adapter_params=params)
  p = np.exp([4.0, 0.0]) / np.sum(np.exp([4.0, 0.0]))
  assert float(loss) == pytest.approx(float(np.sum(p * np.log(p / 0.5))), rel=1e-6)


def test_its_hyperparameters_range_is_checked_at_plan_time(calibrated_kd):
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.calibrated_kd: init_temperature "
                     r"must be > 0, got 0\.0$"):
    parsing.parse_objectives({"calibrated_kd": dict(init_temperature=0.0)}, ["t"], True)


def test_a_frozen_phase_cannot_be_skipped(calibrated_kd):
  with pytest.raises(KdJaxError, match=r"^config\.objectives\.calibrated_kd: init_epochs=0 would "
                     r"train against a randomly initialised, frozen \*"):
    parsing.parse_objectives({"calibrated_kd": dict(init_epochs=0)}, ["t"], True)


def test_a_method_name_already_taken_is_refused():
  with pytest.raises(ValueError, match="method 'kd' is already registered"):
    @methods.register("kd")
    class Other(methods.Method):  # noqa: F841
      pass


def test_an_unimportable_method_module_is_one_line(tmp_path):
  bad = tmp_path / "broken.py"
  bad.write_text("import no_such_module_anywhere\n")
  with pytest.raises(KdJaxError, match=r"^config\.method_modules: importing '.*broken\.py' "
                     r"failed: ModuleNotFoundError: No module named 'no_such_module_anywhere'$"):
    methods.import_modules([str(bad)])


def _git_status() -> str:
  return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                        capture_output=True, text=True, check=True, timeout=120).stdout


@pytest.mark.slow
def test_a_method_outside_the_tree_trains_from_a_config_alone(tmp_path):
  before = _git_status()
  (tmp_path / "calibrated_kd.py").write_text(METHOD_FILE)
  (tmp_path / "calibrated.py").write_text(CONFIG_FILE)
  workdir = tmp_path / "work"
  words = shlex.split(COMMAND.replace("<folder>", str(tmp_path)))
  words = [f"--workdir={workdir}" if w.startswith("--workdir=") else w for w in words]
  assert words[:3] == ["python", "-m", "kd_jax.train"]
  out = subprocess.run([sys.executable, *words[1:], "--config.num_epochs=1",
                        "--config.data.num_train_examples=128"], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, PYTHONPATH=ROOT))
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  assert "initialisation phase of 'calibrated_kd' (teacher calibration): 1 epochs" in out.stdout
  results = json.loads((workdir / "kd" / "results.json").read_text())
  assert results["objectives"] == {"ce": 0.1, "calibrated_kd": 0.9}
  assert results["init_phases"] == {"calibrated_kd": 1}
  assert results["steps"] == 2 and 0.0 <= results["test_accuracy"] <= 1.0
  # The phase (steps 1-2) calibrated the temperatures away from their start, 4; the main
  # phase (steps 3-4) trained the student with them frozen.
  log_t = {step: state["params"]["adapters"]["calibrated_kd"]["log_t"]
           for step, state in _states(workdir / "kd", (2, 4)).items()}
  assert np.all(np.abs(log_t[2] - np.float32(np.log(4.0))) > 1e-6)
  np.testing.assert_array_equal(log_t[4], log_t[2])
  assert _git_status() == before  # No file of kd_jax was written or changed.


def _states(run_dir, steps):
  """The run's saved train states at ``steps``."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from kd_jax import checkpoint  # pylint: disable=g-import-not-at-top
  ckpts = checkpoint.Checkpoints(str(run_dir), 3)
  try:
    return {s: ckpts.latest.restore(s, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))["state"] for s in steps}
  finally:
    ckpts.close()

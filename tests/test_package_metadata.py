"""The package's metadata: one version (``kd_jax.__version__``, read by setup.py, repeated by
CITATION.cff and the CHANGELOG), and the licence."""
import importlib.metadata
import os
import re

from tests.commands import REPO


def test_the_version_is_written_once():
  """``kd_jax.__version__`` is the package's version (setup.py reads it) and CITATION.cff's."""
  import kd_jax  # pylint: disable=g-import-not-at-top
  citation = open(os.path.join(REPO, "CITATION.cff"), encoding="utf-8").read()
  assert re.search(r"^version: (\S+)$", citation, re.M).group(1) == kd_jax.__version__
  assert re.fullmatch(r"\d+\.\d+\.\d+", kd_jax.__version__)
  assert importlib.metadata.version("kd_jax") == kd_jax.__version__  # setup.py's
  assert f"## {kd_jax.__version__} " in open(os.path.join(REPO, "CHANGELOG.md")).read()
  assert "Apache License" in open(os.path.join(REPO, "LICENSE")).read(200)

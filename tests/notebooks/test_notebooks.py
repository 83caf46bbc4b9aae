"""The notebooks run top to bottom (small settings: KD_JAX_NOTEBOOK_FAST=1) and are stored
without outputs."""
import base64
import io
import os

import nbformat
import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
# name -> how many figures it must draw.
EXPECTED_FIGURES = {"quickstart.ipynb": 2, "consolidation.ipynb": 3, "methods.ipynb": 8}
# Where compiling is most of the fast settings' time (7 runs of 5 steps and 6 linear probes:
# 138 s with XLA's optimisations, 110 s without, on a 2-core CPU; methods.ipynb ran slower).
COMPILATION_BOUND = ("consolidation.ipynb",)


def test_every_notebook_is_listed():
  assert sorted(f for f in os.listdir(NOTEBOOKS) if f.endswith(".ipynb")) == sorted(EXPECTED_FIGURES)


@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_stored_without_outputs(name):
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (name, cell.source[:60])


def _figures(nb):
  return [Image.open(io.BytesIO(base64.b64decode(out.data["image/png"])))
          for cell in nb.cells if cell.cell_type == "code"
          for out in cell.outputs if "data" in out and "image/png" in out.data]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_runs_top_to_bottom(name, tmp_path, monkeypatch):
  from nbclient import NotebookClient
  monkeypatch.setenv("KD_JAX_NOTEBOOK_FAST", "1")
  monkeypatch.setenv("KD_JAX_NOTEBOOK_WORKDIR", str(tmp_path))
  if name in COMPILATION_BOUND:  # XLA's optimisations off, as conftest.fast_compilation.
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  # A failing cell raises CellExecutionError with its traceback.
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": NOTEBOOKS}}).execute()
  errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
            if out.output_type == "error"]
  assert not errors
  figures = _figures(nb)
  assert len(figures) == EXPECTED_FIGURES[name]
  for image in figures:
    pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert image.size[0] >= 400 and pixels.std() > 5  # drawn, not blank

"""Which room of the package may import which (docs/development.md, "Layout"): read from the source with
``ast``, every import counted, also those inside functions."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "kd_jax"
ENTRYPOINTS = ("train", "evaluate", "benchmark", "convert", "plot")


def _room(module: str) -> str:
  """``kd_jax.losses.features`` -> ``losses``; ``kd_jax.config`` -> ``config``."""
  return module.split(".")[1]


def _imports() -> dict[str, set[str]]:
  """``{module: the kd_jax modules it imports}`` over every file of the package."""
  out = {}
  for path in PACKAGE.rglob("*.py"):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    if module == "kd_jax":
      continue
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        names |= {a.name for a in node.names if a.name.startswith("kd_jax.")}
      elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kd_jax"):
        for a in node.names:  # `from kd_jax import losses` imports the room losses.
          names.add(f"{node.module}.{a.name}" if node.module == "kd_jax" else node.module)
    out[module] = names
  return out


IMPORTS = _imports()


def _rooms_imported_by(room: str) -> set[str]:
  return {_room(n) for m, names in IMPORTS.items() if _room(m) == room for n in names} - {room}


def test_the_walk_sees_the_package():
  assert {"kd_jax.losses.features", "kd_jax.methods.crd", "kd_jax.training.loop"} <= set(IMPORTS)
  assert "kd_jax.losses" in IMPORTS["kd_jax.methods.crd"]


@pytest.mark.parametrize("room,allowed", [
    ("losses", set()),
    ("models", {"errors"}),
    ("data", {"errors"}),
    # data: the device augmentations a method's view is made with (MLKD's RandAugment).
    ("methods", {"losses", "models", "data", "errors"}),
])
def test_a_room_imports_only_what_it_may(room, allowed):
  assert _rooms_imported_by(room) <= allowed


def test_training_one_run_imports_neither_jobs_nor_evaluation_nor_benchmarks():
  assert _rooms_imported_by("training") & {"job", "dry_run", "evaluation", "bench"} == set()


def test_nothing_imports_an_entrypoint():
  importers = {m: sorted(n for n in names if _room(n) in ENTRYPOINTS)
               for m, names in IMPORTS.items() if _room(m) not in ENTRYPOINTS}
  assert {m: v for m, v in importers.items() if v} == {}


def test_the_rooms_import_each_other_without_a_cycle():
  graph = {_room(m): set() for m in IMPORTS}
  for m, names in IMPORTS.items():
    graph[_room(m)] |= {_room(n) for n in names} - {_room(m)}
  done, path = set(), []

  def visit(room):
    if room in path:
      raise AssertionError(f"import cycle: {' -> '.join(path[path.index(room):] + [room])}")
    if room in done:
      return
    path.append(room)
    for other in sorted(graph.get(room, ())):
      visit(other)
    path.pop()
    done.add(room)

  for room in sorted(graph):
    visit(room)


def test_objectives_are_parsed_in_the_plan_only():
  """A run is assembled in one place: only ``kd_jax.plan`` imports the objectives' parser."""
  importers = []
  for path in PACKAGE.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if ((isinstance(node, ast.ImportFrom) and node.module == "kd_jax.distill"
           and any(a.name == "parsing" for a in node.names))
          or (isinstance(node, ast.ImportFrom) and node.module == "kd_jax.distill.parsing")
          or (isinstance(node, ast.Import)
              and any(a.name == "kd_jax.distill.parsing" for a in node.names))):
        importers.append(str(path.relative_to(PACKAGE.parent)))
  assert importers == ["kd_jax/plan.py"]

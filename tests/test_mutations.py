"""tools/mutations.py stays applicable: each mutation's text is still in the file it breaks,
once, and names tests that exist (running the mutations themselves takes minutes: not here)."""
import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("mutations", os.path.join(REPO, "tools", "mutations.py"))
mutations = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutations)


@pytest.mark.parametrize("name", sorted(mutations.MUTATIONS))
def test_each_mutation_still_finds_its_text_and_its_tests(name):
  _, edits, tests = mutations.MUTATIONS[name]
  for path, old, _ in edits:
    with open(os.path.join(REPO, path)) as f:
      assert f.read().count(old) == 1, (path, old)
  for test in tests:
    path, *test_name = test.split("::")
    with open(os.path.join(REPO, path)) as f:
      source = f.read()
    assert not test_name or f"def {test_name[0]}(" in source, test

"""tools/mutations.py stays applicable: each mutation's text is still in the file it breaks,
once, and names tests that exist (running the mutations themselves takes minutes: not here);
only an assertion of a named test counts as catching one."""
import importlib.util
import os

import numpy as np
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
    assert not test_name or f"def {test_name[0].split('[')[0]}(" in source, test


def _exception_of(fn):
  try:
    fn()
  except BaseException as err:  # pylint: disable=broad-except
    return type(err)
  raise AssertionError("did not raise")


def test_assertions_count_and_other_exceptions_do_not():
  assert mutations._is_assertion(_exception_of(lambda: np.testing.assert_array_equal(1, 2)))
  assert mutations._is_assertion(_exception_of(lambda: pytest.fail("no")))

  def did_not_raise():
    with pytest.raises(ValueError):
      pass
  assert mutations._is_assertion(_exception_of(did_not_raise))
  assert not mutations._is_assertion(_exception_of(lambda: undefined_name))  # noqa: F821
  assert not mutations._is_assertion(_exception_of(lambda: {}["key"]))

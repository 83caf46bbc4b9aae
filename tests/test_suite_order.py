"""The test suite's own scheduling hint names files that exist."""
import os

from tests.conftest import LONGEST_FIRST

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_file_named_longest_first_exists():
  assert [p for p in LONGEST_FIRST if not os.path.isfile(os.path.join(REPO, p))] == []

"""The README tells the truth about what it names: every ``python -m kd_jax.*`` command in it
parses (its flags exist, its config loads, its overrides name fields), every config it names
loads, and every file it names exists."""
import os
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

from kd_jax import config as config_lib
from tests.commands import REPO

README = open(os.path.join(REPO, "README.md")).read()
_PLACEHOLDER = re.compile(r"<[^<>]*>")


def _fenced_and_prose(text: str) -> tuple[list[str], str]:
  """(the contents of the fenced code blocks, the text outside them)."""
  blocks, prose, current = [], [], None
  for line in text.splitlines(keepends=True):
    if re.fullmatch(r"\s*```[\w-]*\s*", line):
      if current is None:
        current = []
      else:
        blocks.append("".join(current))
        current = None
    elif current is None:
      prose.append(line)
    else:
      current.append(line)
  return blocks, "".join(prose)


def _shell_commands(text: str) -> list[list[str]]:
  """The simple commands of the snippet's lines that run kd_jax (continuations joined,
  comments dropped, split at ``&&``, ``||``, ``;`` and ``|``), each as its words."""
  commands = []
  for line in text.replace("\\\n", " ").splitlines():
    if "python -m kd_jax." not in line:
      continue
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words: list[str] = []
    for token in lexer:
      if token in ("&&", "||", ";", "|", "&"):
        commands.append(words)
        words = []
      else:
        words.append(token)
    commands.append(words)
  return [c for c in commands if c]


def _readme_commands() -> list[tuple[str, list[str]]]:
  """``(module, arguments)`` of every ``python -m kd_jax.<module>`` command in the README's
  code blocks and inline code spans; placeholders (``<dir>``) are the word PLACEHOLDER."""
  blocks, prose = _fenced_and_prose(README)
  spans = [s for s in re.findall(r"`([^`]+)`", prose) if "python -m kd_jax." in s]
  found = []
  for snippet in blocks + spans:
    for words in _shell_commands(_PLACEHOLDER.sub("PLACEHOLDER", snippet)):
      while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # VAR=value prefixes.
        words = words[1:]
      if words[:2] == ["python", "-m"] and re.fullmatch(r"kd_jax\.\w+", words[2]):
        found.append((words[2], words[3:]))
  return found


def _runnable(args: list[str]) -> list[str]:
  """The arguments with template parts dropped: ``...``, ``[--x ...]``, flags whose name is a
  placeholder; with ``--config=configs/<name>.py`` the config and its overrides go too
  (the default config would not have the template's fields). Placeholder values
  (``--workdir=<dir>``) stay the word PLACEHOLDER."""
  config_template = any(a.startswith("--config=") and "PLACEHOLDER" in a for a in args)
  out = []
  for arg in args:
    name = arg.split("=", 1)[0]
    if (arg == "..." or arg.startswith("[") or arg.endswith("]") or "PLACEHOLDER" in name
        or (config_template and name.startswith("--config"))):
      continue
    out.append(arg)
  return out


COMMANDS = _readme_commands()


def test_the_readme_shows_commands_of_every_entrypoint():
  assert {m for m, _ in COMMANDS} >= {"kd_jax.train", "kd_jax.evaluate", "kd_jax.benchmark",
                                      "kd_jax.convert", "kd_jax.plot"}
  assert len(COMMANDS) >= 20


@pytest.mark.parametrize("module, args", COMMANDS,
                         ids=[f"{m} {' '.join(a)}"[:80] for m, a in COMMANDS])
def test_every_readme_command_parses(module, args):
  """absl's ``--only_check_args``: flags parsed, the config loaded and overridden, then exit."""
  proc = subprocess.run([sys.executable, "-m", module, *_runnable(args), "--only_check_args"],
                        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]


def _named_paths() -> list[str]:
  """Paths in the tree the README names (not templates such as ``tests/losses/test_<family>.py``)."""
  pattern = (r"(?<![\w/.$<-])((?:configs|kd_jax|tests|notebooks|tools|benchmarks|\.ci)/"
             r"[\w./-]*\w)(?![\w./<-])")
  return sorted(set(re.findall(pattern, README)))


@pytest.mark.parametrize("path", _named_paths())
def test_every_file_the_readme_names_exists(path):
  assert os.path.exists(os.path.join(REPO, path)), path


def _named_configs() -> list[str]:
  """The configs the README names, as ``configs/x/y.py[:arg]``: with the ``configs/`` prefix,
  or without it where a table names them by folder (``cifar100/kd.py``, ``digits/distill.py:at``)."""
  folders = sorted(d for d in os.listdir(os.path.join(REPO, "configs"))
                   if os.path.isdir(os.path.join(REPO, "configs", d)))
  pattern = (r"(?<![\w/.-])(?:configs/)?((?:%s)/\w+\.py(?::[\w.-]+)?|(?<=configs/)\w+\.py)"
             % "|".join(folders))
  return sorted("configs/" + c for c in set(re.findall(pattern, README)))


def test_every_config_the_readme_names_loads():
  configs = _named_configs()
  assert len(configs) >= 20
  failed = {}
  for name in configs:
    try:
      config_lib.from_file(os.path.join(REPO, name))
    except Exception as err:  # pylint: disable=broad-except
      failed[name] = f"{type(err).__name__}: {err}"
  assert not failed, failed


def test_every_test_the_readme_names_exists():
  for path, test in re.findall(r"(tests/[\w/]+\.py)::(\w+)", README):
    assert f"def {test}(" in open(os.path.join(REPO, path)).read(), (path, test)


def test_the_adding_a_method_file_is_the_one_the_test_trains():
  """The README's method file, unindented, is ``test_adding_a_method.METHOD_FILE``."""
  from tests.distill.test_adding_a_method import METHOD_FILE
  section = README[README.index("## Adding a method"):README.index("## Many devices")]
  block = re.search(r"```python\n(.*?)\n   ```", section, re.S).group(1)
  assert textwrap.dedent(block) + "\n" == METHOD_FILE

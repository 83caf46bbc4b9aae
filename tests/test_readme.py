"""The README and the docs (``docs/*.md``) tell the truth about what they name: every
``python -m kd_jax.*`` command in them parses (its flags exist, its config loads, its overrides
name fields), every config they name loads, every file and test they name exists, and the
README's own config file plans as written. ("Adding a method" runs end to end in
``tests/distill/test_adding_a_method.py``.)"""
import glob
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

from kd_jax import config as config_lib
from tests.commands import REPO

# The pages checked: the README and every page of the docs site.
PAGES = {os.path.relpath(path, REPO): open(path, encoding="utf-8").read()
         for path in [os.path.join(REPO, "README.md"),
                      *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]}
README = PAGES["README.md"]
ALL_TEXT = "\n".join(PAGES.values())
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
  """``(page, module, arguments)`` of every ``python -m kd_jax.<module>`` command in the
  pages' code blocks and inline code spans; placeholders (``<dir>``) are the word PLACEHOLDER."""
  found = []
  for page, text in PAGES.items():
    blocks, prose = _fenced_and_prose(text)
    spans = [s for s in re.findall(r"`([^`]+)`", prose) if "python -m kd_jax." in s]
    found += [(page, m, a) for m, a in _commands_in(blocks + spans)]
  return found


def _commands_in(snippets: list[str]) -> list[tuple[str, list[str]]]:
  found = []
  for snippet in snippets:
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


def test_the_pages_show_commands_of_every_entrypoint():
  assert {m for _, m, _ in COMMANDS} >= {"kd_jax.train", "kd_jax.evaluate", "kd_jax.benchmark",
                                         "kd_jax.convert", "kd_jax.plot"}
  assert len(COMMANDS) >= 20
  assert {p for p, _, _ in COMMANDS} >= {"README.md", "docs/running.md", "docs/speed.md"}


def test_the_readme_is_short():
  """Issue 39: the README holds the essentials (at most 250 lines); the docs hold the rest."""
  assert README.count("\n") <= 250


@pytest.mark.parametrize("page, module, args", COMMANDS,
                         ids=[f"{p}: {m} {' '.join(a)}"[:90] for p, m, a in COMMANDS])
def test_every_command_in_the_pages_parses(page, module, args, tmp_path):
  """absl's ``--only_check_args``: flags parsed, the config loaded and overridden, then exit.
  A command of the README's own config (``--config=my_experiment.py``) runs where the
  README's file is saved as written."""
  cwd, env = REPO, None
  if "--config=my_experiment.py" in args:
    (tmp_path / "my_experiment.py").write_text(_readme_config())
    cwd, env = str(tmp_path), dict(os.environ, PYTHONPATH=REPO)
  proc = subprocess.run([sys.executable, "-m", module, *_runnable(args), "--only_check_args"],
                        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]


def _readme_config() -> str:
  block, = [b for b in python_blocks("README.md") if "def get_config" in b]
  return block


def _named_paths() -> list[str]:
  """Paths in the tree the pages name (not templates such as ``tests/losses/test_<family>.py``)."""
  pattern = (r"(?<![\w/.$<-])((?:configs|kd_jax|tests|notebooks|tools|benchmarks|docs|\.ci)/"
             r"[\w./-]*\w)(?![\w./<-])")
  return sorted(set(re.findall(pattern, ALL_TEXT)))


@pytest.mark.parametrize("path", _named_paths())
def test_every_file_the_pages_name_exists(path):
  assert os.path.exists(os.path.join(REPO, path)), path


def _named_configs() -> list[str]:
  """The configs the README names, as ``configs/x/y.py[:arg]``: with the ``configs/`` prefix,
  or without it where a table names them by folder (``cifar100/kd.py``, ``digits/distill.py:at``)."""
  folders = sorted(d for d in os.listdir(os.path.join(REPO, "configs"))
                   if os.path.isdir(os.path.join(REPO, "configs", d)))
  pattern = (r"(?<![\w/.-])(?:configs/)?((?:%s)/\w+\.py(?::[\w.-]+)?|(?<=configs/)\w+\.py)"
             % "|".join(folders))
  return sorted("configs/" + c for c in set(re.findall(pattern, ALL_TEXT)))


def test_every_config_the_pages_name_loads():
  configs = _named_configs()
  assert len(configs) >= 20
  failed = {}
  for name in configs:
    try:
      config_lib.from_file(os.path.join(REPO, name))
    except Exception as err:  # pylint: disable=broad-except
      failed[name] = f"{type(err).__name__}: {err}"
  assert not failed, failed


def test_every_test_the_pages_name_exists():
  for path, test in re.findall(r"(tests/[\w/]+\.py)::(\w+)", ALL_TEXT):
    assert f"def {test}(" in open(os.path.join(REPO, path)).read(), (path, test)


def python_blocks(page: str) -> list[str]:
  """The ``python`` fenced blocks of a page, unindented, in order."""
  return [textwrap.dedent(b) for b in
          re.findall(r"^[ \t]*```python\n(.*?)^[ \t]*```", PAGES[page], re.S | re.M)]


def test_the_readmes_own_experiment_plans_as_written(tmp_path):
  """The README's complete config file, saved as written, passes the whole job's plan (every
  run's model, data, teachers, objectives and hyperparameters checked, as before training)."""
  from kd_jax import plan  # pylint: disable=g-import-not-at-top
  path = tmp_path / "my_experiment.py"
  path.write_text(_readme_config())
  job = plan.make(config_lib.from_file(str(path)), str(tmp_path / "work"))
  assert list(job.runs) == ["teacher", "student"]
  student = job.runs["student"]
  assert sorted(o.name for o in student.objectives) == ["ce", "crd", "kd"]


def test_every_measured_figure_has_its_commit_and_cpu():
  """``tools/figures.py --check``: every measured figure of the README and the docs is
  attributed to a commit and a CPU."""
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "figures.py"), "--check"],
                        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, "\n".join(l for l in proc.stdout.splitlines() if "MISSING" in l)
  assert int(proc.stderr.split()[0]) >= 200  # The figures were found at all.


def _figures_tool():
  spec = importlib.util.spec_from_file_location("kd_jax_figures_tool",
                                                os.path.join(REPO, "tools", "figures.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_a_table_figure_quoted_twice_with_different_values_is_a_conflict():
  """The same row and column at the same commit on two pages, with two values; the same
  figure twice, or another commit's, is not."""
  tool = _figures_tool()
  page = ("## A\n\n*Measured: commit {sha}, 2-core AMD EPYC (Zen 4) VM.*\n\n"
          "| student | test acc % |\n|---|---|\n| KD | {value} ± 0.16 |\n")
  sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD~1"], cwd=REPO, check=True,
                       capture_output=True, text=True).stdout.strip()
  old = subprocess.run(["git", "rev-parse", "--short=7", "HEAD~2"], cwd=REPO, check=True,
                       capture_output=True, text=True).stdout.strip()
  commits = {sha, old}
  first = tool.figures("a.md", commits, page.format(sha=sha, value="99.35"))
  assert [(f["figure"], f["commit"], f["cpu"]) for f in first] == [
      ("99.35", sha, "AMD EPYC (Zen 4)")]
  same = tool.figures("b.md", commits, page.format(sha=sha, value="99.35"))
  other = tool.figures("c.md", commits, page.format(sha=sha, value="99.07"))
  later = tool.figures("d.md", commits, page.format(sha=old, value="99.07"))
  assert tool.conflicts(first + same + later) == []
  clashes = tool.conflicts(first + other)
  assert len(clashes) == 1 and "99.35 (a.md:7) and 99.07 (c.md:7)" in clashes[0], clashes


def test_every_python_block_of_the_pages_is_run_by_a_test():
  """A Python block in the README or the docs is a config or a method that a test runs as
  written: the README's own experiment (planned above), the files of "Adding a method"
  (trained by ``tests/distill/test_adding_a_method.py``) or the seeds page's run (planned by
  ``tests/training/test_seeds.py``)."""
  from tests.distill.test_adding_a_method import CONFIG_FILE, METHOD_FILE
  blocks = {page: python_blocks(page) for page in PAGES}
  assert {p: len(b) for p, b in blocks.items() if b} == {"README.md": 1,
                                                          "docs/adding_a_method.md": 2,
                                                          "docs/seeds.md": 1}
  assert blocks["docs/adding_a_method.md"] == [METHOD_FILE, CONFIG_FILE]
  assert blocks["README.md"] == [_readme_config()]


def test_the_readme_names_every_registered_method():
  """Its "Methods at a glance" has every objective a config can name."""
  from kd_jax import methods  # pylint: disable=g-import-not-at-top
  section = README[README.index("## Methods at a glance"):README.index("## Adding a method")]
  assert [m for m in sorted(methods.REGISTRY) if f"`{m}`" not in section] == []

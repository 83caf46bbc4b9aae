"""The config fields and the methods as Markdown, generated from the code so that the docs
cannot drift from it (the MkDocs hook ``docs/hooks.py``): the fields from
``config.base_config()`` (names, defaults) and the comments beside each field in
``kd_jax/config.py`` (``docs/configs.md``); a card per registered method from its class (file,
docstring, hyperparameters with their defaults, what it reads, labels, phase, views:
``docs/methods.md``)."""
from __future__ import annotations

import dataclasses
import inspect
import io
import os
import re
import textwrap
import tokenize

import ml_collections

from kd_jax import config as config_lib

# The functions of config.py that define a group of fields, and where the group sits.
GROUPS = (
    ("", config_lib.base_config),
    ("data.", config_lib.data_config),
    ("optimizer.", config_lib.optimizer_config),
    ("downstream.", config_lib.downstream_config),
)
_ASSIGN = re.compile(r"^\s*c\.([\w.]+)\s*=")


def field_comments(function) -> dict[str, str]:
  """``{field: its comment}`` for every ``c.<field> = ...`` of ``function``: the comment on
  the line, the comment-only lines indented below it (a continuation), and a comment block
  just above it at the statement's indentation."""
  source = inspect.getsource(function)
  comments: dict[int, str] = {}
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.COMMENT:
      comments[tok.start[0]] = tok.string.lstrip("#").strip()
  lines = source.splitlines()
  out: dict[str, list[str]] = {}
  pending: list[str] = []
  last = None
  for number, line in enumerate(lines, start=1):
    code = line.split("#", 1)[0].strip() if number in comments else line.strip()
    match = _ASSIGN.match(line)
    if match:
      last = match.group(1)
      out[last] = pending + ([comments[number]] if number in comments else [])
      pending = []
    elif not code and number in comments:
      if last is not None and line.index("#") > _indent(lines, number):
        out[last].append(comments[number])      # Aligned under the previous field's comment.
      else:
        pending.append(comments[number])        # A block above the next field.
    elif code.startswith("return") and number in comments and last is not None:
      out[last].append(comments[number])
    elif code:
      pending = []
  return {k: " ".join(v) for k, v in out.items()}


def _indent(lines: list[str], number: int) -> int:
  """The indentation of the statements around line ``number`` (1-based)."""
  for line in reversed(lines[:number - 1]):
    if line.strip() and not line.strip().startswith("#"):
      return len(line) - len(line.lstrip())
  return 0


def _default(value) -> str:
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  return repr(value)


def _get(cfg, path: str):
  for part in path.split("."):
    cfg = cfg[part]
  return cfg


def _order(function) -> list[str]:
  """The fields ``function`` assigns, in the order of its source."""
  seen: list[str] = []
  for line in inspect.getsource(function).splitlines():
    match = _ASSIGN.match(line)
    if match and match.group(1) not in seen:
      seen.append(match.group(1))
  return seen


def fields() -> list[tuple[str, str, str]]:
  """``(field, default, meaning)`` for every field a run understands, in the schema's order.
  ``data.*`` and ``optimizer.*`` are listed once; of ``downstream.data.*`` and
  ``downstream.optimizer.*`` (the same fields) only those whose default the downstream group
  changes."""
  comments = {prefix: field_comments(fn) for prefix, fn in GROUPS}
  functions = {fn.__name__ for _, fn in GROUPS}
  base = config_lib.base_config()
  rows: list[tuple[str, str, str]] = []

  def walk(function, prefix):
    for name in _order(function):
      path = prefix + name
      value = _get(base, path)
      sub = re.search(r"c\.%s\s*=\s*(\w+)\(\)" % re.escape(name), inspect.getsource(function))
      if sub and sub.group(1) in functions and "." not in name:
        walk(getattr(config_lib, sub.group(1)), path + ".")
      elif "." in name:  # downstream's own default for a field of data / optimizer.
        group, rest = name.split(".", 1)
        own = comments["downstream."].get(name) or comments[group + "."].get(rest, "")
        rows.append((path, _default(value), own + " (downstream's own default)"))
      else:
        if prefix not in comments:
          continue  # downstream.data.*, downstream.optimizer.*: as data.*, optimizer.*.
        rows.append((path, _default(value), comments[prefix].get(name, "")))

  walk(config_lib.base_config, "")
  return rows


def markdown() -> str:
  """The field reference as one Markdown table."""
  lines = ["| field | default | meaning |", "|---|---|---|"]
  for path, default, meaning in fields():
    lines.append(f"| `{path}` | `{default}` | {meaning.replace('|', chr(92) + '|')} |")
  return "\n".join(lines) + "\n"


def _md(text: str) -> str:
  """A docstring as Markdown: reST's double backticks made single."""
  return re.sub(r"``(.+?)``", r"`\1`", text)


def method_cards() -> str:
  """One section per registered method (sorted by config name): its class and file, its
  docstring, a table of its hyperparameters with their defaults and ranges (``ranges``), what
  it reads and needs."""
  from kd_jax import methods  # pylint: disable=g-import-not-at-top  (registers the built-ins)
  out = []
  for name, cls in sorted(methods.REGISTRY.items()):
    path = os.path.relpath(inspect.getsourcefile(cls),
                           os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out.append(f"### `{name}`")
    out.append(f"`{cls.__name__}` in `{path}`.")
    doc = inspect.getdoc(cls) or ""
    if doc and not doc.startswith(cls.__name__ + "("):  # Not dataclass's generated one.
      out.append(_md(textwrap.dedent(doc)))
    fields = [f for f in dataclasses.fields(cls) if f.init]
    if fields:
      def values(f):
        if f.name not in cls.ranges:
          return ""
        return f"{cls.ranges[f.name]}{' (each)' if isinstance(f.default, tuple) else ''}"
      out.append("\n".join(["| hyperparameter | default | values |", "|---|---|---|"] + [
          f"| `{f.name}` | `{f.default!r}` | {values(f)} |" for f in fields
          if f.default is not dataclasses.MISSING]))
    else:
      out.append("No hyperparameters.")
    facts = [f"reads: `{cls.reads or 'logits'}`"
             + (f" (teacher: `{cls.teacher_reads}`)" if cls.teacher_reads else "")]
    if cls.feature_kind:
      facts.append(f"features: {cls.feature_kind} only")
    if cls.needs_labels:
      facts.append("needs labels" + (" (a labelled fraction is enough)" if cls.partial_labels
                                     else ""))
    if not cls.needs_teacher:
      facts.append("no teacher")
    if cls.multi_teacher:
      facts.append("several teachers")
    if cls.uses_teacher_head:
      facts.append("reads the teacher's layers after its last stage")
    if cls.views:
      facts.append("makes views: " + ", ".join(f"`{v}`" for v in cls.views))
    if cls.phase:
      ph = cls.phase
      facts.append(f"initialisation phase: {ph.loss}, {ph.epochs} epochs"
                   + ("" if ph.in_main else ", acts only in its phase")
                   + (", frozen after it" if ph.frozen_after else ""))
    out.append("; ".join(facts) + ".")
  return "\n\n".join(out) + "\n"

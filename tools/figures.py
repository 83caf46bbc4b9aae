"""Every measured figure in the README and the docs, with the commit and CPU it comes from.

  python tools/figures.py            # the list: page:line, figure, commit, CPU, section
  python tools/figures.py --check    # also exit 1 if a figure has no commit or no CPU, or a
                                     # table figure is quoted twice with different values

A *figure* is a measured number: a decimal followed by ``%``, a unit of time or speed
(``s``, ``ms``, ``min``, ``images/s``, ``GFLOP/s``...) or ``x`` (a speed-up), a ``mean ± std``,
a decimal in a table cell, or a decimal in printed output (a fenced block that is not a
command). Hyperparameters (``T=4``, ``lr 0.05``, ``1e-5``) are not: they
have none of those forms. A figure takes the commit and the CPU named last before it in its
paragraph (a table counts as one paragraph with the text just above it), else the section's
``*Measured: commit <sha>, <CPU>...*`` line, else the last named before it in its section. A
commit is a short hash that ``git`` knows and that has a letter (an all-digit one reads as a
number: write a longer prefix); a CPU is a named processor or accelerator.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIGURE = re.compile(
    r"(?<![\w.\-/=])(\d[\d,]*\.\d+)(?:\s?(%|±)|\s?(?:x|×)(?![\w])|\s(?:images/s|img/s|ms|s|min|"
    r"minutes|hours|days|GFLOP/s|MB|points)\b)"
    r"|(?<![\w.\-/=])(\d[\d,]*)\s(?:images/s|img/s|ms|s|min|minutes|hours|days)\b(?!-)")
CELL = re.compile(r"^\s*\**(\d[\d,]*\.\d+)\**(?:\s*(?:±|\(|;|/|$))")
CPU = re.compile(r"AMD EPYC(?: \((?:Zen|family)[^)]*\)| Zen \d)?|Zen \d|Intel[\w ]*|Xeon|H100|H200|"
                 r"A100|TPU v\d|family/model \d+/\d+")
SHA = re.compile(r"(?<![\w/])([0-9a-f]{7,40})(?![\w/])")
MARKER = re.compile(r"^\*Measured: ")


def _known_commits(text: str) -> set[str]:
  candidates = {m for m in SHA.findall(text) if re.search(r"[a-f]", m)}  # git says which are.
  known = set()
  for sha in sorted(candidates):
    ok = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=REPO,
                        capture_output=True, check=False).returncode == 0
    if ok:
      known.add(sha)
  return known


def pages() -> list[str]:
  return ["README.md", *sorted(os.path.relpath(p, REPO)
                               for p in glob.glob(os.path.join(REPO, "docs", "*.md")))]


def figures(page: str, commits: set[str], text: str | None = None) -> list[dict]:
  """The figures of one page (``text``, else the file ``page``) with their attribution."""
  if text is None:
    text = open(os.path.join(REPO, page), encoding="utf-8").read()
  lines = text.splitlines()
  out = []
  section = ""
  section_marker = {"commit": None, "cpu": None}
  section_last = {"commit": None, "cpu": None}
  paragraph = {"commit": None, "cpu": None}
  in_code = source_code = False
  header: list[str] = []
  for number, line in enumerate(lines, start=1):
    keys: dict[int, tuple[str, str]] = {}
    if line.strip().startswith("```"):
      in_code = not in_code
      source_code = in_code and line.strip() not in ("```", "```text", "```console")
      continue
    if in_code and source_code:
      continue  # Python, shell: code, not measurements.
    if not in_code and line.startswith("#"):
      section = line.lstrip("#").strip()
      section_marker = {"commit": None, "cpu": None}
      section_last = {"commit": None, "cpu": None}
      paragraph = {"commit": None, "cpu": None}
      continue
    is_table = line.lstrip().startswith("|")
    if not line.strip() or (not is_table and paragraph.get("table")):
      paragraph = {"commit": None, "cpu": None}
    if is_table:
      if not paragraph.get("table"):
        header = [c.strip() for c in line.split("|")[1:-1]]
      paragraph["table"] = True
    if in_code and re.match(r"\s*(python|pip|#|\$|git|tensorboard|mkdocs|KD_JAX|taskset)", line):
      continue  # Commands and their comments are not measurements.
    # Attributions named on this line before each figure count for it. Inline code spans
    # are formats and examples (`850 img/s` in a progress line), not measurements.
    found = []
    scan = line if in_code else re.sub(r"`[^`]*`", lambda m: " " * len(m.group(0)), line)
    for m in FIGURE.finditer(scan):
      group = 1 if m.group(1) else 3
      found.append((m.start(group), m.group(group)))
    if in_code:  # Printed output (a job's table): every decimal is a figure.
      found += [(m.start(1), m.group(1)) for m in re.finditer(r"(?<![\w.=/-])(\d+\.\d+)(?![\w.*])", line)
                if all(abs(p - m.start(1)) > 0 for p, _ in found)]
    if is_table and not re.fullmatch(r"\s*\|[\s|:-]*\|\s*", line):
      offset = 0
      cells = line.split("|")[1:-1]
      for column, cell in enumerate(cells):
        m = CELL.match(cell)
        at = offset + 1 + (cell.index(m.group(1)) if m else 0)
        if m and not any(abs(p - at) < 1 for p, _ in found):
          found.append((at, m.group(1)))
        if m and column < len(header):  # The row: its cells that are not figures.
          label = " | ".join(c.strip(" *") for c in cells if not CELL.match(c))
          keys[at] = (label, f"{column}: {header[column]}")
        offset += len(cell) + 1
    events = [(m.start(), "commit", m.group(1)) for m in SHA.finditer(line)
              if m.group(1) in commits]
    events += [(m.start(), "cpu", m.group(0)) for m in CPU.finditer(line)]
    marker = MARKER.match(line.strip())
    for pos, value in sorted(found):
      for epos, kind, what in events:
        if epos < pos:
          paragraph[kind] = what
      for kind in ("commit", "cpu"):  # "98.33% at 94a1292 (AMD EPYC)": named just after.
        after = [what for epos, k, what in events if k == kind and pos < epos <= pos + 60]
        if after and not paragraph[kind]:
          paragraph = dict(paragraph, **{kind: after[0]})
      commit = paragraph["commit"] or section_marker["commit"] or section_last["commit"]
      cpu = paragraph["cpu"] or section_marker["cpu"] or section_last["cpu"]
      out.append(dict(page=page, line=number, figure=value, commit=commit, cpu=cpu,
                      section=section, key=keys.get(pos)))
    in_marker = bool(marker) or section_marker.get("open", False)
    for _, kind, what in events:
      paragraph[kind] = what
      section_last[kind] = what
      if in_marker and section_marker[kind] is None:  # The marker's first commit and CPU.
        section_marker[kind] = what
    section_marker["open"] = in_marker and not line.rstrip().endswith("*")
  return out


def conflicts(rows: list[dict]) -> list[str]:
  """Table figures quoted twice with different values: the same row label and column at the
  same commit, on any pages (a figure appears once; elsewhere it is linked)."""
  seen: dict[tuple, dict] = {}
  out = []
  for r in rows:
    if not r["key"] or not r["commit"]:
      continue
    key = (*r["key"], r["commit"])
    if key in seen and seen[key]["figure"] != r["figure"]:
      first = seen[key]
      out.append(f"{r['key'][0]!r} / {r['key'][1]!r} at {r['commit']}: {first['figure']} "
                 f"({first['page']}:{first['line']}) and {r['figure']} ({r['page']}:{r['line']})")
    seen.setdefault(key, r)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="exit 1 if a figure has no commit or no CPU")
  args = parser.parse_args(argv)
  text = "\n".join(open(os.path.join(REPO, p), encoding="utf-8").read() for p in pages())
  commits = _known_commits(text)
  rows = [f for p in pages() for f in figures(p, commits)]
  missing = [r for r in rows if not r["commit"] or not r["cpu"]]
  for r in rows:
    flag = "  MISSING" if r in missing else ""
    print(f"{r['page']}:{r['line']}\t{r['figure']}\t{r['commit'] or '-'}\t{r['cpu'] or '-'}"
          f"\t{r['section']}{flag}")
  clashes = conflicts(rows)
  for line in clashes:
    print(f"CONFLICT {line}")
  print(f"{len(rows)} figures on {len(pages())} pages; {len(missing)} without a commit or CPU; "
        f"{len(clashes)} quoted twice with different values", file=sys.stderr)
  return 1 if (args.check and (missing or clashes)) else 0


if __name__ == "__main__":
  sys.exit(main())

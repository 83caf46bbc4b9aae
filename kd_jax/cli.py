"""What the entrypoints share: absl flag parsing with one-line errors."""
from __future__ import annotations

import sys

from absl import flags


def parse_flags(argv):
  """absl flag parsing, where config files load and overrides apply: errors in one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as err:
    sys.exit(f"kd_jax: error: {str(err).splitlines()[0]}")
  except (AttributeError, KeyError) as err:  # ConfigDict: an override names no field.
    text = " ".join(str(err).replace("\\n", " ").strip("'\"").split()).replace("\\'", "")
    field = text.split()[0].strip("'\\") if text else "?"
    hint = text[len(field):].strip(" '")
    sys.exit(f"kd_jax: error: unknown config field in --config.* override: {field!r}"
             f"{'; ' + hint if hint else ''}")
  except Exception as err:  # pylint: disable=broad-except  (a config file that fails to load)
    sys.exit(load_error(err))


def load_error(err: Exception) -> str:
  lines = [l.strip() for l in str(err).splitlines() if l.strip()]
  return f"kd_jax: error: cannot load the config: {' '.join(lines[-1:])[:300]}"

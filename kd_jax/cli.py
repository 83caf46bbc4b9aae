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


def start(argv, config_flag, required: str | None = None):
  """What every entrypoint does first: refuse stray arguments, keep TensorFlow and library
  logs quiet, and return the loaded config (a load error, or a missing ``--config`` when
  ``required`` says how to give one, exits with one line)."""
  if len(argv) > 1:
    sys.exit(f"kd_jax: error: unexpected arguments {' '.join(argv[1:])}")
  from absl import logging  # pylint: disable=g-import-not-at-top
  from kd_jax.runtime import quiet_tensorflow  # pylint: disable=g-import-not-at-top
  quiet_tensorflow()
  logging.set_verbosity(logging.WARNING)  # Our own lines go to stdout; libraries stay quiet.
  try:
    config = config_flag.value
    if config is None and required:
      sys.exit(f"kd_jax: error: {required}")
    config.keys()  # A config file that failed to load raises here.
  except Exception as err:  # pylint: disable=broad-except
    sys.exit(load_error(err))
  return config

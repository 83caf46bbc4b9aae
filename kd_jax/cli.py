"""What the entrypoints share: absl flag parsing with one-line errors."""
from __future__ import annotations

import os
import sys

from absl import flags
from absl import logging

from kd_jax import runtime


def parse_flags(argv):
  """absl flag parsing, where config files load and overrides apply: errors in one line."""
  try:
    return flags.FLAGS(argv)
  except Exception as err:  # pylint: disable=broad-except
    sys.exit(flag_error(err))


def overrides(name: str = "config") -> list[str]:
  """The paths (``a.b``) of the ``--config.a.b=...`` overrides given on the command line, in
  order."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  return list(config_flags.get_override_values(flags.FLAGS[name]))


def local_workdir(value: str, flag: str = "--workdir") -> str:
  """The absolute local path of a workdir flag; a URL (``gs://...``) is refused in one line:
  kd_jax writes its workdirs with local file operations (a bucket mounted with gcsfuse
  works through its mount point)."""
  from kd_jax.errors import KdJaxError  # pylint: disable=g-import-not-at-top
  if "://" in value:
    raise KdJaxError(f"{flag}={value}: remote workdirs are not supported (kd_jax writes "
                     f"them with local file operations); mount the bucket (e.g. gcsfuse) and "
                     f"give its local path")
  return os.path.abspath(value)


def define_config(default: str | None, help_text: str):
  """``config_flags.DEFINE_config_file("config", ...)`` (locked). With a default file, the
  default loads and the ``--config.*`` overrides apply here, at definition: their errors
  are one line too. An override of an objective's hyperparameter (or a teacher's field)
  that the file leaves at its default (``--config.objectives.kd.temperature=8``, or
  ``--config.runs.<run>.objectives...``) sets it: ``with_unset_fields``."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  # The module that defines DEFINE_config_file's parser class (not exported): the parser is
  # made from its name when the flag is defined, so ours, a subclass, stands in for this call.
  from ml_collections.config_flags import config_flags as impl  # pylint: disable=g-import-not-at-top
  file_parser = impl.ConfigFileFlagParser

  class Parser(file_parser):
    def parse(self, path):
      return with_unset_fields(super().parse(path), _config_overrides(sys.argv))

  impl.ConfigFileFlagParser = Parser
  try:
    return config_flags.DEFINE_config_file("config", default, help_text, lock_config=True)
  except Exception as err:  # pylint: disable=broad-except
    sys.exit(flag_error(err))
  finally:
    impl.ConfigFileFlagParser = file_parser


# What an objective's entry may hold besides its method's hyperparameters (distill.parsing).
_OBJECTIVE_FIELDS = ("loss", "weight", "teacher", "student_feature", "teacher_feature", "view",
                     "init_epochs", "init_lr", "main_phase")
_FIELD_HINTS: dict[str, str] = {}  # An override's unknown field -> what to say of it.


def _config_overrides(argv: list[str]) -> list[str]:
  """The paths of the ``--config.<path>[=value]`` arguments."""
  return [a.split("=", 1)[0].split(".", 1)[1] for a in argv[1:]
          if a.startswith(("--config.", "-config."))]


def with_unset_fields(config, paths: list[str]):
  """``config`` with each field of an objective or a teacher that a path of ``paths`` names
  but the file does not set added at its default, so that the override sets it like any
  field (parsed by the default's type): ``[runs.<run>.]objectives.<objective>.<field>`` (a
  hyperparameter of the objective's method, its ``weight``, or ``init_epochs`` /
  ``main_phase`` of a method with an initialisation phase) and
  ``[runs.<run>.]teachers.<teacher>.<field>`` (``which``, ``head``, ``num_classes``, and
  ``checkpoint`` or ``run``: a teacher trained by the job read from a checkpoint with
  ``...teacher.run= ...teacher.checkpoint=<workdir>``). Other
  paths are left to the override's own errors."""
  try:
    config.keys()
  except Exception:  # pylint: disable=broad-except  (a file that failed to load: start() says)
    return config
  for path in paths:
    parts = path.split(".")
    if len(parts) == 3:
      holder, (group, name, field) = config, parts
    elif len(parts) == 5 and parts[0] == "runs":
      holder, (group, name, field) = config.get("runs", {}).get(parts[1]), parts[2:]
    else:
      continue
    if group not in ("objectives", "teachers"):
      continue
    entry = (holder or {}).get(group, {}).get(name)
    if entry is None or not hasattr(entry, "unlocked") or field in entry:
      continue
    if group == "teachers":
      default = _TEACHER_DEFAULTS.get(field)
    else:
      default = _objective_default(config, holder, name, entry, field)
    if default is not None:
      with entry.unlocked():
        entry[field] = default
  return config


# The fields of a teacher's entry that a config may leave out, at their defaults (plan.plan_teacher).
_TEACHER_DEFAULTS = {"which": "latest", "head": "", "num_classes": 0, "checkpoint": "", "run": ""}


def _objective_default(config, holder, name: str, entry, field: str):
  """The default of an objective's ``field`` (None: none to add); a field its method lacks
  gets a hint for the override's error."""
  from kd_jax import methods  # pylint: disable=g-import-not-at-top
  try:
    methods.import_modules(tuple(config.get("method_modules", ()))
                           + tuple(holder.get("method_modules", ())))
  except Exception:  # pylint: disable=broad-except  (validation reports a bad module)
    pass
  method = methods.REGISTRY.get(entry.get("loss", name))
  if method is None:
    return None
  defaults = {"weight": 1.0, **({"init_epochs": method.phase.epochs,
                                 "main_phase": method.phase.in_main} if method.phase else {}),
              **method.hparams()}
  if field not in defaults and field not in _OBJECTIVE_FIELDS:
    _FIELD_HINTS[field] = (f"objective {name!r} (loss {method.name!r}) has no field "
                           f"{field!r}; its hyperparameters: "
                           f"{', '.join(method.hparams()) or 'none'}")
  return defaults.get(field)


def flag_error(err: Exception) -> str:
  """The one line for an error of flag parsing, a ``--config.*`` override or a config load."""
  if isinstance(err, flags.Error):
    return f"kd_jax: error: {str(err).splitlines()[0]}"
  if isinstance(err, (AttributeError, KeyError)):  # ConfigDict: an override names no field.
    text = " ".join(str(err).replace("\\n", " ").strip("'\"").split()).replace("\\'", "")
    field = text.split()[0].strip("'\\") if text else "?"
    hint = text[len(field):].strip(" '")
    if not hint:
      hint = _FIELD_HINTS.get(field) or _run_field_hint(field)
    return (f"kd_jax: error: unknown config field in --config.* override: {field!r}"
            f"{'; ' + hint if hint else ''}")
  return load_error(err)


def _run_field_hint(field: str) -> str:
  """Where a field given for one run (``--config.runs.<run>.<field>``) goes instead."""
  for arg in sys.argv[1:]:
    parts = arg.split("=", 1)[0][2:].split(".")
    if parts[:2] == ["config", "runs"] and field in parts[3:]:
      missing = ".".join(parts[:parts.index(field, 3) + 1])
      every = " (every run with teachers)" if field == "teacher_cache" else ""
      return (f"{missing} is not in the config file's run, and a run holds only the fields "
              f"its file sets: --config.{'.'.join(parts[3:])}=... sets it for every run"
              f"{every}")
  return ""


def load_error(err: Exception) -> str:
  lines = [l.strip() for l in str(err).splitlines() if l.strip()]
  return f"kd_jax: error: cannot load the config: {' '.join(lines[-1:])[:300]}"


def set_log_levels() -> None:
  """Our own lines go to stdout; libraries log errors only. With ``KD_JAX_VERBOSE=1`` or an
  explicit ``--verbosity``/``-v`` (absl's flag) they log at that level (warnings by default)
  and the start-up lines captured so far are written to stderr."""
  asked = "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present
  if asked:
    os.environ[runtime.VERBOSE_ENV] = "1"  # Also for the libraries imported from now on.
  if runtime.verbose():
    sys.stderr.write(runtime.start_up_logs())
    if not asked:
      logging.set_verbosity(logging.WARNING)
  else:
    logging.set_verbosity(logging.ERROR)


def start(argv, config_flag, required: str | None = None):
  """What every entrypoint does first: refuse stray arguments, keep TensorFlow and library
  logs quiet, and return the loaded config (a load error, or a missing ``--config`` when
  ``required`` says how to give one, exits with one line)."""
  if len(argv) > 1:
    sys.exit(f"kd_jax: error: unexpected arguments {' '.join(argv[1:])}")
  set_log_levels()
  runtime.quiet_tensorflow()
  try:
    config = config_flag.value
    if config is None and required:
      sys.exit(f"kd_jax: error: {required}")
    config.keys()  # A config file that failed to load raises here.
  except Exception as err:  # pylint: disable=broad-except
    sys.exit(load_error(err))
  return config

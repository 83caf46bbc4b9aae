"""The one exception type users see: a one-line message saying what is wrong and how to fix it."""


class KdJaxError(Exception):
  """A user-facing error; ``str(err)`` is a single line. Entrypoints print it without a traceback."""

  def __init__(self, message: str):
    super().__init__(" ".join(str(message).split()))


class TrainingDiverged(KdJaxError):
  """The loss or the gradients became NaN/Inf."""


class Preempted(Exception):
  """SIGTERM arrived: the run saved a checkpoint at the end of its current step and stopped.
  Entrypoints print the message and exit 0; the same command resumes."""

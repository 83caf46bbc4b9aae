"""The one exception type users see: a one-line message saying what is wrong and how to fix it."""


class KdJaxError(Exception):
  """A user-facing error; ``str(err)`` is a single line. Entrypoints print it without a traceback."""

  def __init__(self, message: str):
    super().__init__(" ".join(str(message).split()))


class TrainingDiverged(KdJaxError):
  """The loss or the gradients became NaN/Inf."""

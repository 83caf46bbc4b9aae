"""``python -m kd_jax.<entrypoint>`` for the tests, started by forking a server that has
already imported what the entrypoints import (TensorFlow, JAX, Flax, orbax, clu: 7-8 s of
every start-up on a 2-core CPU) instead of by a fresh interpreter.

``run`` and ``start`` take what ``subprocess.run`` and ``subprocess.Popen`` take and return
the same things (a ``CompletedProcess``; a process with ``pid``, ``poll``, ``wait``,
``send_signal``, ``kill``, ``returncode``). A command is forked only where that cannot change
what it does: ``[sys.executable, "-m", "kd_jax.<module>", ...]`` run from the server's
directory, in the server's environment except for variables read at run time
(``RUN_TIME_ENV``), and no huge-pages restart due; anything else starts as a fresh process.

The forked command runs as ``python -m`` runs it (``runpy``, ``__main__``, ``sys.argv``)
and exits through the interpreter's own shutdown (threads joined, atexit handlers run), with
its own stdin/stdout/stderr (passed as file descriptors) and environment; its exit status
(``-signal`` when killed by one) comes back from the process that waits for it. One server
per test process (pytest-xdist worker), started at the first command, gone with that process.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from typing import Any, Mapping, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Environment variables kd_jax reads when a command runs, not when it is imported: a command
# whose environment differs from the server's in these alone can be forked.
RUN_TIME_ENV = frozenset({"KD_JAX_FAULT"})
# What the server imports before it forks (what ``kd_jax.train`` imports; never an
# entrypoint itself: those define their absl flags when they run).
_PRELOAD = ("kd_jax.cli", "kd_jax.job", "kd_jax.training.loop", "kd_jax.training.sharding",
            "kd_jax.checkpoint", "kd_jax.dry_run", "kd_jax.errors")
_HEADER = struct.Struct("!I")


# ----------------------------------------------------------------------------------------
# The server (``python -m tests.forkserver <socket path>``).

def _serve(path: str) -> dict[str, Any] | None:
  """Accepts commands until stdin closes; returns a command in the forked process that is to
  run it (and None in the server when it stops)."""
  import importlib
  importlib.import_module("numpy")  # Its BLAS's threads: fork-safe (atfork handlers).
  blas_threads = _threads()
  from kd_jax import runtime
  runtime.quiet_library_logs()  # What kd_jax.train does first (its restart: see _forkable).
  for name in _PRELOAD:
    importlib.import_module(name)
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  backends = list(getattr(xla_bridge, "_backends", {}))
  if _threads() != blas_threads or threading.active_count() != 1 or backends:
    # A thread or a JAX backend would be copied into every command in whatever state it is.
    print(f"no: {_threads()} threads ({blas_threads} after numpy), JAX backends {backends}",
          flush=True)
    return None
  listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  listener.bind(path)
  listener.listen(16)
  print("ready", flush=True)
  while True:
    ready, _, _ = select.select([listener, sys.stdin], [], [])
    _reap()
    if sys.stdin in ready:  # The test process closed our stdin (or died): stop.
      listener.close()
      return None
    conn, _ = listener.accept()
    message, fds = _receive(conn)
    if os.fork() == 0:  # The waiter: starts the command, reports its pid and exit status.
      listener.close()
      pid = os.fork()
      if pid == 0:
        conn.close()
        return {**message, "fds": fds}
      for fd in fds:
        os.close(fd)
      try:
        conn.sendall(f"pid {pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        conn.sendall(f"status {os.waitstatus_to_exitcode(status)}\n".encode())
      finally:
        os._exit(0)  # pylint: disable=protected-access
    conn.close()
    for fd in fds:
      os.close(fd)


def _threads() -> int:
  """This process's threads (native ones too)."""
  return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1


def _reap() -> None:
  try:
    while os.waitpid(-1, os.WNOHANG)[0]:
      pass
  except ChildProcessError:
    pass


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
  data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
  while len(data) < _HEADER.size:
    data += conn.recv(1 << 16)
  (size,) = _HEADER.unpack_from(data)
  while len(data) < _HEADER.size + size:
    data += conn.recv(1 << 16)
  return json.loads(data[_HEADER.size:_HEADER.size + size]), list(fds)


def _run_forked(command: dict[str, Any]) -> None:
  """In the forked process: the command, as ``python -m <module> <args>`` would run it."""
  import runpy
  for target, fd in enumerate(command["fds"]):
    os.dup2(fd, target)
    os.close(fd)
  os.chdir(command["cwd"])
  os.environ.clear()
  os.environ.update(command["env"])
  module, args = command["module"], command["args"]
  sys.argv = [module, *args]  # runpy sets argv[0] to the module's file.
  sys.orig_argv = [sys.executable, "-m", module, *args]
  runpy.run_module(module, run_name="__main__", alter_sys=True)


# ----------------------------------------------------------------------------------------
# The client, in the test process.

class _Server:
  def __init__(self):
    self.dir = tempfile.mkdtemp(prefix="kd_jax_forkserver_")
    self.path = os.path.join(self.dir, "socket")
    self.env = dict(os.environ)
    self.proc = subprocess.Popen([sys.executable, "-m", "tests.forkserver", self.path],
                                 cwd=REPO, env=self.env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
    line = self.proc.stdout.readline().strip()
    self.ready = line == "ready"
    if not self.ready:
      self.close()
      sys.stderr.write(f"tests.forkserver: not serving ({line or 'exited'}): fresh processes\n")

  def close(self):
    if self.proc.poll() is None:
      self.proc.stdin.close()  # The server stops; running commands go on.
      self.proc.wait(timeout=60)
    shutil.rmtree(self.dir, ignore_errors=True)


_server: _Server | None = None
_server_lock = threading.Lock()


def _get_server() -> _Server | None:
  global _server
  with _server_lock:
    if _server is None:
      _server = _Server()
      atexit.register(_server.close)
    return _server if _server.ready else None


def _forkable(args: Sequence[str], cwd, env: Mapping[str, str] | None,
              server_env: Mapping[str, str]) -> bool:
  from kd_jax import runtime
  if (isinstance(args, (str, bytes)) or len(args) < 3 or args[0] != sys.executable
      or args[1] != "-m" or not str(args[2]).startswith("kd_jax.")
      or os.path.realpath(cwd or os.getcwd()) != os.path.realpath(REPO)):
    return False
  env = os.environ if env is None else env
  differ = {k for k in set(env) | set(server_env) if env.get(k) != server_env.get(k)}
  return differ <= RUN_TIME_ENV and runtime.huge_page_environment(env) is None


class ForkedProcess:
  """A forked command, as much of ``subprocess.Popen`` as the tests use."""

  def __init__(self, args, conn: socket.socket):
    self.args = args
    self.returncode: int | None = None
    self._conn = conn
    self._buffer = b""
    self.pid = int(self._line(None).split()[1])

  def _line(self, timeout: float | None) -> str | None:
    self._conn.settimeout(timeout)
    while b"\n" not in self._buffer:
      try:
        chunk = self._conn.recv(256)
      except (socket.timeout, BlockingIOError):
        return None
      if not chunk:
        raise RuntimeError("tests.forkserver: the waiter went away without an exit status")
      self._buffer += chunk
    line, self._buffer = self._buffer.split(b"\n", 1)
    return line.decode()

  def poll(self) -> int | None:
    if self.returncode is None:
      line = self._line(0)
      if line is not None:
        self.returncode = int(line.split()[1])
        self._conn.close()
    return self.returncode

  def wait(self, timeout: float | None = None) -> int:
    if self.returncode is None:
      line = self._line(timeout)
      if line is None:
        raise subprocess.TimeoutExpired(self.args, timeout)
      self.returncode = int(line.split()[1])
      self._conn.close()
    return self.returncode

  def send_signal(self, sig: int) -> None:
    if self.returncode is None:
      try:
        os.kill(self.pid, sig)
      except ProcessLookupError:
        pass

  def terminate(self) -> None:
    import signal
    self.send_signal(signal.SIGTERM)

  def kill(self) -> None:
    import signal
    self.send_signal(signal.SIGKILL)


def _fd(target, default: int) -> tuple[int, bool]:
  """The file descriptor a ``stdin``/``stdout``/``stderr`` argument names, and whether it
  was opened here (to close once sent)."""
  if target is None:
    return default, False
  if target == subprocess.DEVNULL:
    return os.open(os.devnull, os.O_RDWR), True
  if isinstance(target, int):
    return target, False
  return target.fileno(), False


def start(args, *, cwd=None, env=None, stdin=None, stdout=None, stderr=None, text=False):
  """``subprocess.Popen(args, cwd=, env=, stdin=, stdout=, stderr=, text=)``, forked where
  it can be (``stdout``/``stderr``: None, a file, a descriptor, DEVNULL, ``stderr=STDOUT``;
  PIPE starts a fresh process)."""
  server = _get_server() if subprocess.PIPE not in (stdin, stdout, stderr) else None
  if server is None or not _forkable(args, cwd, env, server.env):
    return subprocess.Popen(args, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                            text=text)
  opened = []
  fds = []
  for target, default in ((stdin if stdin is not None else subprocess.DEVNULL, 0),
                          (stdout, 1)):
    fd, new = _fd(target, default)
    fds.append(fd)
    if new:
      opened.append(fd)
  if stderr == subprocess.STDOUT:
    fds.append(fds[1])
  else:
    fd, new = _fd(stderr, 2)
    fds.append(fd)
    if new:
      opened.append(fd)
  message = json.dumps({"module": str(args[2]), "args": [str(a) for a in args[3:]],
                        "cwd": os.path.realpath(cwd or os.getcwd()),
                        "env": dict(os.environ if env is None else env)}).encode()
  conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  try:
    conn.connect(server.path)
    socket.send_fds(conn, [_HEADER.pack(len(message)) + message], fds)
  finally:
    for fd in opened:
      os.close(fd)
  return ForkedProcess(list(args), conn)


def run(args, *, cwd=None, env=None, stdin=None, stdout=None, stderr=None,
        capture_output: bool = False, text: bool = False, timeout: float | None = None,
        check: bool = False) -> subprocess.CompletedProcess:
  """``subprocess.run`` with the same arguments (no ``input``), forked where it can be."""
  if capture_output:
    stdout = stderr = subprocess.PIPE
  with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    proc = start(args, cwd=cwd, env=env, stdin=stdin,
                 stdout=out if stdout == subprocess.PIPE else stdout,
                 stderr=err if stderr == subprocess.PIPE else stderr)
    try:
      proc.wait(timeout)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
      raise
    captured = []
    for file, wanted in ((out, stdout), (err, stderr)):
      file.seek(0)
      data = file.read() if wanted == subprocess.PIPE else None
      captured.append(data.decode() if text and data is not None else data)
  result = subprocess.CompletedProcess(args, proc.returncode, *captured)
  if check:
    result.check_returncode()
  return result


if __name__ == "__main__":
  _command = _serve(sys.argv[1])
  if _command is not None:
    _run_forked(_command)

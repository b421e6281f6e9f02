"""A fork server for the reliability suites' child processes: the imports once, a fork per child.

Most of a child's start-up is importing featurekit's dependencies (DuckDB, polars, pyarrow,
deltalake): about a second of CPU each time, where the commands the crash and I/O failure suites
run take a fraction of that. :class:`ForkServer` starts ``python _fork_server.py`` once; the server
imports those modules, runs nothing else, and forks one child per request. A child is what
``python SCRIPT ARGS...`` (or ``python -c CODE ARGS...``) would be after those imports: it applies
the request's environment, moves to its working folder, sends its stdout and stderr (file
descriptors 1 and 2, so native code's output too) to files, runs the script as ``__main__`` and
exits with the script's code (``SystemExit``), 1 after an uncaught exception (its traceback on
stderr, as ``python`` does), or dies of the signal that killed it. Children run one at a time.

A native library preloaded into the server (``LD_PRELOAD`` at its start) reads its settings from
the environment when it loads, before any child exists; a request can name functions of the
process's global symbols to call after its environment is applied (``start_calls``: re-read the
settings) and before the child exits (``exit_calls``: ``os._exit`` runs no C destructors).

Protocol: one JSON request a line on the server's stdin; the server answers ``pid N`` once the
child is forked and ``exit CODE`` (``-9``: SIGKILL) once it ended.
"""

from __future__ import annotations

import ctypes
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _import_everything() -> None:
    import deltalake  # noqa: F401
    import duckdb  # noqa: F401
    import polars  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import featurekit  # noqa: F401


def _call(names: list[str]) -> None:
    process = ctypes.CDLL(None)
    for name in names:
        getattr(process, name)()


def _run_child(request: dict[str, Any]) -> None:
    """The forked child: run one request, then leave at once (no atexit handlers of the server)."""
    for key, value in request["env"].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    os.chdir(request["cwd"])
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.dup2(target, fd)
        os.close(target)
    code = 0
    try:
        _call(request["start_calls"])
        argv = request["argv"]
        if argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            sys.path[0] = ""  # as `python -c` puts the working folder first
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102 -- the suite's own code
        else:
            sys.argv = list(argv)
            sys.path[0] = str(Path(argv[0]).parent)  # as `python SCRIPT` puts the script's folder first
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 -- reported as python reports an uncaught exception
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    _call(request["exit_calls"])
    os._exit(code)


def serve() -> None:
    _import_everything()
    print("serving", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _run_child(request)  # leaves with os._exit
            finally:
                os._exit(1)  # whatever failed before the script ran never returns into this loop
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


@dataclass
class Finished:
    """A child's end, like :class:`subprocess.CompletedProcess`: exit code (``-9``: SIGKILL) and output."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class Child:
    """A running child of the server."""

    pid: int
    stdout: Path
    stderr: Path


class ForkServer:
    """Runs child processes forked from one server that did the imports (see the module docstring).

    ``env`` is the server's whole environment (each child inherits it, with its request's changes);
    ``logs`` is a folder for the children's output files.
    """

    def __init__(self, env: dict[str, str], logs: Path, cwd: Path) -> None:
        self.logs, self.count, self.buffer = logs, 0, b""
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / "server.err").open("wb") as err:
            self.server = subprocess.Popen(
                [sys.executable, __file__], env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        assert self._line(120) == "serving", (logs / "server.err").read_text()

    def _line(self, timeout: float) -> str:
        """The server's next line ("" after ``timeout`` seconds without one)."""
        assert self.server.stdout is not None
        fd = self.server.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                return ""
            chunk = os.read(fd, 4096)
            assert chunk, f"the fork server exited: {(self.logs / 'server.err').read_text()}"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode().strip()

    def start(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str | None] | None = None,
        start_calls: tuple[str, ...] = (),
        exit_calls: tuple[str, ...] = (),
    ) -> Child:
        """Fork a child running ``argv`` (a script and its arguments, or ``-c CODE ...``) in ``cwd``."""
        assert self.server.stdin is not None
        self.count += 1
        child = Child(0, self.logs / f"{self.count}.out", self.logs / f"{self.count}.err")
        child.stdout.touch()  # readable (empty) from the start, before the child opens it
        child.stderr.touch()
        request = {
            "argv": argv,
            "cwd": str(cwd),
            "env": env or {},
            "stdout": str(child.stdout),
            "stderr": str(child.stderr),
            "start_calls": list(start_calls),
            "exit_calls": list(exit_calls),
        }
        self.server.stdin.write((json.dumps(request) + "\n").encode())
        self.server.stdin.flush()
        line = self._line(60)
        assert line.startswith("pid "), line
        child.pid = int(line.split()[1])
        return child

    def poll(self, child: Child) -> Finished | None:
        """The child's end if the server reported it already, else None (it is still running)."""
        line = self._line(0)
        if not line:
            return None
        return self._finished(child, line)

    def wait(self, child: Child, timeout: float) -> Finished:
        """Wait for the child's end; past ``timeout`` seconds kill it and fail."""
        line = self._line(timeout)
        if not line:
            os.kill(child.pid, signal.SIGKILL)
            self.wait(child, 60)
            raise AssertionError(f"the child ran past {timeout} s: {child.stderr.read_text()}")
        return self._finished(child, line)

    def _finished(self, child: Child, line: str) -> Finished:
        assert line.startswith("exit "), line
        return Finished(int(line.split()[1]), child.stdout.read_text(), child.stderr.read_text())

    def run(self, argv: list[str], cwd: Path, timeout: float, **options: Any) -> Finished:
        """Run a child to its end (see :meth:`start`)."""
        return self.wait(self.start(argv, cwd, **options), timeout)

    def close(self) -> None:
        assert self.server.stdin is not None
        assert self.server.stdout is not None
        self.server.stdin.close()
        self.server.wait(timeout=60)
        self.server.stdout.close()


if __name__ == "__main__":
    serve()

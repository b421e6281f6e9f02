"""A real Spark standalone cluster on loopback: one master and two workers, from pyspark's own classes.

Started once per test session by the ``spark_cluster`` fixture (tests/conftest.py); each worker is a
separate JVM with its own Python executors, so a job run through it really ships the view
function, its module and featurekit to other processes. Only loopback addresses are used.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spark_class() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def _wait_for(port: int, process: subprocess.Popen[bytes], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it listened on port {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout_s:.0f} s")


@contextmanager
def standalone_cluster(log_dir: Path, workers: int = 2, worker_memory: str = "1g") -> Iterator[str]:
    """Yield the master URL of a running cluster of ``workers`` one-core workers; stop every process after."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    env["SPARK_LOG_DIR"] = str(log_dir)
    port, ui = _free_port(), _free_port()
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def log(name: str) -> Any:
        handle = (log_dir / name).open("wb")
        logs.append(handle)
        return handle

    try:
        master = subprocess.Popen(
            [str(_spark_class()), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(ui)],
            env=env, stdout=log("master.log"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        processes.append(master)
        _wait_for(port, master, "the Spark master")
        url = f"spark://127.0.0.1:{port}"
        for index in range(workers):
            worker_port = _free_port()
            worker = subprocess.Popen(
                [str(_spark_class()), "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                 "--port", str(worker_port), "--webui-port", str(_free_port()), "--cores", "1",
                 "--memory", worker_memory, "--work-dir", str(log_dir / f"work{index}")],
                env=env, stdout=log(f"worker{index}.log"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            processes.append(worker)
            _wait_for(worker_port, worker, f"Spark worker {index}")
        yield url
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for handle in logs:
            handle.close()

"""The processes a benchmark run starts and stops: its own Temporal dev server, the fake model,
the site (a WSGI server in its own process) and the worker (`python -m temporal_worker`).

Every process writes its output to a log file in the run directory; nothing here needs Django.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.temporal_harness import search_attribute_flags, temporal_cli

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def read_proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc (Linux)."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values


@dataclass
class Proc:
    """One child process, its output in `log_path`."""

    name: str
    args: list[str]
    env: Mapping[str, str]
    log_path: Path
    url: str = ""
    popen: subprocess.Popen[bytes] | None = None
    _log: object = field(default=None, repr=False)

    def start(self) -> Proc:
        log = self.log_path.open("ab")
        self._log = log
        self.popen = subprocess.Popen(
            self.args,
            cwd=REPO,
            env=dict(self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def rss_kb(self) -> int:
        return read_proc_status(self.pid).get("VmRSS", 0)

    def hwm_kb(self) -> int:
        return read_proc_status(self.pid).get("VmHWM", 0)

    def open_files(self) -> int | None:
        """Open file descriptors (database files, sockets): /proc/<pid>/fd, Linux only."""
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log_text():
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not log {marker!r} in {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        log = self._log
        if log is not None:
            log.close()  # type: ignore[attr-defined]


def start_temporal(
    run_dir: Path, *, name: str = "temporal", dynamic_config: Mapping[str, str] | None = None
) -> tuple[Proc, str]:
    """`temporal server start-dev` (in-memory, headless) with our search attributes."""
    port, ui_port = free_port(), free_port()
    args = [
        temporal_cli(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--headless",
        "--log-level",
        "error",
    ]
    args += search_attribute_flags()
    for key, value in (dynamic_config or {}).items():
        args += ["--dynamic-config-value", f"{key}={value}"]
    proc = Proc(name, args, os.environ, run_dir / f"{name}.log").start()
    assert proc.popen is not None
    wait_for_port(port, 60, proc.popen)
    return proc, f"127.0.0.1:{port}"


def start_site(run_dir: Path, env: Mapping[str, str], *, name: str, local_steps: bool) -> Proc:
    port = free_port()
    args = [sys.executable, "-m", "bench.site_server", "--port", str(port)]
    if not local_steps:
        args.append("--no-local-steps")
    proc = Proc(name, args, env, run_dir / f"{name}.log").start()
    proc.wait_for_log("READY ", 60)
    proc.url = f"http://127.0.0.1:{port}"
    return proc


def start_worker(
    run_dir: Path,
    env: Mapping[str, str],
    *,
    name: str = "worker",
    module: Sequence[str] = ("temporal_worker",),
    timeout: float = 90,
) -> Proc:
    """`python -m temporal_worker`, or `module` (a worker variant with its arguments)."""
    proc = Proc(name, [sys.executable, "-m", *module], env, run_dir / f"{name}.log")
    proc.start()
    proc.wait_for_log("worker started", timeout)
    return proc


def start_local_llm(run_dir: Path, env: Mapping[str, str]) -> tuple[Proc, str]:
    """scripts/serve_local_llm.py (llama_cpp.server with the packaged Gemma 3 270M)."""
    port = free_port()
    env = {**env, "LOCAL_LLM_PORT": str(port), "LOCAL_LLM_HOST": "127.0.0.1"}
    script = str(REPO / "scripts" / "serve_local_llm.py")
    proc = Proc("local-llm", [sys.executable, script], env, run_dir / "local-llm.log").start()
    deadline = time.monotonic() + 240
    url = f"http://127.0.0.1:{port}/v1"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"the local model server exited; see {proc.log_path}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                if b"gemma" in response.read():
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.stop()
    raise TimeoutError(f"the local model server did not answer in 240s; see {proc.log_path}")


def local_extra_installed() -> tuple[bool, str]:
    """Whether the `local` extra (llama-cpp-python + the Gemma package) is importable."""
    script = str(REPO / "scripts" / "serve_local_llm.py")
    done = subprocess.run(
        [sys.executable, script, "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode == 0:
        return True, ""
    lines = [line for line in done.stdout.splitlines() if "missing" in line]
    return False, (lines[0] if lines else done.stdout.strip()[:200]) or "the local extra is missing"

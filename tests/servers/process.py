"""What the test servers share: a free loopback port, waiting for a started program to
answer, and ending it (politely first, then for certain)."""

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(
    process: subprocess.Popen,
    is_ready: Callable[[], bool],
    *,
    name: str,
    log: Path,
    timeout: float = 15.0,
    pause: float = 0.05,
) -> None:
    """Return once `is_ready()` is true; raise with the program's log when it exits first
    or does not get ready within `timeout` seconds. Connection errors count as not ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text(errors='replace')}")
        try:
            if is_ready():
                return
        except OSError:
            pass
        time.sleep(pause)
    raise RuntimeError(f"{name} did not answer within {timeout:.0f} s")


def end_process(process: subprocess.Popen | None, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; reaped either way. None is fine."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)

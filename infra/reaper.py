"""Stop a stack's servers when the process that started them dies, however it died.

Servers run in their own sessions, so that Ctrl-C in a terminal reaches only their owner, which then
shuts them down in order. The price: an owner killed with SIGKILL, or by a timeout that kills its
process group, leaves them running, holding ports and files. So each owner process starts one reaper
in a session of its own. It polls the owner; once the owner is gone, it stops every process that
carries the owner's token in its environment (the servers, and anything they started, such as the
Prefect worker's flow runs), then exits.

Standard library only: it runs as a script (`python reaper.py OWNER_PID OWNER_START TOKEN`), before
and after anything of the project is importable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

OWNER = "SVD_STACK_OWNER"
"""Environment variable on every process a stack owner starts: the owner's token."""


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None once
    it has exited: with the pid, it names one process even after the pid is reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def processes_with_env(key: str, value: str | None = None) -> list[int]:
    """Live (non-zombie) processes other than this one whose environment has `key` (=`value`)."""
    needle = f"{key}={value}".encode() if value is not None else f"{key}=".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid() or start_time(int(proc.name)) is None:
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(item == needle if value is not None else item.startswith(needle) for item in env):
            found.append(int(proc.name))
    return found


def reap(key: str, value: str, grace: float = 5.0) -> None:
    """SIGTERM every process carrying key=value (servers flush and close cleanly), then SIGKILL
    what is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in processes_with_env(key, value):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while processes_with_env(key, value) and time.monotonic() < deadline:
            time.sleep(0.1)


def watch(owner: int, born: str, token: str, poll: float = 0.5) -> None:
    """Until the owner (its pid, born at `born`) is gone, then reap what carries its token."""
    while start_time(owner) == born:
        time.sleep(poll)
    reap(OWNER, token)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2], sys.argv[3])

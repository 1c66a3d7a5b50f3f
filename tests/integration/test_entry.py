"""`python -m flows` with no Prefect server configured: the one temporary server it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Inside temporary_server(): the URL a child process (a curate worker) and a new thread see, and
# whether it answers.
SCRIPT = """
import os, subprocess, sys, threading, urllib.request
from prefect.settings import get_current_settings
from flows.__main__ import temporary_server

child = [sys.executable, "-c", "import os; print(os.environ['PREFECT_API_URL'])"]
with temporary_server() as server:
    server.ready()
    url = subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip()
    urllib.request.urlopen(url + "/health", timeout=5).read()
    seen = []  # a thread with no context of its own, as Prefect's process pool forwarder is
    thread = threading.Thread(target=lambda: seen.append(get_current_settings().api.url))
    thread.start(); thread.join()
    assert seen == [url], (seen, url)
    print(url)
seen = []
thread = threading.Thread(target=lambda: seen.append(get_current_settings().api.url))
thread.start(); thread.join()
print(os.environ.get("PREFECT_API_URL"), seen[0])
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """No server configured; one Prefect home for the module's temporary servers (the first to boot
    makes its database: 20 s of migrations on 2 cores)."""
    home = str(tmp_path_factory.mktemp("prefect-home"))
    return {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": home}


def test_child_processes_report_to_the_one_temporary_server_which_stops_after(env: dict[str, str]) -> None:
    """Before, each of curate's worker processes started a temporary server of its own."""
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stderr[-3000:]
    url, after, thread_after = run.stdout.split()[-3:]
    assert url.startswith("http://127.0.0.1:") and after == thread_after == "None"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/health", timeout=2)
    assert "Error logging to API" not in run.stderr


KILLED = """
import time
from flows.__main__ import temporary_server
with temporary_server() as server:
    server.ready()
    print("up", flush=True)
    time.sleep(600)
"""


def test_a_stage_killed_by_sigkill_takes_its_temporary_server_along(env: dict[str, str]) -> None:
    """As the OOM killer kills: no handler of the stage runs. Before, its server ran on for good."""
    import psutil

    stage = subprocess.Popen(
        [sys.executable, "-c", KILLED], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert stage.stdout is not None and stage.stdout.readline().strip() == "up"
        (server,) = psutil.Process(stage.pid).children()
    finally:
        stage.kill()
        stage.wait()

    def gone() -> bool:
        try:
            return server.status() == psutil.STATUS_ZOMBIE  # exited; whoever adopted it has not reaped it
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + 30
    while not gone():
        if time.monotonic() > deadline:
            server.kill()
            raise AssertionError(f"the temporary server (pid {server.pid}) outlived its stage")
        time.sleep(0.1)

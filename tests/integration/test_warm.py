"""The warm process of the `dvc repro` door (flows/warm.py) as a user meets it: a stage's command
runs forked from it with the stage's own output and exit code, an edit to the project's code is
never run stale, and a stopped stage leaves nothing running. Its bytes against cold stages are
checked in test_concurrency.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows import warm
from infra.project import scratch_project
from infra.stack import Service, start_warm

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]
SMOKE = yaml.safe_load((ROOT / "tests" / "e2e" / "smoke.yaml").read_text())


def forks(log: Path) -> list[tuple[int, str]]:
    return [
        (int(pid), flow)
        for pid, flow in re.findall(r"process (\d+) runs `python -m flows (\w+)", log.read_text())
    ]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_stages_fork_from_the_warm_process_fresh_code_and_all(
    prefect_server: Service, tmp_path: Path
) -> None:
    """Stage commands run in a scratch project with its warm process up: each is a fork with its
    own output and exit code; after an edit to a module the next stage runs the edit, cold, and
    the warm process serves again with fresh imports; killing a stage's command ends its fork, and
    its flow run is not left running."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    proj, env = scratch_project(tmp_path, SMOKE, os.environ | {"PREFECT_HOME": str(tmp_path / "home")})
    flows = [sys.executable, "-m", "flows"]

    def stage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*flows, *args], cwd=proj, env=env, capture_output=True, text=True, timeout=300)

    server = start_warm(proj, prefect_server, tmp_path, env)
    try:
        # its output and exit code are the stage's own
        ran = stage("synth")
        assert ran.returncode == 0 and "Finished in state Completed" in ran.stdout + ran.stderr, ran.stderr
        failed = stage("filter", "--params", "no-such.yaml")
        assert failed.returncode == 1 and "no-such.yaml" in failed.stderr, failed.stderr[-2000:]
        assert [flow for _, flow in forks(server.log)] == ["synth", "filter"]

        # an edited module: that stage runs cold, not forked from stale imports; the warm process re-imports
        source = proj / "svd" / "steps" / "synth.py"
        source.write_text(source.read_text().replace('"""', '"""Edited. ', 1))
        ran = stage("synth")
        assert ran.returncode == 0 and len(forks(server.log)) == 2, server.log_tail()
        assert "code changed" in server.log.read_text()
        assert warm.wait_until_served(proj, 120)
        assert server.log.read_text().count(" flows imported; serving") == 2

        # a stage whose command is killed (DVC stopped, Ctrl-C) ends: nothing of it keeps running
        client = subprocess.Popen([*flows, "curate"], cwd=proj, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not any(flow == "curate" for _, flow in forks(server.log)):
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.2)
        child = forks(server.log)[-1][0]
        time.sleep(2)  # into the flow run
        assert alive(child)
        client.send_signal(signal.SIGKILL)
        client.wait()
        deadline = time.monotonic() + 40
        while f"process {child} exited with" not in server.log.read_text():  # and reaped
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.2)
        assert not alive(child)
        with temporary_settings({PREFECT_API_URL: prefect_server.url}), get_client(sync_client=True) as c:
            curate = FlowFilter(name=FlowFilterName(any_=["curate"]))  # the server's latest: this one
            (run,) = c.read_flow_runs(flow_filter=curate, sort=FlowRunSort.START_TIME_DESC, limit=1)
        assert run.state is not None and run.state.is_final() and not run.state.is_completed(), run.state
    finally:
        server.stop()
    assert not Path(warm.address(proj)).exists()

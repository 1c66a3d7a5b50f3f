"""The warm process of the `dvc repro` door (flows/warm.py) as a user meets it: a stage's command
runs forked from it with the stage's own output and exit code, an edit to the project's code is
never run stale, and a stopped stage leaves nothing running. Its bytes against cold stages are
checked in test_concurrency.py."""

from __future__ import annotations

import os
import re
import shlex
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


def flow_run(output: str) -> str:
    """The id of the flow run a stage's output links to."""
    found = re.search(r"/flow-run/([0-9a-f-]{36})", output)
    assert found, output[-3000:]
    return found.group(1)


def test_stages_fork_from_the_warm_process_fresh_code_and_all(
    prefect_server: Service, tmp_path: Path
) -> None:
    """Stage commands run in a scratch project with its warm process up: each is a fork with its own
    output and exit code, whose flow run and task runs all reach the server as completed. A stage
    whose settings read at import differ, one under a memory cap, or one after an edit to a module,
    runs cold, and the warm
    process then serves again with fresh imports, after an edit that does not import too. Ctrl-C on
    a stage's command reaches its fork, and the command dies of it; a stage whose command is killed
    is ended; neither flow run is left running."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    proj, env = scratch_project(tmp_path, SMOKE, os.environ | {"PREFECT_HOME": str(tmp_path / "home")})
    flows = [sys.executable, "-m", "flows"]

    def stage(*args: str, **more: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*flows, *args], cwd=proj, env=env | more, capture_output=True, text=True, timeout=300
        )

    def states(run_id: str) -> tuple[str, list[str]]:
        """The flow run's state and its task runs' states."""
        with temporary_settings({PREFECT_API_URL: prefect_server.url}), get_client(sync_client=True) as c:
            run = c.read_flow_run(run_id)
            tasks = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        return str(run.state_type.value), [str(t.state_type.value) for t in tasks if t.state_type]

    def interrupted(sig: signal.Signals) -> tuple[int, str]:
        """`python -m flows curate` sent `sig` once its flow run began: its exit code and flow run.
        Its shell lowered its open-files limit (`ulimit -n 777`): so has its fork."""
        out = tmp_path / f"curate-{sig.name}.log"
        with out.open("w") as f:
            client = subprocess.Popen(
                ["bash", "-c", f"ulimit -n 777 && exec {shlex.join(flows)} curate"],
                cwd=proj,
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while "Beginning flow run" not in out.read_text():
            assert time.monotonic() < deadline and client.poll() is None, out.read_text()[-3000:]
            time.sleep(0.2)
        child = forks(server.log)[-1][0]
        limit = re.search(r"Max open files +(\d+) +(\d+)", Path(f"/proc/{child}/limits").read_text())
        assert limit and limit.groups() == ("777", "777"), Path(f"/proc/{child}/limits").read_text()
        client.send_signal(sig)
        code = client.wait(timeout=60)
        deadline = time.monotonic() + 40
        while f"process {child} exited with" not in server.log.read_text():  # ended and reaped
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.2)
        assert not alive(child)
        return code, flow_run(out.read_text())

    server = start_warm(proj, prefect_server, tmp_path, env)
    try:
        # its output and exit code are the stage's own; its last events reach the server
        ran = stage("synth")
        assert ran.returncode == 0 and "Finished in state Completed" in ran.stdout + ran.stderr, ran.stderr
        run_state, task_states = states(flow_run(ran.stdout + ran.stderr))
        assert run_state == "COMPLETED" and task_states and set(task_states) == {"COMPLETED"}, task_states
        failed = stage("filter", "--params", "no-such.yaml")
        assert failed.returncode == 1 and "no-such.yaml" in failed.stderr, failed.stderr[-2000:]
        assert [flow for _, flow in forks(server.log)] == ["synth", "filter"]

        # a setting that libraries read at import, different from the warm process's: runs cold
        ran = stage("synth", HF_HUB_OFFLINE="1")
        assert ran.returncode == 0 and len(forks(server.log)) == 2, server.log_tail()
        assert "runs cold: HF_HUB_OFFLINE differ" in server.log.read_text()
        # under a memory cap (`ulimit -v`), which a fork holding the warm process's imports could break
        capped = f"ulimit -v {64 << 20} && exec {shlex.join(flows)} filter --params no-such.yaml"
        ran = subprocess.run(["bash", "-c", capped], cwd=proj, env=env, capture_output=True, text=True)
        assert ran.returncode == 1 and "no-such.yaml" in ran.stderr, ran.stderr[-2000:]
        assert (
            len(forks(server.log)) == 2 and "runs cold: its RLIMIT_AS caps memory" in server.log.read_text()
        )

        # an edited module: that stage runs cold, not forked from stale imports; the warm process re-imports
        source = proj / "svd" / "steps" / "synth.py"
        source.write_text(source.read_text().replace('"""', '"""Edited. ', 1))
        ran = stage("synth")
        assert ran.returncode == 0 and len(forks(server.log)) == 2, server.log_tail()
        assert "an imported file changed" in server.log.read_text()
        assert warm.wait_until_served(proj, 120)
        assert server.log.read_text().count(" flows imported; serving") == 2

        # an edit that does not import: the stage fails cold as it would anyway, the warm process
        # waits for the fix instead of ending (make serve would stop), then serves again
        good = source.read_text()
        source.write_text(good + "\ndef broken(:\n")
        ran = stage("synth")
        assert ran.returncode == 1 and "SyntaxError" in ran.stderr, ran.stderr[-2000:]
        deadline = time.monotonic() + 120
        while "serving nothing until a file changes" not in server.log.read_text():
            assert time.monotonic() < deadline and server.alive(), server.log_tail()
            time.sleep(0.5)
        source.write_text(good)
        assert warm.wait_until_served(proj, 120) and server.alive()
        assert server.log.read_text().count(" flows imported; serving") == 3

        # Ctrl-C: the fork gets it, as a cold process would, and the command dies of it
        code, run_id = interrupted(signal.SIGINT)
        assert code == -signal.SIGINT and states(run_id)[0] == "CRASHED", (code, states(run_id))
        # the command killed outright (DVC killed): its fork is ended, its flow run not left running
        code, run_id = interrupted(signal.SIGKILL)
        assert code == -signal.SIGKILL and states(run_id)[0] == "CRASHED", states(run_id)
    finally:
        server.stop()
    assert not warm.address(proj).exists()


def test_dvc_repro_alone_starts_a_warm_process_that_ends_idle(
    prefect_server: Service, tmp_path: Path
) -> None:
    """`dvc repro` with no `make serve` and no Prefect server: its first stage starts the project's
    warm process, with a temporary Prefect server of its own, and every stage runs forked from it.
    Idle for SVD_WARM_IDLE_S after its last stage, it ends, its server with it. One started as
    `make serve` starts it takes over from such a one without breaking the stage it runs."""
    from infra.stack import bare_env

    idle = 15
    env = bare_env() | {"PREFECT_HOME": str(tmp_path / "home"), warm.IDLE: str(idle)}
    proj, env = scratch_project(tmp_path, SMOKE, env)
    log = proj / ".stack" / "logs" / "warm.log"

    def repro(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "dvc"), "repro", *args],
            cwd=proj,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    ran = repro("curate")
    out = ran.communicate(timeout=400)[0]
    assert ran.returncode == 0 and "started a warm process" in out, out[-3000:]
    assert [flow for _, flow in forks(log)] == ["synth", "curate"], log.read_text()[-3000:]
    held = warm.holder(proj)
    assert held and held.idle == idle and held.state == "serving", held
    served = [int(p) for p in Path(f"/proc/{held.pid}/task/{held.pid}/children").read_text().split()]
    assert served, "no temporary Prefect server"  # the warm process's only child between stages
    deadline = time.monotonic() + idle + 30
    while alive(held.pid) or any(alive(p) for p in served):
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    assert f"no stage for {idle:g} s; ending" in log.read_text() and not warm.address(proj).exists()

    # a new one, since the last one ended; `make serve`'s takes over while it runs a stage
    ran = repro("filter")
    deadline = time.monotonic() + 300
    while [flow for _, flow in forks(log)][2:] != ["filter"]:
        assert time.monotonic() < deadline and ran.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    first = warm.holder(proj)
    server = start_warm(proj, prefect_server, tmp_path, env)
    try:
        out = ran.communicate(timeout=300)[0]
        assert ran.returncode == 0, out[-3000:]
        deadline = time.monotonic() + 60
        while first and alive(first.pid):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        assert "another warm process takes over" in log.read_text()
        held = warm.holder(proj)
        assert held and held.idle == 0 and held.state == "serving" and warm.wait_until_served(proj, 1)
    finally:
        server.stop()

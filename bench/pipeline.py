"""Orchestration overhead: each door's wall time against the sum of its steps' compute time, both
measured in the same run, on the same profile, each door in a scratch project of its own.

Doors:
- pipeline flow: `python -m flows pipeline`, one process and one temporary Prefect server;
- dvc repro: as a user runs it, with nothing else up: its first stage starts the project's warm
  process (flows/warm.py) with a temporary Prefect server, and every stage runs forked from it; the
  warm process's start is inside the timed run;
- dvc repro, cold: each stage a process of its own running its step's flow (SVD_WARM_IDLE_S=0);
  with no PREFECT_API_URL, each of them starts a temporary Prefect server of its own;
- dvc repro + server: cold stages pointed at a running Prefect server;
- dvc repro + warm: each stage forked from a warm process started before the clock, on a running
  Prefect server, as under `make serve`.

A step's compute time is its MLflow run's duration: the step function reading, computing, writing
and logging. Overhead = (wall - sum of compute) / wall; the goal is under 5%.

Each door's Prefect and MLflow databases are created before its timed run, as a user's are after
their first run: creating them (schema migrations, about 10 s) is a one-off, printed on its own, and
so is starting the warm process of "dvc repro + warm" (the one of "dvc repro" starts in the run).

    python bench/pipeline.py [--profile smoke|default] [--door 'dvc repro' ...]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flows.warm import IDLE, holder  # noqa: E402
from infra.project import BIN, scratch_project  # noqa: E402
from infra.stack import Service, bare_env, start_prefect, start_warm  # noqa: E402

PROFILES = {"smoke": ROOT / "tests" / "e2e" / "smoke.yaml", "default": None}


@dataclass
class Door:
    name: str
    wall: float
    per_step: dict[str, float]
    setup: float  # creating the door's databases (and starting its warm process), before the timed run

    @property
    def compute(self) -> float:
        return sum(self.per_step.values())

    @property
    def overhead(self) -> float:
        return (self.wall - self.compute) / self.wall


def compute_seconds(proj: Path) -> dict[str, float]:
    """Each step's compute: its MLflow run's duration."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{proj / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return {r.info.run_name: (r.info.end_time - r.info.start_time) / 1000 for r in runs}


# The MLflow tables and, where no Prefect server is configured, the database of the temporary ones.
CREATE_DATABASES = """
import mlflow
from prefect.server.database import provide_database_interface
from prefect.settings import PREFECT_API_URL
from prefect.utilities.asyncutils import run_coro_as_sync

mlflow.search_experiments()
if not PREFECT_API_URL.value():
    run_coro_as_sync(provide_database_interface().create_db())
"""


def run_door(
    name: str, cmd: list[str], root: Path, params: dict, env: dict[str, str], warm: Service | None = None
) -> Door:
    """`cmd` in a scratch project of its own; with `warm` (a Prefect server), the project's warm
    process runs on it, started (and its imports made) before the clock starts, as `make serve` does."""
    proj, run_env = scratch_project(root / name.replace(" ", "-"), params, env)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", CREATE_DATABASES], cwd=proj, env=run_env, check=True)
    process = start_warm(proj, warm, root / "warm", run_env) if warm else None
    setup = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=proj, env=run_env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    finally:
        if process:
            process.stop()
        if started := holder(proj):  # the one its first stage started: it would wait out its idle time
            os.kill(started.pid, signal.SIGTERM)
            deadline = time.perf_counter() + 60
            while holder(proj) and time.perf_counter() < deadline:
                time.sleep(0.2)
    if r.returncode:
        raise SystemExit(f"{name}: {' '.join(cmd)} failed\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return Door(name, wall, compute_seconds(proj), setup)


DOORS = ("pipeline flow", "dvc repro", "dvc repro, cold", "dvc repro + server", "dvc repro + warm")


def main(profile: str = "smoke", doors: tuple[str, ...] = DOORS) -> list[Door]:
    path = PROFILES[profile]
    params = yaml.safe_load(path.read_text()) if path else {}
    base = bare_env()  # no warm process started by a stage, but at the first "dvc repro" door's
    measured = []
    with tempfile.TemporaryDirectory(prefix="svd-bench-pipeline-") as tmp:
        root = Path(tmp)
        home = {"PREFECT_HOME": str(root / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        if "pipeline flow" in doors:
            flow = [sys.executable, "-m", "flows", "pipeline"]
            measured.append(run_door("pipeline flow", flow, root, params, base | home))
        repro = [str(BIN / "dvc"), "repro"]
        if "dvc repro" in doors:
            measured.append(run_door("dvc repro", repro, root, params, base | home | {IDLE: "600"}))
        if "dvc repro, cold" in doors:
            measured.append(run_door("dvc repro, cold", repro, root, params, base | home))
        for door in ("dvc repro + server", "dvc repro + warm"):
            if door not in doors:
                continue
            server = start_prefect(root / "stack", ui=False)
            try:
                warm = server if door.endswith("warm") else None
                measured.append(run_door(door, repro, root, params, base | server.env, warm))
            finally:
                server.stop()
    return measured


def table(doors: list[Door], profile: str) -> str:
    lines = [
        f"orchestration overhead, {profile} profile (goal: under 5%)",
        f"  {'door':<20} {'wall s':>8} {'compute s':>10} {'steps':>6} {'overhead':>9} {'setup s':>8}",
    ]
    lines += [
        f"  {d.name:<20} {d.wall:8.1f} {d.compute:10.1f} {len(d.per_step):6d} {d.overhead:9.1%}"
        f" {d.setup:8.1f}"
        for d in doors
    ]
    lines += [
        "  setup: creating the door's Prefect and MLflow databases (and starting its warm process),"
        " before the timed run"
    ]
    steps = sorted({s for d in doors for s in d.per_step})
    lines += ["", f"  compute per step, s: {'step':<17}" + "".join(f"{d.name:>20}" for d in doors)]
    lines += [f"  {'':<21}{s:<17}" + "".join(f"{d.per_step.get(s, 0):20.1f}" for d in doors) for s in steps]
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    ap.add_argument("--door", action="append", choices=DOORS, help="only these doors (default: all)")
    args = ap.parse_args()
    print(table(main(args.profile, tuple(args.door or DOORS)), args.profile))

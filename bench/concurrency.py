"""Issue 10, point 2: two whole pipelines at once, as two users of one team start them. Two
workspaces share one DVC cache, one MLflow server (artifacts in its S3) and one Prefect server, and
each runs `dvc repro` on the smoke profile. Neither may corrupt the other's cache objects, runs or
registry versions.

It checks, and prints, that:
- both finish, and both are clean in `dvc status`;
- both give every output the same DVC hash (the steps are deterministic);
- every object in the shared cache still hashes to its name;
- every step has one finished MLflow run per workspace;
- the weights are registered once: both registrations name one version, which holds champion;
- every flow run on the shared Prefect server completed.

In CI, tests/integration/test_concurrency.py runs the first three steps this way (each user with a
Prefect server of their own), and the registration race on its own; this runs all ten steps
(11-17 minutes on 2 cores).

    python bench/concurrency.py
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.project import BIN, outs, scratch_project  # noqa: E402
from infra.stack import bare_env, local_stack, run_cmd  # noqa: E402
from svd.params import merge  # noqa: E402

# The smoke profile with Stage I's autoencoder at 20 steps, since nothing here checks quality.
PARAMS = merge(
    yaml.safe_load((ROOT / "tests" / "e2e" / "smoke.yaml").read_text()),
    {"train": {"image": {"autoencoder_steps": 20}}},
)
USERS = ("alice", "bob")


def run_at_once(
    doors: list[tuple[Path, dict[str, str]]], logs: list[Path], limit: float = 1800
) -> list[tuple[int, float]]:
    """`dvc repro` in every workspace at the same moment; each one's exit code and wall time. No
    run-cache: with the cache shared, a step one user finished first would be restored for the other,
    not run, and the two would not write at once. Whatever still runs when this ends (an error,
    Ctrl-C, the time limit) is killed with its children."""
    with contextlib.ExitStack() as files:
        started = [
            subprocess.Popen(
                [str(BIN / "dvc"), "repro", "--no-run-cache"],
                cwd=proj,
                env=env,
                stdout=files.enter_context(log.open("w")),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for (proj, env), log in zip(doors, logs, strict=True)
        ]
        t0 = time.time()
        walls: dict[int, float] = {}
        try:
            while len(walls) < len(started):
                if time.time() - t0 > limit:
                    raise TimeoutError(f"dvc repro still running after {limit:.0f} s")
                walls |= {
                    i: time.time() - t0
                    for i, p in enumerate(started)
                    if i not in walls and p.poll() is not None
                }
                time.sleep(0.5)
        finally:
            for p in started:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
    return [(p.returncode, walls[i]) for i, p in enumerate(started)]


def main() -> int:
    import mlflow
    from mlflow.exceptions import MlflowException
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    base = bare_env()
    failures: list[str] = []

    def check(ok: bool, what: str, detail: object = "") -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail and not ok else ""))
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory(prefix="svd-bench-concurrency-") as tmp:
        root = Path(tmp)
        with local_stack(root / "stack", pool=None, ui=False) as stack:
            tracking, prefect = stack.services["mlflow"].url, stack.services["prefect"]
            cache = root / "cache"
            doors = []
            for user in USERS:
                # Prefect's settings and the tracking URI, nothing of S3: the MLflow server proxies the
                # artifacts, so a user needs no bucket keys, and a client that skipped the proxy fails
                proj, env = scratch_project(root / user, PARAMS, base | prefect.env)
                env["MLFLOW_TRACKING_URI"] = tracking  # the team's server, not the project's own SQLite
                run_cmd([str(BIN / "dvc"), "cache", "dir", "--local", str(cache)], env, cwd=proj)
                doors.append((proj, env))
            logs = [root / f"{user}.log" for user in USERS]
            ended = run_at_once(doors, logs)
            print(f"two `dvc repro` at once, smoke profile: {ended[0][1]:.0f} s and {ended[1][1]:.0f} s wall")
            for user, log, (code, _) in zip(USERS, logs, ended, strict=True):
                check(code == 0, f"{user}'s dvc repro exits 0", log.read_text()[-3000:])
            if failures:
                return 1
            for user, (proj, env) in zip(USERS, doors, strict=True):
                status = run_cmd([str(BIN / "dvc"), "status"], env, cwd=proj)
                check("up to date" in status, f"{user}'s workspace is clean in dvc status", status)
            if failures:
                return 1
            hashes = [outs(proj) for proj, _ in doors]
            differ = sorted(
                k for k in hashes[0].keys() | hashes[1].keys() if hashes[0].get(k) != hashes[1].get(k)
            )
            check(
                not differ and len(hashes[0]) >= 10, f"same DVC hash for all {len(hashes[0])} outputs", differ
            )
            objects = [f for f in (cache / "files" / "md5").rglob("*") if f.is_file()]
            corrupt = [
                f
                for f in objects
                if hashlib.md5(f.read_bytes()).hexdigest() != f.parent.name + f.name.removesuffix(".dir")
            ]
            check(
                bool(objects) and not corrupt,
                f"all {len(objects)} shared cache objects hash to their names",
                corrupt,
            )

            # each workspace ran each step once (no run-cache, and each repro ends clean), so two
            # finished runs per step are one per workspace
            mlflow.set_tracking_uri(tracking)
            client = mlflow.MlflowClient()
            steps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
            for step in steps:
                runs = mlflow.search_runs(experiment_names=[f"svd/{step}"], output_format="list")
                check(
                    [r.info.status for r in runs] == ["FINISHED"] * 2,
                    f"{step}: one finished MLflow run per workspace",
                    [r.info.status for r in runs],
                )
            regs = [json.loads((proj / "reports" / "registration.json").read_text()) for proj, _ in doors]
            name = regs[0]["name"]
            versions = client.search_model_versions(f"name = '{name}'")
            check(
                {r["name"] for r in regs} == {name}
                and {str(r["version"]) for r in regs} == {str(v.version) for v in versions}
                and len(versions) == 1,
                f"one registered version of {name}, named by both",
                [(r["name"], r["version"], r["aliases"]) for r in regs],
            )
            try:
                champion: object = client.get_model_version_by_alias(name, "champion").version
            except MlflowException as e:
                champion = e
            check(str(champion) == str(regs[0]["version"]), "it holds champion", champion)
            with temporary_settings({PREFECT_API_URL: prefect.url}), get_client(sync_client=True) as c:
                flow_runs = c.read_flow_runs()
            states = sorted({str(r.state.name) if r.state else "no state" for r in flow_runs})
            check(
                states == ["Completed"] and len(flow_runs) >= 2 * len(steps),
                f"all {len(flow_runs)} flow runs on the shared Prefect server Completed",
                states,
            )
    print(f"{len(failures)} failed" if failures else "nothing corrupted")
    return int(bool(failures))


if __name__ == "__main__":
    sys.exit(main())

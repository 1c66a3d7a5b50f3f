"""Issue 10, point 2: two whole pipelines at once, as two users of one team start them. Two
workspaces share one DVC cache, one MLflow server (artifacts in its S3) and one Prefect server, and
each runs `dvc repro` on the smoke profile. Neither may corrupt the other's cache objects, runs or
registry versions.

It checks, and prints, that:
- both finish, and both are clean in `dvc status`;
- both give every output the same DVC hash (the steps are deterministic);
- every object in the shared cache still hashes to its name;
- every step has one finished MLflow run per workspace;
- the weights are registered once: both registrations name one version, which holds champion.

tests/integration/test_concurrency.py runs the first three steps of this in CI, and the registration
race on its own; this runs all ten steps (11 minutes on 2 cores).

    python bench/concurrency.py
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.project import BIN, scratch_project  # noqa: E402
from infra.stack import QUIET_ENV, local_stack, run_cmd  # noqa: E402
from svd.params import merge  # noqa: E402

# The e2e test's profile: Stage I's autoencoder trains 20 steps, since nothing here checks quality.
PARAMS = merge(
    yaml.safe_load((ROOT / "tests" / "e2e" / "smoke.yaml").read_text()),
    {"train": {"image": {"autoencoder_steps": 20}}},
)
USERS = ("alice", "bob")


def outs(proj: Path) -> dict[str, str]:
    """Every output's DVC hash, bar the registration (it names the MLflow run)."""
    lock = yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
    return {
        o["path"]: o["md5"]
        for s in lock.values()
        for o in s.get("outs", [])
        if "registration" not in o["path"]
    }


def main() -> int:
    import mlflow

    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))} | QUIET_ENV
    failures: list[str] = []

    def check(ok: bool, what: str, detail: object = "") -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail and not ok else ""))
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory(prefix="svd-bench-concurrency-") as tmp:
        root = Path(tmp)
        with local_stack(root / "stack", pool=None, ui=False) as stack:
            tracking = stack.services["mlflow"].url
            cache = root / "cache"
            doors = []
            for user in USERS:
                proj, env = scratch_project(root / user, PARAMS, base | stack.env)
                env["MLFLOW_TRACKING_URI"] = tracking  # the team's server, not the project's own SQLite
                run_cmd([str(BIN / "dvc"), "cache", "dir", "--local", str(cache)], env, cwd=proj)
                doors.append((proj, env))
            t0 = time.time()
            logs = [(root / f"{user}.log").open("w") for user in USERS]
            started = [
                subprocess.Popen(
                    [str(BIN / "dvc"), "repro"], cwd=proj, env=env, stdout=log, stderr=subprocess.STDOUT
                )
                for (proj, env), log in zip(doors, logs, strict=True)
            ]
            walls: dict[int, float] = {}
            while len(walls) < len(started):
                walls |= {
                    i: time.time() - t0
                    for i, p in enumerate(started)
                    if i not in walls and p.poll() is not None
                }
                time.sleep(0.5)
            for log in logs:
                log.close()
            print(f"two `dvc repro` at once, smoke profile: {walls[0]:.0f} s and {walls[1]:.0f} s wall")
            for user, p in zip(USERS, started, strict=True):
                check(
                    p.returncode == 0,
                    f"{user}'s dvc repro exits 0",
                    (root / f"{user}.log").read_text()[-3000:],
                )
            if failures:
                return 1
            for user, (proj, env) in zip(USERS, doors, strict=True):
                status = run_cmd([str(BIN / "dvc"), "status"], env, cwd=proj)
                check("up to date" in status, f"{user}'s workspace is clean in dvc status", status)
            hashes = [outs(proj) for proj, _ in doors]
            check(
                hashes[0] == hashes[1] and len(hashes[0]) >= 10,
                f"same DVC hash for all {len(hashes[0])} outputs",
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

            mlflow.set_tracking_uri(tracking)
            client = mlflow.MlflowClient()
            steps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
            for step in steps:
                runs = mlflow.search_runs(experiment_names=[f"svd/{step}"], output_format="list")
                check(
                    [r.info.status for r in runs] == ["FINISHED"] * 2,
                    f"{step}: one finished run per workspace",
                    runs,
                )
            regs = [json.loads((proj / "reports" / "registration.json").read_text()) for proj, _ in doors]
            name = regs[0]["name"]
            versions = client.search_model_versions(f"name = '{name}'")
            check(
                {r["version"] for r in regs} == {v.version for v in versions} and len(versions) == 1,
                f"one registered version of {name}, named by both",
                [(r["version"], r["aliases"]) for r in regs],
            )
            champion = client.get_model_version_by_alias(name, "champion").version
            check(champion == regs[0]["version"], "it holds champion", champion)
    print(f"{len(failures)} failed" if failures else "nothing corrupted")
    return int(bool(failures))


if __name__ == "__main__":
    sys.exit(main())

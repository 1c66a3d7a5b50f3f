"""Two pipelines at once, as two users of one team run them: two workspaces sharing one DVC cache and
one MLflow server. Neither may corrupt the other's cache objects, runs or registry versions."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from infra.project import scratch_project
from infra.stack import Service, run_cmd, start_warm

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
SMOKE = yaml.safe_load((ROOT / "tests" / "e2e" / "smoke.yaml").read_text())
BIN = Path(sys.executable).parent


def test_two_workspaces_curate_at_once_on_one_cache_and_one_mlflow(
    mlflow_server: Service, prefect_server: Service, tmp_path: Path
) -> None:
    """`dvc repro filter` (synth, curate, filter) started at the same moment in two workspaces whose
    DVC cache is one folder and whose runs go to one MLflow server: both finish, both are clean in
    `dvc status`, give the same hashes (the steps are deterministic), every cache object still hashes
    to its name, and each step has one finished run per workspace. Alice's stages run cold, a process
    each; Bob's fork from the warm process `make serve` starts (flows/warm.py), so the two ways of
    running a stage must give the same bytes too."""
    import mlflow

    shared = tmp_path / "cache"
    doors = []
    for name in ("alice", "bob"):
        # the session's environment, but each user's own Prefect home (not this machine's ~/.prefect)
        home = {"PREFECT_HOME": str(tmp_path / name / "prefect-home")}
        proj, env = scratch_project(tmp_path / name, SMOKE, os.environ | home)
        env |= {"MLFLOW_TRACKING_URI": mlflow_server.url}
        run_cmd([str(BIN / "dvc"), "cache", "dir", "--local", str(shared)], env, cwd=proj)
        doors.append((proj, env))
    warm = start_warm(doors[1][0], prefect_server, tmp_path / "bob", doors[1][1])
    # no run-cache: it is in the shared cache too, and a step one user finished first would be
    # restored for the other, not run, so the two would not write at once
    repro = [str(BIN / "dvc"), "repro", "--no-run-cache", "filter"]
    try:
        t0 = time.time()
        started = [
            subprocess.Popen(repro, cwd=proj, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for proj, env in doors
        ]
        outputs = [p.communicate(timeout=800)[0].decode(errors="replace") for p in started]
    finally:
        warm.stop()
    assert [p.returncode for p in started] == [0, 0], [out[-4000:] for out in outputs]
    forked = re.findall(r"runs `python -m flows (\w+)`", warm.log.read_text())
    assert forked == ["synth", "curate", "filter"], warm.log_tail()
    locks = []
    for proj, env in doors:
        status = run_cmd([str(BIN / "dvc"), "status", "filter"], env, cwd=proj)  # and what it needs
        assert "up to date" in status, status
        lock = yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
        locks.append({o["path"]: o["md5"] for s in lock.values() for o in s.get("outs", [])})
    assert locks[0] == locks[1] and len(locks[0]) >= 3
    objects = [f for f in (shared / "files" / "md5").rglob("*") if f.is_file()]
    name = {f: f.parent.name + f.name.removesuffix(".dir") for f in objects}  # DVC's md5 of the bytes
    corrupt = [f for f in objects if hashlib.md5(f.read_bytes()).hexdigest() != name[f]]
    assert objects and corrupt == []
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        for step in ("synth", "curate", "filter"):
            since = f"attributes.start_time >= {int(t0 * 1000)}"  # this test's, not the session's others
            runs = mlflow.search_runs(
                experiment_names=[f"svd/{step}"], filter_string=since, output_format="list"
            )
            assert [r.info.status for r in runs] == ["FINISHED"] * 2, (step, runs)
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


REGISTER = """
import sys, time
from pathlib import Path
import mlflow
from svd.params import Gates
from svd.registry import register

folder, ready, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
mlflow.set_experiment("concurrency")
with mlflow.start_run() as run:
    ready.touch()
    while not go.exists():  # both processes reach this line before either registers
        time.sleep(0.01)
    r = register(folder, "svd-concurrent", {"val_loss": 0.1}, Gates(max_val_loss=1.0), run.info.run_id)
print(r.version, ",".join(r.aliases))
"""


def test_two_registrations_of_the_same_weights_at_once_make_one_version(
    mlflow_server: Service, tmp_path: Path
) -> None:
    """Two pipelines that trained the same weights (training is deterministic) register them at the
    same moment: one version holds them, both pipelines report it, and it carries the aliases."""
    import mlflow
    import torch

    from svd.model import components
    from svd.model.inflate import inflate
    from svd.model.motion import MotionBuckets
    from svd.params import Architecture

    torch.manual_seed(0)
    c = components.build(Architecture(), 32)
    c.unet = inflate(c.unet, 32, 4)
    c.motion = MotionBuckets.from_scores(torch.linspace(0, 4, 20).numpy())
    components.save(c, tmp_path / "model")
    go = tmp_path / "go"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url, "PYTHONPATH": str(ROOT)}
    started = [
        subprocess.Popen(
            [sys.executable, "-c", REGISTER, str(tmp_path / "model"), str(tmp_path / f"ready{i}"), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in started), "did not start"
        time.sleep(0.05)
    go.touch()
    said = [p.communicate(timeout=300) for p in started]
    assert [p.returncode for p in started] == [0, 0], [err[-3000:] for _, err in said]
    reports = {out.strip().splitlines()[-1] for out, _ in said}
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        client = mlflow.MlflowClient()
        versions = client.search_model_versions("name = 'svd-concurrent'")
        champion = client.get_model_version_by_alias("svd-concurrent", "champion").version
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    assert len(versions) == 1 and reports == {f"{versions[0].version} candidate,champion"}, reports
    assert str(champion) == str(versions[0].version)


def test_runs_logging_the_same_data_at_once_all_get_their_dataset_inputs(mlflow_server: Service) -> None:
    """Runs of one experiment that log the same data inputs at the same moment (two workspaces
    whose steps read the same DVC outputs): none fails and each run lists every input. MLflow's
    store checks, then inserts, so without the retry in log_datasets most rounds broke its
    unique key."""
    import threading

    import mlflow

    from svd import tracking

    hashes = {f"data/part{k}": hashlib.md5(str(k).encode()).hexdigest() for k in range(3)}
    rounds, width = 8, 3
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        experiment = mlflow.create_experiment("concurrent-inputs")
        failed: list[BaseException] = []
        run_ids: list[str] = []

        def one(barrier: threading.Barrier, digests: dict[str, str]) -> None:
            with mlflow.start_run(experiment_id=experiment) as run:  # the active run is per thread
                run_ids.append(run.info.run_id)
                barrier.wait()
                try:
                    tracking.log_datasets(digests)
                except BaseException as e:
                    failed.append(e)

        for r in range(rounds):  # a new digest each round: each round races on new dataset rows
            digests = {path: md5[:-2] + f"{r:02d}" for path, md5 in hashes.items()}
            barrier = threading.Barrier(width)
            threads = [threading.Thread(target=one, args=(barrier, digests)) for _ in range(width)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
        assert failed == []
        client = mlflow.MlflowClient()
        logged = [{d.dataset.name for d in client.get_run(i).inputs.dataset_inputs} for i in run_ids]
        assert len(run_ids) == rounds * width and all(names == set(hashes) for names in logged)
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def test_tags_and_aliases_written_at_once_all_land(mlflow_server: Service) -> None:
    """What two registrations of the same weights write at once: the same new tag and alias on one
    version, from several clients. Each write lands and none fails; without retry_raced about one
    round in three broke the store's unique key (seen in CI as a failed registration)."""
    import threading

    import mlflow

    from svd import tracking

    rounds, width = 20, 4
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        client = mlflow.MlflowClient()
        name = "svd-racing-writes"
        client.create_registered_model(name)
        version = client.create_model_version(name, "s3://svd/racing-writes").version
        failed: list[BaseException] = []

        def one(barrier: threading.Barrier, r: int, alias: bool) -> None:
            barrier.wait()
            try:
                if alias:
                    tracking.retry_raced(client.set_registered_model_alias, name, f"a{r}", version)
                else:
                    tracking.retry_raced(client.set_model_version_tag, name, version, f"t{r}", "v")
            except BaseException as e:
                failed.append(e)

        for r in range(rounds):  # new keys each round: each round races on new rows
            barrier = threading.Barrier(width)
            threads = [threading.Thread(target=one, args=(barrier, r, i % 2 == 0)) for i in range(width)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
        assert failed == []
        mv = client.get_model_version(name, version)
        assert set(mv.aliases) == {f"a{r}" for r in range(rounds)}
        assert {k for k in mv.tags if k.startswith("t")} == {f"t{r}" for r in range(rounds)}
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]

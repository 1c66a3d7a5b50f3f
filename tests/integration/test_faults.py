"""Faults the platform meets in a user's week: an S3 endpoint or the MLflow server going away in the
middle of a request and coming back, a flow run's process killed, the owner of the servers killed.
Each test injects the fault into real servers (an `outage` forwarder in front of them, or SIGKILL),
checks that nothing was lost, and files a row for `make faults` (bench/faults.py): fault, outcome,
rows or objects lost."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from infra.reaper import start_time
from infra.stack import (
    MARKER,
    S3Endpoint,
    Service,
    configure_dvc_remote,
    processes_with_env,
    run_cmd,
    start_mlflow,
    start_worker,
)
from svd.curation.curate import curate
from svd.media.synth import make_corpus
from svd.params import CurateParams, SynthParams
from svd.storage import TMP_PREFIX

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[2]
REAPER = str(REPO / "infra" / "reaper.py")


def report(fault: str, outcome: str, lost: int) -> None:
    """One row of the fault table, when bench/faults.py asks for it (SVD_FAULTS_REPORT)."""
    if path := os.environ.get("SVD_FAULTS_REPORT"):
        with open(path, "a") as f:
            f.write(json.dumps({"fault": fault, "outcome": outcome, "lost": lost}) + "\n")


def listing(s3: S3Endpoint, prefix: str) -> dict[str, bytes]:
    """Every object under `prefix`, read at the endpoint itself (past any outage)."""
    client, out = s3.client(), {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = client.get_object(Bucket=s3.bucket, Key=o["Key"])["Body"].read()
    return out


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> CurateParams:
    root = tmp_path_factory.mktemp("faults")
    synth = SynthParams(out=root / "raw", videos=3, segments=(2, 3), segment_seconds=(1.5, 2.5))
    p = CurateParams(
        sources=(str(make_corpus(synth, seed=5)),),
        out=str(root / "local"),
        cache=str(root / "c"),
        shard_clips=3,
    )
    curate(p)
    return p


def test_an_s3_outage_in_the_middle_of_a_shard_upload_loses_nothing(
    curated: CurateParams, s3: S3Endpoint, outage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The endpoint goes away 20 KB into the first shard's PUT and comes back 3 s later: the upload is
    retried with backoff, and the run ends with every object holding the bytes of the local run. No
    reader saw a partial shard: while the endpoint was away, no shard was listed."""
    proxy = outage(s3.url)
    for k, v in {**s3.env, "AWS_ENDPOINT_URL_S3": proxy.url}.items():
        monkeypatch.setenv(k, v)
    p = curated.model_copy(update={"out": f"s3://{s3.bucket}/outage", "cache": str(tmp_path / "c")})
    proxy.arm(f"PUT /{s3.bucket}/outage/shards/".encode(), down_for=3.0, forward=20_000)
    seen: list[list[str]] = []

    def look_while_down() -> None:
        deadline = time.monotonic() + 120
        while not proxy.cuts and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(list(listing(s3, "outage/shards/")))

    reader = threading.Thread(target=look_while_down, daemon=True)
    reader.start()
    t0 = time.monotonic()
    table = curate(p)
    reader.join(10)
    assert len(proxy.cuts) == 1 and proxy.reset >= 2, "the outage did not happen mid-request"
    assert time.monotonic() - t0 >= 3.0  # the run waited the outage out
    assert seen == [[]]
    local = Path(curated.out)
    pd.testing.assert_frame_equal(table, pd.read_parquet(local / "clips.parquet"))
    here = {str(f.relative_to(local)): f.read_bytes() for f in local.rglob("*") if f.is_file()}
    assert min(len(v) for k, v in here.items() if k.startswith("shards/")) > 20_000  # cut mid-body
    there = {k.removeprefix("outage/"): v for k, v in listing(s3, "outage/").items()}
    lost = sum(there.get(k) != v for k, v in here.items())
    report("S3 endpoint away 3 s mid shard PUT (curation)", "retried, run completed", lost)
    assert lost == 0 and there.keys() == here.keys()


def test_dvc_push_through_an_s3_outage(s3: S3Endpoint, outage, tmp_path: Path) -> None:
    """`dvc push` meets the endpoint going away mid-upload for 3 s: DVC retries, or stops with an
    error naming the failed upload; pushing again completes. Objects are content-addressed, so a
    partial one would not hash to its name: every object on the remote does."""

    proxy = outage(s3.url)
    repo, data = tmp_path / "repo", tmp_path / "repo" / "data"
    data.mkdir(parents=True)
    for i in range(6):
        (data / f"part{i}.bin").write_bytes(hashlib.sha256(str(i).encode()).digest() * 4096)  # 128 KB
    run_cmd(["git", "init", "-q"], {}, cwd=repo)
    dvc = [sys.executable, "-m", "dvc"]
    run_cmd([*dvc, "init", "-q"], s3.env, cwd=repo)
    configure_dvc_remote(repo, replace(s3, url=proxy.url), prefix="dvc-outage", default=True)
    run_cmd([*dvc, "add", "-q", "data"], s3.env, cwd=repo)
    proxy.arm(f"PUT /{s3.bucket}/dvc-outage/files/md5/".encode(), down_for=3.0, forward=40_000)
    first = subprocess.run(
        [*dvc, "push"], cwd=repo, env={**os.environ, **s3.env}, capture_output=True, text=True
    )
    assert proxy.cuts, "the outage did not happen"
    if first.returncode != 0:  # a clear error: what failed to upload, and DVC's advice
        assert "failed to push" in (first.stdout + first.stderr).lower(), first.stdout + first.stderr
        time.sleep(3)
        run_cmd([*dvc, "push"], s3.env, cwd=repo)
    status = run_cmd([*dvc, "status", "--cloud"], s3.env, cwd=repo)
    assert "up to date" in status.lower() or "in sync" in status.lower(), status
    remote = listing(s3, "dvc-outage/")
    cache = {f for f in (repo / ".dvc" / "cache" / "files" / "md5").rglob("*") if f.is_file()}
    names = {"/".join(f.parts[-2:]) for f in cache}
    lost = len(names - {k.removeprefix("dvc-outage/files/md5/") for k in remote})
    corrupt = [
        k
        for k, v in remote.items()
        if not k.endswith(".dir") and hashlib.md5(v).hexdigest() != "".join(k.split("/")[-2:])
    ]
    outcome = "retried, push completed" if first.returncode == 0 else "clear error, second push completed"
    report("S3 endpoint away 3 s mid upload (dvc push)", outcome, lost + len(corrupt))
    assert lost == 0 and corrupt == []


def test_mlflow_artifacts_through_an_s3_outage(s3: S3Endpoint, outage, tmp_path: Path) -> None:
    """The MLflow server stores artifacts in S3; the endpoint goes away mid-upload for 3 s. The server
    retries (the stack gives it botocore's standard retries), or the client retries the server's
    error; the artifact ends up whole."""
    import mlflow

    proxy = outage(s3.url)
    behind = replace(
        s3,
        url=proxy.url,
        env={**s3.env, "AWS_ENDPOINT_URL_S3": proxy.url, "MLFLOW_S3_ENDPOINT_URL": proxy.url},
    )
    server = start_mlflow(tmp_path, behind, prefix="mlflow-outage")
    try:
        body = hashlib.sha256(b"artifact").digest() * 16384  # 512 KB
        (tmp_path / "weights.bin").write_bytes(body)
        mlflow.set_tracking_uri(server.url)
        mlflow.set_experiment("faults")
        with mlflow.start_run() as run:
            proxy.arm(f"PUT /{s3.bucket}/mlflow-outage/".encode(), down_for=3.0, forward=100_000)
            mlflow.log_artifact(str(tmp_path / "weights.bin"))
        assert proxy.cuts, "the outage did not happen"
        stored = listing(s3, "mlflow-outage/")
        got = [v for k, v in stored.items() if k.endswith(f"{run.info.run_id}/artifacts/weights.bin")]
        lost = int(got != [body])
        report("S3 endpoint away 3 s mid upload (MLflow artifact)", "retried, artifact whole", lost)
        assert lost == 0
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        server.stop()


def test_training_goes_on_while_mlflow_is_away(
    tiny_params,
    mlflow_server: Service,
    outage,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The tracking server becomes unreachable at the stage's first metric and stays away 5 s. The
    stage keeps training meanwhile (loss points are stamped inside the outage), and once the server
    is back its run holds every step's loss and every resume point, and is FINISHED. The links an
    earlier run, killed before it sent its points, left beside the point are gone too."""
    import mlflow

    from svd.steps.train import train

    proxy = outage(mlflow_server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the recorder's retries, not MLflow's
    monkeypatch.chdir(tmp_path)
    steps, every = 40, 10
    image = tiny_params.train.image.model_copy(
        update={"out": tmp_path / "image", "autoencoder_steps": 0, "steps": steps, "checkpoint_every": every}
    )
    p = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"image": image})})
    stale = tmp_path / f"{TMP_PREFIX}record-image.resume-0badf00d"
    stale.mkdir()
    (stale / "image.resume").write_bytes(b"a point a killed run never sent")
    proxy.arm(b"train_image/loss", down_for=5.0)
    t0 = time.time()
    train(p, "image")
    assert not list(tmp_path.glob(f"{TMP_PREFIX}*")), list(tmp_path.glob(f"{TMP_PREFIX}*"))
    assert len(proxy.cuts) == 1, "the outage did not happen"
    client = mlflow.MlflowClient(mlflow_server.url)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("svd/train-image").experiment_id],
        filter_string=f"attributes.run_name = 'train-image' and attributes.start_time >= {int(t0 * 1000)}",
    )
    history = client.get_metric_history(run.info.run_id, "train_image/loss")
    away = (proxy.cuts[0] * 1000, (proxy.cuts[0] + 5.0) * 1000)
    assert any(away[0] <= m.timestamp <= away[1] for m in history[1:]), "training waited for the server"
    points = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
        output_format="list",
    )
    assert "a record was not sent" in caplog.text  # the recorder retried what the outage cut off
    lost = (steps - len({m.step for m in history})) + max(0, steps // every - 1 - len(points))
    report("MLflow server away 5 s mid-stage (training)", f"trained on, run {run.info.status}", lost)
    assert lost == 0 and run.info.status == "FINISHED"
    assert sorted(m.step for m in history) == list(range(steps))
    assert all(m.status == "READY" for m in points)


def test_killed_flow_runs_are_crashed_and_run_again_resume(
    tiny_params, prefect_server: Service, tmp_path: Path
) -> None:
    """A stage's flow run on a process worker is killed twice, each time after a resume point. First
    its process alone (SIGKILL: an OOM kill), which the worker reports: the run is Crashed. Then the
    worker with it (the node is lost), which nobody is left to report: infra/automations.yaml's
    automation marks the run Crashed once its heartbeats stop. Each time the stage, started again,
    trains on from the last point: each MLflow run logs losses from the point's step on, and the
    stage ends with all its steps."""
    import mlflow
    import yaml
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import StateType

    from infra.project import scratch_project
    from infra.stack import AUTOMATIONS, create_automations
    from svd.train.resume import read_point

    steps = 30  # killed at points 5 and 10, or a point later each: 10 steps of margin at least
    stage = {"out": "models/image", "autoencoder_steps": 0, "steps": steps, "checkpoint_every": 5}
    paths = {"curate": {"out": str(tiny_params.curate.out)}, "filter": {"out": str(tiny_params.filter.out)}}
    proj, env = scratch_project(tmp_path / "door", paths | {"train": {"image": stage}}, prefect_server.env)
    # Prefect's shortest heartbeat, and a window of two beats for it: a beat may come a whole beat
    # late before a live run is taken for lost (the file's 450 s is 2.5 beats of 180 s)
    run_env = {k: env[k] for k in ("PATH", "PYTHONPATH", "MLFLOW_TRACKING_URI")}
    run_env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = "30"
    (lost_runs,) = yaml.safe_load(AUTOMATIONS.read_text())["automations"]
    lost_runs["trigger"]["within"] = 60
    workers = [start_worker(prefect_server, "faults", tmp_path, env=run_env, poll_seconds=1)]
    point = proj / "models" / "image.resume"

    def wait(until: Callable[[], object], what: str, seconds: float = 240) -> None:
        deadline = time.monotonic() + seconds
        while not until():
            assert time.monotonic() < deadline, f"{what}: not within {seconds} s\n{workers[-1].log_tail()}"
            time.sleep(0.2)

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}), get_client(sync_client=True) as c:

        def state(flow_run: FlowRun) -> StateType | None:
            s = c.read_flow_run(flow_run.id).state
            return s.type if s else None

        def after_point(step: int, run: FlowRun) -> None:
            wait(lambda: point.exists() and read_point(point)["step"] > step, f"a resume point past {step}")
            assert state(run) == StateType.RUNNING, state(run)

        try:
            create_automations(prefect_server, [lost_runs])
            create_automations(prefect_server, [lost_runs])  # as a restarted stack: updated, not doubled
            assert len(c.read_automations_by_name(lost_runs["name"])) == 1
            deploy = ["--no-prompt", "deploy", "flows/train.py:train", "-n", "image-faults", "-p", "faults"]
            deploy += ["--params", '{"stage": "image"}']
            run_cmd([sys.executable, "-m", "prefect", *deploy], env, cwd=proj)
            # 1. the run's process killed: the worker, still there, reports it
            first = run_deployment("train/image-faults", timeout=0)
            after_point(0, first)
            pids = processes_with_env("PREFECT__FLOW_RUN_ID", str(first.id))
            assert pids, "no process runs the flow run"
            for pid in pids:
                os.kill(pid, 9)
            wait(lambda: state(first) == StateType.CRASHED, "the worker marking the run Crashed", 90)
            resumed = [read_point(point)["step"]]
            # Run again (the UI's Run, or the pipeline started again), not Retry on the crashed run:
            # Prefect's worker reports the killed process a second time some seconds after the
            # runner did, and that report marks a retry of the same flow run, started meanwhile,
            # Crashed too (Prefect 3.8)
            second = run_deployment("train/image-faults", timeout=0)
            # 2. the node lost: the worker and the run's process killed at once
            after_point(resumed[0], second)
            t0 = time.monotonic()
            running = processes_with_env("PREFECT__FLOW_RUN_ID", str(second.id))
            assert running, "no process runs the flow run"
            node = {*processes_with_env(MARKER, workers[0].marker), workers[0].proc.pid, *running}
            for sig in (signal.SIGSTOP, signal.SIGKILL):  # all stopped first: none can report the rest
                for pid in node:
                    with contextlib.suppress(ProcessLookupError):  # gone already
                        os.kill(pid, sig)
            wait(lambda: state(second) == StateType.CRASHED, "the automation marking the run Crashed", 150)
            crashed = c.read_flow_run(second.id).state
            assert crashed and crashed.message == lost_runs["actions"][0]["message"], crashed  # by it
            print(f"lost run marked Crashed {time.monotonic() - t0:.0f} s after its node was lost")
            resumed.append(read_point(point)["step"])
            workers.append(start_worker(prefect_server, "faults", tmp_path, env=run_env, poll_seconds=1))
            third = run_deployment("train/image-faults", timeout=0)
            done = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED)
            wait(lambda: state(third) in done, "the run started again")
            assert state(third) == StateType.COMPLETED, workers[-1].log_tail()
        finally:
            try:  # first: left on the session's server, it would crash later tests' runs
                for automation in c.read_automations_by_name(lost_runs["name"]):
                    c.delete_automation(automation.id)
            finally:
                for worker in workers:
                    worker.stop()
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    try:
        runs = mlflow.search_runs(search_all_experiments=True, output_format="list", order_by=["start_time"])
        client = mlflow.MlflowClient()
        histories = [client.get_metric_history(r.info.run_id, "train_image/loss") for r in runs]
        logged = [[m.step for m in history] for history in histories]
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    assert len(logged) == 3, logged
    for new, start in zip(logged[1:], resumed, strict=True):  # on from the point, not step 0
        assert min(new) == start, (start, new)
    assert sorted(logged[2]) == list(range(resumed[1], steps)), (resumed, logged[2])
    assert not point.exists() and (proj / "models" / "image" / "training.json").exists()
    # a step is lost to a kill when it lies before the point the next run resumed at and no run
    # up to the kill logged it: no later run goes back to it
    ends = [0, *resumed, steps]
    lost = [len(set(range(ends[i], ends[i + 1])) - set().union(*logged[: i + 1])) for i in range(3)]
    report("flow run's process SIGKILLed mid-stage", "Crashed by the worker; run again, resumed", lost[0])
    report(
        "worker and flow run SIGKILLed (node lost)", "Crashed by the automation; run again, resumed", lost[1]
    )
    assert lost == [0, 0, 0], lost


KILLED_OWNER = """
import sys, time
from pathlib import Path
from infra.stack import start_s3
print(start_s3(Path(sys.argv[1])).marker, flush=True)
time.sleep(600)
"""


def test_servers_die_with_an_owner_killed_by_sigkill(tmp_path: Path) -> None:
    """A `make test` or `make serve` killed with SIGKILL or by a timeout cannot stop its servers
    itself: its reaper stops them, and then exits."""
    import signal

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    owner = subprocess.Popen(
        [sys.executable, "-c", KILLED_OWNER, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    try:
        marker = owner.stdout.readline().strip()
        assert processes_with_env(MARKER, marker), "the S3 server did not start"
        reaper = [
            p for p in processes_with_env("SVD_TEST_SESSION") if argv(p)[1:3] == [REAPER, str(owner.pid)]
        ]
        assert len(reaper) == 1
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 20
    while (processes_with_env(MARKER, marker) or alive(reaper[0])) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = len(processes_with_env(MARKER, marker))
    report("owner of the servers SIGKILLed (make test, make serve)", "its reaper stopped them", left)
    assert left == 0
    assert not alive(reaper[0])


def argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def alive(pid: int) -> bool:
    return start_time(pid) is not None

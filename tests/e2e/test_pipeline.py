"""The whole loop on the smoke profile, through both doors: the Prefect pipeline deployment, started
with settings from its run form, and `dvc repro` on the params that run recorded.

Each door runs in a fresh project (a git + DVC repo holding this checkout's code and dvc.yaml, with
params.yaml overridden by tests/e2e/smoke.yaml), against a real Prefect server and a process
worker. The test checks what a user checks afterwards: the two doors give the same DVC hashes,
`dvc status` is clean, the registry has the model with its aliases, every MLflow run carries
exactly the params and inputs its dvc.yaml stage declares, and samples are logged as videos. The
commands the README gives for after `make demo` run as written, in a shell with no venv activated:
`svd generate` with the champion, `dvc repro` (the second door), MLflow's scoring server, the
arena, the threshold ablation, and `make demo` itself a second time, which runs no step.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import mlflow
import pytest
import yaml

from infra.project import outs, readme_commands, scratch_project, user_shell
from infra.stack import free_port, start_warm, start_worker
from svd.params import load, merge
from svd.tracking import declared, declared_params

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The smoke profile with half the steps or fewer: nothing here checks how well a stage learns
# (test_training does), only that its validation loss falls, and each door trains all three.
SHORT = {
    "image": {"autoencoder_steps": 10, "steps": 20},
    "video": {"steps": 10, "checkpoint_every": 5, "sample_every": 5},
}
SMOKE = merge(yaml.safe_load((Path(__file__).parent / "smoke.yaml").read_text()), {"train": SHORT})
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]  # the steps, named as everywhere


def sh(cmd: list[str], cwd: Path, env: dict, timeout: int = 900, merged: bool = False) -> str:
    """`cmd`'s stdout, with its stderr when `merged` (Prefect logs a flow's lines there)."""
    err = subprocess.STDOUT if merged else subprocess.PIPE
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout)
    assert r.returncode == 0, (
        f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-5000:]}\n{(r.stderr or '')[-6000:]}"
    )
    return r.stdout


@pytest.fixture
def projects(tmp_path: Path, prefect_server) -> list[tuple[Path, dict]]:
    """Two projects, both copied before either runs (an edit to the checkout mid-test changes
    neither)."""
    base = {**os.environ, **prefect_server.env}
    return [scratch_project(tmp_path / door, SMOKE, base) for door in ("prefect", "dvc")]


# What the README says to run after `make demo`; the test runs each as written (the scoring server
# on a free port instead of 5001). `make demo` and `make test` themselves are what CI runs.
AFTER_DEMO = readme_commands("svd generate")
assert len(AFTER_DEMO) == 3, f"the README changed its after-demo block: {AFTER_DEMO}"
GENERATE, REPRO, SERVE = AFTER_DEMO
# The README's arena, run on the two versions the pipeline's runs register (the voting server on a
# free port instead of 8765, the votes cast as its page's form posts them).
ARENA = readme_commands("svd arena serve")
assert len(ARENA) == 3, f"the README changed its arena block: {ARENA}"
DEMO = readme_commands("make demo")[0]
(ABLATE,) = readme_commands("python -m flows ablate")


def check_outcome(proj: Path, env: dict) -> None:
    # 1. DVC agrees with what was produced, and the data versions reach the remote
    status = sh([str(BIN / "dvc"), "status"], proj, env)
    assert "up to date" in status, status
    sh([str(BIN / "dvc"), "push", "-q"], proj, env)

    # 2. Every stage learned: validation loss at fixed sigmas fell
    params = yaml.safe_load((proj / "params.yaml").read_text())
    for stage in ("image", "video", "finetune"):
        r = json.loads((proj / params["train"][stage]["out"] / "training.json").read_text())["result"]
        assert r["val_loss_after"] < r["val_loss_before"], (stage, r)

    # 3. The registry holds the model under its aliases
    reg = json.loads((proj / "reports" / "registration.json").read_text())
    assert reg["aliases"] == ["candidate", "champion"], reg
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(reg["name"], "champion").version) == reg["version"]
    # its model card: data hashes, params, metrics, the promotion, the evaluation's samples
    card = client.get_model_version(reg["name"], reg["version"]).description
    for part in (
        "## Training data and settings",
        "`md5 data/subsets/",
        "`models/finetune`",
        "`train.finetune.lr`",
        "val_loss: ",
        "Gates: passed",
    ):
        assert part in card, (part, card)
    assert "/artifacts/samples" in card and "an image in (image-to-video)" in card

    # 4. Lineage: git commit, DVC input hashes and the Prefect flow run on every run
    lock = yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert sorted(r.info.run_name for r in runs) == sorted(STAGES)
    params_now = load(proj / "params.yaml")
    for run in runs:
        tags = run.data.tags
        # one model-training experiment per step; a description; the flow as source; system metrics
        experiment = client.get_experiment(run.info.experiment_id)
        assert experiment.name == f"svd/{run.info.run_name}", experiment.name
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development", experiment.tags
        assert tags["mlflow.note.content"] and tags["mlflow.source.name"].startswith("flows/"), tags
        assert len(tags["git.commit"]) >= 40, tags
        assert tags["prefect.flow_run_id"] not in ("", "none"), (run.info.run_name, tags)
        assert tags["prefect.flow_run_url"].endswith(f"/flow-run/{tags['prefect.flow_run_id']}"), tags
        # exactly what its dvc.yaml stage declares: its params, and its inputs with their DVC hashes
        what = declared(run.info.run_name, params_now)
        assert set(run.data.params) == set(declared_params(params_now, what.params)), run.info.run_name
        hashed = {k.removeprefix("dvc.md5.") for k in tags if k.startswith("dvc.md5.")}
        assert hashed == set(what.deps), (run.info.run_name, tags)
        data = {d for d in hashed if not d.startswith("svd/")}
        datasets = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
        assert datasets == {k: tags[f"dvc.md5.{k}"][:36] for k in data}, (run.info.run_name, datasets)

    # 5. A training run as a user inspects it: a loss point per step, system metrics, a sample video
    # every sample_every steps, and its resume point as a LoggedModel
    video = next(r for r in runs if r.info.run_name == "train-video")
    steps = params["train"]["video"]["steps"]
    assert len(client.get_metric_history(video.info.run_id, "train_video/loss")) == steps
    image = next(r for r in runs if r.info.run_name == "train-image")
    assert "system/cpu_utilization_percentage" in image.data.metrics, sorted(image.data.metrics)
    samples = [a.path for a in client.list_artifacts(video.info.run_id, "samples")]
    assert samples == ["samples/video-step000005.mp4", "samples/video-step000010.mp4"], samples
    checkpoints = mlflow.search_logged_models(
        experiment_ids=[video.info.experiment_id],
        filter_string=f"source_run_id = '{video.info.run_id}'",
        output_format="list",
    )
    assert [(m.model_type, m.tags["step"]) for m in checkpoints] == [("checkpoint", "5")], checkpoints
    assert [a.path for a in client.list_logged_model_artifacts(checkpoints[0].model_id)] == ["video.resume"]

    # what a user looks at: the loss curve of each stage, and what the filters dropped with the scores'
    # histograms and thresholds, and the data checks' results as GX Data Docs
    for r in runs:
        report = {a.path for a in client.list_artifacts(r.info.run_id, "report")}
        if r.info.run_name.startswith("train-"):
            assert report == {"report/loss.png", "report/loss.json"}, (r.info.run_name, report)
        if r.info.run_name == "filter":
            assert report == {
                "report/rules.json",
                "report/scores.png",
                "report/dropped.png",
                "report/data-docs",
            }
            docs = {a.path for a in client.list_artifacts(r.info.run_id, "report/data-docs")}
            assert "report/data-docs/index.html" in docs, docs

    finetune = next(r for r in runs if r.info.run_name == "train-finetune")
    assert finetune.data.tags["dvc.md5.models/video"] == next(
        o["md5"] for o in lock["train-video"]["outs"] if o["path"] == "models/video"
    )

    # 6. Evaluation samples are logged as videos
    evaluation = next(r for r in runs if r.info.run_name == "evaluate")
    samples = [a.path for a in client.list_artifacts(evaluation.info.run_id, "samples")]
    assert {Path(a).suffix for a in samples} == {".mp4", ".png"}, samples  # videos and their first frames
    metrics = json.loads((proj / "reports" / "eval" / "metrics.json").read_text())
    assert "motion_spearman" in metrics and metrics["temporal_warping_error"] >= 0
    assert 0 < metrics["first_frame_ssim"] <= 1 and metrics["first_frame_psnr"] > 0  # image-to-video
    assert metrics["fvd"] is None and "not computed" in metrics["fvd_note"]  # no I3D configured
    assert {"temporal_warping_error", "first_frame_ssim"} <= set(evaluation.data.metrics)


# What a user sets in the pipeline's run form: a looser HQ motion cut, a shorter Stage III, and
# Stage III on a work pool (here a process pool on this machine, standing in for the GPU pool).
FORM = {
    "filter": {"hq": {"motion_score": {"drop_lowest": 0.4}}},
    "train": {"finetune": {"steps": 6}},
    "pools": {"finetune": "standin"},
}
SETS = ["filter.hq.motion_score.drop_lowest=0.4", "train.finetune.steps=6", 'pools.finetune="standin"']


# Three pipeline runs and two `dvc repro`: 570 s alone on a 2-core box (of it, 120 s for the first
# pipeline run, 100 s for the dvc door and 62 s for the third run).
@pytest.mark.timeout(1800)
def test_a_run_from_the_prefect_form_is_reproduced_by_dvc(projects, prefect_server, tmp_path):
    """The two doors. A user deploys infra/prefect.yaml and starts the pipeline from its run form with
    two settings changed; a process worker runs it. A second run with nothing changed runs no step.
    The settings were written into params.yaml, so `dvc repro` on that params file, in another
    workspace, gives every output the same DVC hash. A third run, with one curation threshold
    loosened in the form, runs only the steps downstream of it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.train import TRAINED

    def steps_of(run: FlowRun) -> FlowRunFilter:
        """A pipeline run's step runs, on the pool or not (the session's server holds other tests' runs)."""
        return FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))

    (proj, env), (twin, twin_env) = projects
    run_env = {k: env[k] for k in ("PATH", "PYTHONPATH", "MLFLOW_TRACKING_URI")}
    worker = start_worker(prefect_server, "local", tmp_path, env=run_env, poll_seconds=1)
    try:
        deploy = ["--no-prompt", "deploy", "--prefect-file", "infra/prefect.yaml", "--name", "pipeline"]
        sh([sys.executable, "-m", "prefect", *deploy], proj, env)
        standin = [
            "--no-prompt",
            "deploy",
            "flows/train.py:train",
            "-n",
            "train-finetune-standin",
            "-p",
            "local",
        ]
        sh([sys.executable, "-m", "prefect", *standin, "--params", '{"stage": "finetune"}'], proj, env)
        with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}):
            run = run_deployment("pipeline/pipeline", parameters=FORM, timeout=900, poll_interval=5)
            assert run.state is not None and run.state.is_completed(), (run.state, worker.log_tail())
            with get_client(sync_client=True) as c:
                mine = [run, *c.read_flow_runs(flow_run_filter=steps_of(run))]
                names = [r.name for r in mine]
                of_mine = ArtifactFilterFlowRunId(any_=[r.id for r in mine])
                # Stage III ran through its pool's deployment, as a subflow of the pipeline run
                (pooled,) = c.read_flow_runs(
                    deployment_filter=DeploymentFilter(
                        name=DeploymentFilterName(any_=["train-finetune-standin"])
                    )
                )
                assert (
                    pooled.name.startswith("train-finetune-") and pooled.state and pooled.state.is_completed()
                )
                assert pooled.parent_task_run_id is not None
                # so its completion hook left the model to the pipeline: no event for the automations
                sent = c.read_events(
                    EventFilter(
                        event=EventNameFilter(name=[TRAINED]),
                        resource=EventResourceFilter(id=[f"prefect.flow-run.{pooled.id}"]),
                    ),
                    limit=1,  # the count is what matters; the server takes at most 50
                )
                assert sent.total == 0, sent.events
                # each stage's progress bar on its run page went to 100%
                keys = [f"train-{s}-progress" for s in ("image", "video", "finetune")]
                bars = c.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys), flow_run_id=of_mine)
                )
                assert {(a.key, a.type, float(a.data)) for a in bars} == {
                    (k, "progress", 100.0) for k in keys
                }  # type: ignore[arg-type]
                (said,) = c.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        key=ArtifactFilterKey(any_=["params-set"]), flow_run_id=of_mine
                    )
                )
                assert all(f"-S '{s}'" in str(said.data) for s in SETS), said.data
                (samples,) = c.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        key=ArtifactFilterKey(any_=["evaluation-samples"]), flow_run_id=of_mine
                    )
                )
                assert "_m000.mp4 |" in str(samples.data), samples.data  # each sample, bucket, motion
            # nothing changed: the second run asks DVC, as `dvc repro` would, and runs no step
            t0 = time.monotonic()
            again = run_deployment("pipeline/pipeline", timeout=300, poll_interval=1)
            print(f"second pipeline run, nothing changed: {time.monotonic() - t0:.1f} s")
            assert again.state is not None and again.state.is_completed(), (again.state, worker.log_tail())
            with get_client(sync_client=True) as c:
                assert not c.read_flow_runs(flow_run_filter=steps_of(again))

        assert re.fullmatch(r"pipeline-[0-9a-f]{4}", run.name), run.name
        named = {n.rsplit("-", 1)[0] for n in names if re.fullmatch(r"[a-z-]+-[0-9a-f]{4}", n)}
        assert set(STAGES) <= named, names
        p = load(proj / "params.yaml")
        assert (p.filter.hq["motion_score"].drop_lowest, p.train.finetune.steps) == (0.4, 6)
        check_outcome(proj, env)
        # the README: a video from the champion and a frame the evaluation wrote
        assert GENERATE.startswith(".venv/bin/svd generate --model models:/svd-tiny@champion"), GENERATE
        sh(["bash", "-c", GENERATE], proj, user_shell(env))
        with av.open(str(proj / "video.mp4")) as f:
            assert sum(1 for _ in f.decode(video=0)) == 8  # the CLI's default
        # the summary `make demo` ends with
        summary = sh([str(proj / ".venv" / "bin" / "svd"), "report"], proj, user_shell(env))
        for line in ("  lvd  ", "  hq  ", "  finetune  final loss ", "  first_frame_ssim  "):
            assert line in summary, (line, summary)
        assert "Registered: svd-tiny version 1, aliases candidate, champion (gates: passed)" in summary, (
            summary
        )
        assert "MLflow UI: .venv/bin/mlflow ui --backend-store-uri sqlite:///" in summary, summary
        with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}):
            assert_no_secret(proj, env, [worker.log, prefect_server.log])
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        for r in mlflow.search_runs(search_all_experiments=True, output_format="list"):  # none from the 2nd
            assert r.data.tags["prefect.root_flow_run_id"] == str(run.id), r.info.run_name
        first = outs(proj)
        shutil.copy(proj / "params.yaml", twin / "params.yaml")  # for the other door, below
        shutil.copytree(proj / "reports/eval/samples", proj / "arena/svd-tiny-1")  # as the README keeps them

        # a user loosens one curation threshold in the form: only the steps downstream of it run
        with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}):
            looser = {"filter": {"hq": {"motion_score": {"drop_lowest": 0.3}}}}
            third = run_deployment("pipeline/pipeline", parameters=looser, timeout=900, poll_interval=2)
            assert third.state is not None and third.state.is_completed(), (third.state, worker.log_tail())
            with get_client(sync_client=True) as c:
                steps = c.read_flow_runs(flow_run_filter=steps_of(third))
                (summary,) = c.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        key=ArtifactFilterKey(any_=["pipeline-summary"]),
                        flow_run_id=ArtifactFilterFlowRunId(any_=[third.id]),
                    )
                )
        downstream = ["filter", "latents-finetune", "train-finetune", "evaluate", "register"]
        assert str(summary.data).startswith(f"Ran {', '.join(downstream)}."), summary.data
        assert sorted(r.name.rsplit("-", 1)[0] for r in steps) == sorted(downstream), steps
        assert "up to date" in sh([str(BIN / "dvc"), "status"], proj, env)
        vote_in_the_arena(proj, env)
        ablate_as_written(proj, env)
    finally:
        worker.stop()

    # the other door, on the params the first run recorded, as the README runs it, with the warm
    # process that `make serve` starts: every stage forks from it (the cold way is the one of
    # test_concurrency.py's first workspace)
    assert REPRO.startswith("source .venv/bin/activate && dvc repro "), REPRO
    warm = start_warm(twin, prefect_server, tmp_path / "warm", twin_env)
    try:
        repro = sh(["bash", "-c", REPRO], twin, user_shell(twin_env))
        again_dvc = sh([str(BIN / "dvc"), "repro"], twin, twin_env)  # nothing changed: nothing runs
    finally:
        warm.stop()
    assert "Running stage" not in again_dvc and "didn't change" in again_dvc, again_dvc
    forked = re.findall(r"runs `python -m flows (\w+)", warm.log.read_text())
    assert len(forked) == repro.count("Running stage") >= 10, (forked, warm.log_tail())
    check_outcome(twin, twin_env)
    assert outs(twin) == first

    # `make demo` a second time, as written: every step up to date, none run, and the summary
    assert DEMO.startswith("make demo "), DEMO
    t0 = time.monotonic()
    demo = sh(["bash", "-c", DEMO], twin, user_shell(twin_env), merged=True)
    print(f"`make demo` a second time: {time.monotonic() - t0:.1f} s")
    assert [f"{name}: up to date, not run" in demo for name in STAGES] == [True] * len(STAGES), demo
    assert "Registered: svd-tiny version 1, aliases candidate, champion (gates: passed)" in demo, demo
    assert outs(twin) == first

    serve_champion(proj, env)


def assert_no_secret(proj: Path, env: dict, logs: list[Path]) -> None:
    """No credential reaches a log, an MLflow run or model version, a Prefect artifact, log or run
    parameter, a report, a table or any other file of the project. The session's credentials are
    fake and recognisable (tests/conftest.py), and the flows ran with them in their environment."""
    import pandas as pd
    from prefect.client.orchestration import get_client

    needle = "svd-fake-"
    assert os.environ["AWS_SECRET_ACCESS_KEY"].startswith(needle)
    assert env["AWS_SECRET_ACCESS_KEY"].startswith(needle)  # what the flows ran with
    texts: dict[str, str] = {}
    for f in [*proj.rglob("*"), *logs]:  # MLflow's SQLite store and artifacts lie in the project too
        if f.is_file() and ".git" not in f.parts:
            texts[str(f)] = f.read_bytes().decode("latin-1")
            if f.suffix == ".parquet":  # compressed pages could hide a string: read the values too
                texts[f"{f} (values)"] = pd.read_parquet(f).to_csv()
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    for r in mlflow.search_runs(search_all_experiments=True, output_format="list"):
        texts[f"MLflow run {r.info.run_name}"] = json.dumps([r.data.params, r.data.tags])
    for v in client.search_model_versions():
        texts[f"model version {v.name}/{v.version}"] = json.dumps([v.description, v.tags])
    with get_client(sync_client=True) as c:

        def every(read: Callable[..., list]) -> list:  # the API answers a page at a time
            out: list = []
            while page := read(offset=len(out)):
                out += page
            return out

        texts["Prefect artifacts"] = json.dumps([str(a.data) for a in every(c.read_artifacts)])
        texts["Prefect flow runs"] = json.dumps([r.parameters for r in every(c.read_flow_runs)], default=str)
        texts["Prefect logs"] = "\n".join(log.message for log in every(c.read_logs))
    leaked = sorted(where for where, text in texts.items() if needle in text)
    assert not leaked, leaked
    # the scan saw what it claims: the stores it read were not empty
    assert texts["Prefect logs"] and texts["Prefect artifacts"] != "[]" and len(texts) > 50
    assert sum(k.startswith("MLflow run ") for k in texts) >= 8


@contextmanager
def in_background(cmd: str, proj: Path, env: dict) -> Iterator[Callable[[], str]]:
    """`cmd` in a user's shell in `proj` while the block runs, then its whole process group stopped
    (a server the command started included). Yields `alive`: asserts the command still runs and
    returns its output so far (a file, so a chatty server never blocks on a full pipe)."""
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(
            ["bash", "-c", cmd],
            cwd=proj,
            env=user_shell(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

        def alive() -> str:
            log.seek(0)
            output = log.read()
            assert server.poll() is None, f"{cmd!r} exited with {server.returncode}:\n{output}"
            return output

        try:
            yield alive
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def vote_in_the_arena(proj: Path, env: dict, votes: int = 3) -> None:
    """The README's arena block on versions 1 and 2 of the model: a copy of the samples, the voting
    server (its form posted as a browser posts it; tests/integration/test_arena.py clicks it in
    Chromium), and the results, logged as tags of both versions."""
    from svd.evaluate.arena import AXES

    copy, serve, results = ARENA
    assert serve.startswith(".venv/bin/svd arena serve --model svd-tiny/1=arena/svd-tiny-1 "), serve
    sh(["bash", "-c", copy], proj, user_shell(env))
    port = free_port()
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    versions = {int(v.version) for v in client.search_model_versions("name = 'svd-tiny'")}  # ints here
    assert versions == {1, 2}, versions  # the first run's and the third's (a looser threshold)
    with in_background(f"{serve} --port {port}", proj, env) as alive:
        deadline = time.monotonic() + 60
        for _ in range(votes):
            while True:
                try:
                    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert time.monotonic() < deadline, alive()
                    alive()
                    time.sleep(0.5)
            pair = re.search(r"name=pair value=(\d+)", page)
            assert pair is not None, page
            form = {"pair": pair[1]} | dict.fromkeys(AXES, "left")
            body = "&".join(f"{k}={v}" for k, v in form.items()).encode()
            urllib.request.urlopen(f"http://127.0.0.1:{port}/vote", body, timeout=10)  # 303 to the next pair
    printed = sh(["bash", "-c", results], proj, user_shell(env))
    assert "svd-tiny/1" in printed and "svd-tiny/2" in printed, printed
    assert printed.count(f"  {votes} votes") == 2 * len(AXES), printed  # each model, on each axis
    for version in ("1", "2"):
        tags = client.get_model_version("svd-tiny", version).tags
        assert {f"arena.elo_{axis}" for axis in AXES} <= set(tags), (version, tags)


def ablate_as_written(proj: Path, env: dict) -> None:
    """The README's ablation line, on the smoke profile's `ablate:` (one cut, two steps): the
    unfiltered baseline and one arm per scored annotation, identical small models on one held-out
    set, ranked, under one MLflow parent run; a latent store of the ablation's own, filled by the
    first arm and read by the others, while the pipeline's outputs (its latent store included) stay
    as DVC recorded them."""
    assert ABLATE.startswith(".venv/bin/python -m flows ablate"), ABLATE
    sh(["bash", "-c", ABLATE], proj, user_shell(env))
    import pandas as pd

    out = proj / "reports" / "ablation"
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["arm"]) == ["motion_score-0.5", "none", "text_area-0.5"], results  # no CLIP
    assert results["val_loss_at_start"].nunique() == 1  # one starting model, one held-out set, one motion map
    assert results["val_loss"].nunique() > 1 and results["val_clips"].nunique() == 1  # the data differed
    lvd = pd.read_parquet(proj / "data" / "subsets" / "lvd.parquet")
    by_arm = results.set_index("arm")
    assert by_arm.loc["none", "train_clips"] == (lvd["split"] == "train").sum()
    assert by_arm.loc["motion_score-0.5", "train_clips"] < by_arm.loc["none", "train_clips"]
    assert by_arm.loc["none", "vs_no_filter"] == 0 and (out / "ablation.png").stat().st_size > 0
    assert results["rank"].tolist() == [1, 2, 3] and results["val_loss"].is_monotonic_increasing

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["svd/ablate"], output_format="list")
    (parent,) = [r for r in runs if r.info.run_name == "ablate"]
    children = {
        r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(children) == set(results["arm"]) and "aesthetic_score" in parent.data.params["not_scored"]
    computed = {n: r.data.metrics["latents_computed"] for n, r in children.items()}
    assert computed["none"] > 0 and sum(v for n, v in computed.items() if n != "none") == 0  # stored once
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "ablation")}
    assert {"ablation/results.csv", "ablation/ablation.png"} <= artifacts
    assert "up to date" in sh([str(BIN / "dvc"), "status"], proj, env)  # no DVC output touched


def serve_champion(proj: Path, env: dict) -> None:
    """The README's scoring-server command, from a shell with no venv activated."""
    port = free_port()
    assert SERVE.count(" -p 5001") == 1 and "mlflow models serve -m models:/svd-tiny@champion" in SERVE, SERVE
    with in_background(SERVE.replace(" -p 5001", f" -p {port}"), proj, env) as alive:
        image = sorted((proj / "reports" / "eval" / "samples").glob("*.png"))[0]
        record = {"image": base64.b64encode(image.read_bytes()).decode(), "frames": 4, "steps": 2, "seed": 1}
        body = json.dumps({"dataframe_records": [record]}).encode()
        deadline = time.monotonic() + 120
        while True:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
                )
                answer = json.loads(urllib.request.urlopen(req, timeout=120).read())
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, alive()
                alive()
                time.sleep(1)
        with av.open(io.BytesIO(base64.b64decode(answer["predictions"][0]["video"]))) as f:
            assert sum(1 for _ in f.decode(video=0)) == 4

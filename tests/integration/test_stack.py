"""The local stack end to end: each test drives a real server the way the pipeline will."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from flows import warm
from infra.project import readme_commands, scratch_project, user_shell
from infra.stack import (
    MARKER,
    S3Endpoint,
    Service,
    StackError,
    configure_dvc_remote,
    create_work_pool,
    free_port,
    processes_with_env,
    run_cmd,
    start_service,
)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]
REPO = Path(__file__).resolve().parents[2]


def test_s3_round_trip_over_http(s3: S3Endpoint) -> None:
    client = s3.client()
    key, body = f"roundtrip/{uuid.uuid4().hex}.bin", os.urandom(4096)
    client.put_object(Bucket=s3.bucket, Key=key, Body=body)
    assert client.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == body
    listed = client.list_objects_v2(Bucket=s3.bucket, Prefix="roundtrip/")["Contents"]
    assert [o["Key"] for o in listed] == [key]
    assert s3.url.startswith("http://127.0.0.1:")


def test_mlflow_run_artifacts_land_in_s3_and_alias_resolves(
    mlflow_server: Service, s3: S3Endpoint, tmp_path: Path
) -> None:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.pyfunc import PythonModel

    class AddOne(PythonModel):
        def predict(self, context: object, model_input: pd.DataFrame, params: object = None) -> pd.DataFrame:
            return model_input + 1

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        mlflow.set_experiment(f"stack-{uuid.uuid4().hex[:8]}")
        notes = tmp_path / "notes.txt"
        notes.write_text("stage III finetune on HQ subset\n")
        name = f"svd-stack-{uuid.uuid4().hex[:8]}"
        with mlflow.start_run() as run:
            mlflow.log_params({"stage": "finetune", "lr": 3e-5})
            for step, loss in enumerate([0.9, 0.5, 0.3]):
                mlflow.log_metric("loss", loss, step=step)
            mlflow.log_artifact(str(notes), artifact_path="reports")
            info = mlflow.pyfunc.log_model(
                name="model", python_model=AddOne(), registered_model_name=name, pip_requirements=["mlflow"]
            )

        client = MlflowClient()
        got = client.get_run(run.info.run_id).data
        assert got.params == {"stage": "finetune", "lr": "3e-05"}
        assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [0.9, 0.5, 0.3]
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")

        # The server proxied the upload: the object is in the bucket, byte for byte.
        bucket = s3.client()
        keys = [o["Key"] for o in bucket.list_objects_v2(Bucket=s3.bucket, Prefix="mlflow/")["Contents"]]
        notes_key = next(k for k in keys if k.endswith(f"{run.info.run_id}/artifacts/reports/notes.txt"))
        assert bucket.get_object(Bucket=s3.bucket, Key=notes_key)["Body"].read() == notes.read_bytes()
        assert any(k.endswith("MLmodel") for k in keys)

        version = info.registered_model_version
        assert version is not None
        client.set_registered_model_alias(name, "champion", str(version))
        assert client.get_model_version_by_alias(name, "champion").version == str(version)
        loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        assert loaded.predict(pd.DataFrame({"x": [1, 2]}))["x"].tolist() == [2, 3]
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None unsets it again


def _dvc(repo: Path, *args: str, env: dict[str, str]) -> str:
    return run_cmd([sys.executable, "-m", "dvc", *args], env, cwd=repo)


def test_dvc_push_pull_through_s3_remote(s3: S3Endpoint, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    data = repo / "data" / "clips"
    data.mkdir(parents=True)
    for i in range(3):
        (data / f"clip{i}.bin").write_bytes(os.urandom(2048 + i))
    (data / "index.json").write_text(json.dumps({"clips": 3}))
    reference = tmp_path / "reference"
    shutil.copytree(data, reference)

    run_cmd(["git", "init", "-q"], {}, cwd=repo)
    _dvc(repo, "init", "-q", env=s3.env)
    prefix = f"dvc-{uuid.uuid4().hex[:8]}"
    url = configure_dvc_remote(repo, s3, name="s3store", prefix=prefix)
    _dvc(repo, "remote", "default", "--local", "s3store", env=s3.env)
    assert "endpointurl" not in (repo / ".dvc" / "config").read_text()  # only in config.local

    _dvc(repo, "add", "data/clips", env=s3.env)
    _dvc(repo, "push", env=s3.env)
    pushed = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=f"{prefix}/")["KeyCount"]
    assert pushed >= 5, f"expected 4 files + the .dir manifest under {url}, found {pushed}"

    shutil.rmtree(repo / "data" / "clips")
    shutil.rmtree(repo / ".dvc" / "cache")
    _dvc(repo, "pull", env=s3.env)
    assert sorted(p.name for p in data.iterdir()) == sorted(p.name for p in reference.iterdir())
    for f in reference.iterdir():
        assert (data / f.name).read_bytes() == f.read_bytes()


FLOW_SOURCE = """
from pathlib import Path

from prefect import flow


@flow(name="stack-smoke", persist_result=True)
def f(out: str, word: str) -> str:
    Path(out).write_text(word)
    return word.upper()
"""


def test_prefect_worker_runs_deployment_from_local_source(
    prefect_server: Service, prefect_worker: Service, tmp_path: Path
) -> None:
    from prefect import Flow
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    src = tmp_path / "src"
    src.mkdir()
    (src / "f.py").write_text(textwrap.dedent(FLOW_SOURCE))
    out = tmp_path / "out.txt"
    pool = prefect_worker.url.rsplit("/", 1)[-1]

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}):
        smoke = Flow.from_source(source=str(src), entrypoint="f.py:f")
        assert isinstance(smoke, Flow)
        smoke.deploy(name="smoke", work_pool_name=pool, print_next_steps=False)
        run = run_deployment(
            "stack-smoke/smoke", parameters={"out": str(out), "word": "svd"}, timeout=90, poll_interval=1
        )
        assert isinstance(run, FlowRun) and run.state is not None
        assert run.state.is_completed(), (run.state, prefect_worker.log_tail())
        assert run.state.result() == "SVD"
    assert out.read_text() == "svd"


def test_gpu_job_template_is_accepted_and_renders_gpu_requests(prefect_server: Service) -> None:
    from prefect.utilities.templating import apply_values

    path = REPO / "infra" / "k8s-gpu-job-template.json"
    template = json.loads(path.read_text())
    default = json.loads(
        run_cmd(
            [
                sys.executable,
                "-m",
                "prefect",
                "work-pool",
                "get-default-base-job-template",
                "--type",
                "kubernetes",
            ],
            prefect_server.env,
        )
    )
    # A customisation, not a fork: every default variable and job setting is still there.
    assert set(default["variables"]["properties"]) <= set(template["variables"]["properties"])
    assert set(default["job_configuration"]) == set(template["job_configuration"])

    create_work_pool(prefect_server, "gpu-k8s", "kubernetes", base_job_template=path)
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}), get_client(sync_client=True) as c:
        stored = c.read_work_pool("gpu-k8s")
    assert stored.type == "kubernetes" and stored.base_job_template == template

    props = template["variables"]["properties"]
    values = {k: v["default"] for k, v in props.items() if "default" in v}
    values |= {"gpu_count": 2, "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}
    manifest = apply_values(template["job_configuration"], values)["job_manifest"]
    pod = manifest["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 2}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert (
        mounts["workspace"] == "/workspace"
        and {"name": "workspace", "persistentVolumeClaim": {"claimName": "svd-workspace"}} in pod["volumes"]
    )


EMIT = """
import json, sys
from prefect.events import emit_event
resource, related = json.loads(sys.argv[1]), json.loads(sys.argv[2])
emit_event("prefect.flow-run.Completed", resource=resource, related=related)
"""

FINETUNED = """
import json, sys, uuid
from prefect.client.schemas.objects import FlowRun
from flows.train import announce
for run in json.loads(sys.argv[1]):  # Stage III runs ending, as the engine calls the flow's hook
    announce(None, FlowRun(flow_id=uuid.uuid4(), parameters={"stage": "finetune"}, **run), None)
"""


def chain_runs_on_events(api: str, env: dict[str, str], proj: Path, deployed: dict) -> None:
    """The automations `prefect deploy` made from the triggers: a Stage III run of a deployment with
    no parent (started by hand, here on the GPU pool) starts evaluate through the train flow's
    completion hook, which the same run started by the pipeline (a subflow: it has a parent) does
    not; an evaluate run completing starts register. The completions are emitted as the engine
    emits them, so no training runs here; the started runs stay scheduled on pool `local`, paused
    for its worker to leave them."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = env | {"PREFECT_API_URL": api}

    def finetuned(*runs: dict) -> None:
        cmd = [sys.executable, "-c", FINETUNED, json.dumps(runs, default=str)]
        subprocess.run(cmd, cwd=proj, env=env, check=True, timeout=120)

    def completed(name: str, deployment: str) -> None:
        resource = {"prefect.resource.id": f"prefect.flow-run.{uuid.uuid4()}", "prefect.resource.name": name}
        related = [
            {"prefect.resource.id": f"prefect.flow.{uuid.uuid4()}", "prefect.resource.role": "flow"},
            {
                "prefect.resource.id": f"prefect.deployment.{deployed[deployment].id}",
                "prefect.resource.role": "deployment",
                "prefect.resource.name": deployment,
            },
        ]
        cmd = [sys.executable, "-c", EMIT, json.dumps(resource), json.dumps(related)]
        subprocess.run(cmd, env=env, check=True, timeout=60)

    def runs_of(c, deployment: str) -> int:
        only = DeploymentFilter(id=DeploymentFilterId(any_=[deployed[deployment].id]))
        return len(c.read_flow_runs(deployment_filter=only))

    def wait_for(c, deployment: str, n: int) -> None:
        deadline = time.monotonic() + 60
        while runs_of(c, deployment) < n and time.monotonic() < deadline:
            time.sleep(1)
        assert runs_of(c, deployment) == n, f"{deployment}: {runs_of(c, deployment)} runs, expected {n}"

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as c:
        c.update_work_pool("local", WorkPoolUpdate(is_paused=True))
        names = {a.name for a in c.read_automations()}
        assert any("evaluate" in n for n in names) and any("register" in n for n in names), names
        gpu = deployed["train-finetune-gpu"].id
        finetuned(
            {"name": "train-finetune-0000", "deployment_id": gpu, "parent_task_run_id": uuid.uuid4()},
            {"name": "train-finetune-3f9c", "deployment_id": gpu},
        )
        wait_for(c, "evaluate", 1)
        completed("evaluate-1a2b", "evaluate")
        wait_for(c, "register", 1)
        time.sleep(3)  # and nothing more: the pipeline's pool run sent no event
        assert runs_of(c, "evaluate") == 1


def test_failed_start_raises_with_command_and_log(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "print('port already taken, giving up'); raise SystemExit(3)"]
    with pytest.raises(StackError) as err:
        start_service(
            "broken", cmd, url="", health="http://127.0.0.1:9/", root=tmp_path, env={}, client_env={}
        )
    assert "exited with code 3" in str(err.value)
    assert "port already taken, giving up" in str(err.value) and cmd[-1] in str(err.value)


ESCAPING_SERVER = """
import http.server, subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_stop_reaps_children_that_left_the_process_group(tmp_path: Path) -> None:
    """Prefect's worker starts flow runs in new sessions; a group kill alone would orphan them."""
    port = free_port()
    cmd = [sys.executable, "-c", ESCAPING_SERVER, str(port)]
    url = f"http://127.0.0.1:{port}/"
    svc = start_service("escaper", cmd, url=url, health=url, root=tmp_path, env={}, client_env={})
    assert len(processes_with_env(MARKER, svc.marker)) == 2
    svc.stop()
    assert processes_with_env(MARKER, svc.marker) == []


LINKED_FLOW = """
import mlflow
from prefect import flow
from flows.common import link_mlflow, run_tags

@flow(name="linked")
def linked() -> str:
    mlflow.set_experiment("links")
    with mlflow.start_run(run_name="step", tags=run_tags()) as r:
        pass
    link_mlflow("step")
    return r.info.run_id

print(linked())
"""


def test_flow_runs_and_mlflow_runs_link_to_each_other(
    prefect_server: Service, mlflow_server: Service
) -> None:
    """A step's flow run links to the MLflow run it made (a link artifact to the run's page), and the
    MLflow run links back (its tag holds the flow run's page in the Prefect UI)."""
    import mlflow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = {
        **os.environ,
        **prefect_server.env,
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "PYTHONPATH": str(REPO),
    }
    out = subprocess.run(
        [sys.executable, "-c", LINKED_FLOW], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_id = out.stdout.strip().splitlines()[-1]
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        run = mlflow.get_run(run_id)
    finally:
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))  # type: ignore[arg-type]
    flow_run_id = run.data.tags["prefect.flow_run_id"]
    assert run.data.tags["prefect.flow_run_url"].endswith(f"/flow-runs/flow-run/{flow_run_id}")
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}), get_client(sync_client=True) as c:
        of_this_run = ArtifactFilterFlowRunId(any_=[flow_run_id])  # the server holds other tests' runs
        links = c.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["mlflow-step"]), flow_run_id=of_this_run
            )
        )
    page = f"{mlflow_server.url}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    assert [(str(a.flow_run_id), a.type) for a in links] == [(flow_run_id, "markdown")]
    assert page in str(links[0].data), links[0].data


@pytest.mark.timeout(420)
def test_make_serve_deploy_and_make_stop_as_the_readme_has_them(
    tmp_path: Path, our_stack_processes: Callable[[], set[int]]
) -> None:
    """The README's stack block, as written, in a project (with its venv where `make venv` puts it):
    `make serve` brings the stack up and says where each UI is and which file to source, without
    printing a key, makes its S3 the default DVC remote and starts the warm process the project's
    stages fork from; the README's deploy line puts every deployment of infra/prefect.yaml on its
    server, on its pool, with its automations; `make stop` (SIGTERM, Ctrl-C alike) stops every
    process it started and gives the remote back."""
    import signal
    import time
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    serve, deploy, stop = readme_commands("make serve")
    assert serve.startswith("make serve ") and "deploy --all --prefect-file infra/prefect.yaml" in deploy
    assert stop.startswith("make stop "), stop
    proj, env = scratch_project(tmp_path, {}, os.environ | {"PYTHONUNBUFFERED": "1"})
    shell = user_shell(env)
    before = our_stack_processes()  # not the other xdist worker's

    def dvc_default() -> str:
        return run_cmd([sys.executable, "-m", "dvc", "remote", "default"], env, cwd=proj).strip()

    up = subprocess.Popen(
        ["bash", "-c", serve],
        cwd=proj,
        env=shell,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert up.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not any("Ctrl-C stops everything" in x for x in lines):
            line = up.stdout.readline()
            if not line and up.poll() is not None:
                break
            lines.append(line)
        out = "".join(lines)
        assert "Ctrl-C stops everything" in out, out
        started = our_stack_processes() - before
        assert len(started) >= 5, out  # S3, MLflow, Prefect server, worker, warm process
        assert "Warm process" in out and warm.wait_until_served(proj, 1), out  # `dvc repro` forks from it
        assert (
            "Prefect UI" in out
            and "MLflow UI" in out
            and f"source {(proj / '.stack' / 'env').resolve()}" in out
        ), out
        assert "SECRET_ACCESS_KEY=" not in out and "export " not in out, out
        assert "AWS_SECRET_ACCESS_KEY=" in (proj / ".stack" / "env").read_text()  # the values live there
        assert dvc_default() == "s3store"  # a plain `dvc push` goes to the stack's S3 while it runs
        # the server has infra/automations.yaml's automations, so a lost node's run gets Crashed
        exported = (x.removeprefix("export ").strip() for x in (proj / ".stack" / "env").open())
        api = dict(x.split("=", 1) for x in exported)["PREFECT_API_URL"]
        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as c:
            automations = c.read_automations()
        assert [a.name for a in automations] == ["crash-lost-flow-runs"], automations
        assert automations[0].trigger.within == timedelta(seconds=450)

        deployed = subprocess.run(
            ["bash", "-c", deploy],
            cwd=proj,
            env=shell,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=150,
        )
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as c:
            deployments = {d.name: d for d in c.read_deployments()}
        config = yaml.safe_load((proj / "infra" / "prefect.yaml").read_text())
        assert {(n, d.work_pool_name) for n, d in deployments.items()} == {
            (d["name"], d["work_pool"]["name"]) for d in config["deployments"]
        }
        assert deployments["train-video"].parameters == {"stage": "video"}
        # a stage on the GPU pool: torchrun with a process per GPU, in the shared workspace
        gpu = deployments["train-video-gpu"]
        assert (gpu.work_pool_name, gpu.parameters) == ("gpu", {"stage": "video", "processes": 8})
        assert gpu.job_variables["gpu_count"] == 8 and gpu.job_variables["workspace_claim"] == "svd-workspace"
        assert gpu.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "/workspace/svd"}}
        ]
        chain_runs_on_events(api, env, proj, deployments)
    finally:  # `make stop` from another shell: SIGTERM, as Ctrl-C, and waits for the stack to go
        stopped = subprocess.run(
            ["bash", "-c", stop], cwd=proj, env=shell, capture_output=True, text=True, timeout=150
        )
        try:  # `make serve` ends once its stack has; stopped by hand only if `make stop` failed
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=90) == 0 and "stack stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert our_stack_processes() & started == set()
    local = proj / ".dvc" / "config.local"
    assert dvc_default() == "localstore" and "s3store" not in (local.read_text() if local.exists() else "")


def listening(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket the processes hold, IPv4 and IPv6."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    found = set()
    for table, v6 in (("tcp", False), ("tcp6", True)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hexaddr, port = fields[1].split(":")
            raw = bytes.fromhex(hexaddr)
            if v6:  # four little-endian 32-bit words
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                addr = str(ipaddress.IPv6Address(raw))
            else:
                addr = str(ipaddress.IPv4Address(raw[::-1]))
            found.add((addr, int(port, 16)))
    return found


def test_every_server_listens_on_loopback_only(
    s3: S3Endpoint,
    mlflow_server: Service,
    prefect_server: Service,
    prefect_worker: Service,
    our_stack_processes: Callable[[], set[int]],
) -> None:
    """Nothing the stack starts (S3, MLflow and its workers, Prefect's server and worker, and their
    children) accepts connections from another machine."""
    sockets = listening(our_stack_processes())
    assert len(sockets) >= 3, sockets  # S3, MLflow, Prefect at least
    assert {addr for addr, _ in sockets} == {"127.0.0.1"}, sockets

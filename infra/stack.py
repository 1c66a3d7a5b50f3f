"""Start and stop the real local services: an S3 endpoint (moto), an MLflow server, a Prefect
server with a process work pool and a worker.

Every service is a subprocess in its own session, logging to a file, started on a free
127.0.0.1 port and waited for on its health URL. Each carries a marker in its environment that
its descendants inherit, so `stop` also finds children that left the process group (Prefect's
worker starts flow runs in new sessions) and `processes_with_env` can prove nothing survived.
A reaper (infra/reaper.py) stops them all if their owner dies without stopping them (SIGKILL,
a timeout).

Used by the pytest fixtures in tests/conftest.py and by `python -m infra.stack up`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.reaper import OWNER, processes_with_env, start_time
from svd.storage import S3_ATTEMPTS

HOST = "127.0.0.1"
MARKER = "SVD_STACK_PROCESS"
"""Environment variable set on every process the stack starts (value: a per-service id)."""
GPU_TEMPLATE = Path(__file__).with_name("k8s-gpu-job-template.json")
AUTOMATIONS = Path(__file__).with_name("automations.yaml")

# Dummy credentials: moto accepts anything, and a fixed non-secret value keeps a misconfigured
# client from ever signing requests with someone's real AWS keys.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # boto3 >= 1.36 adds checksums that S3-compatible servers may reject.
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    # The retries svd.storage gives its own client, for every other boto3 of the stack (the MLflow
    # server's artifact store, DVC's s3fs): an endpoint restart costs time, not an upload.
    "AWS_RETRY_MODE": "standard",
    "AWS_MAX_ATTEMPTS": str(S3_ATTEMPTS),
}
QUIET_ENV = {"DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1"}


def bare_env() -> dict[str, str]:
    """This process's environment, quiet and without Prefect or MLflow settings: what a bench gives
    the workspaces it starts, so that each reaches only the servers the bench gives it, never the
    caller's own; and no warm process that a stage would start and leave behind (flows/warm.py)."""
    from flows.warm import IDLE

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    return env | QUIET_ENV | {IDLE: "0"}


_running: dict[str, Service] = {}


@atexit.register
def _stop_all() -> None:
    """Last resort when the owner exits without stopping its services (an uncaught error):
    they run in their own sessions, so nothing else would end them."""
    for svc in list(_running.values()):
        svc.stop()


class StackError(RuntimeError):
    """A service failed to start or a setup command failed; the message carries its log."""


@dataclass
class Service:
    """One running server process and what a client needs to reach it."""

    name: str
    url: str
    env: dict[str, str]
    cmd: list[str]
    log: Path
    proc: subprocess.Popen[bytes]
    marker: str

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group so servers shut down cleanly, then SIGKILL whatever is left."""
        _signal_group(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        _signal_group(self.proc.pid, signal.SIGKILL)
        for pid in processes_with_env(MARKER, self.marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        # SIGKILL lands asynchronously: return only once no process of the service is left alive
        deadline = time.monotonic() + 5
        while processes_with_env(MARKER, self.marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        _running.pop(self.marker, None)


@dataclass
class S3Endpoint(Service):
    """The moto S3 server plus the bucket the stack created on it."""

    bucket: str = "svd"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        )


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def free_port() -> int:
    """A port the OS just handed out; the tiny reuse race is caught by the health wait."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


_reapers: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}  # owner pid -> its reaper


def _reaper() -> str:
    """The token of this process's reaper (infra/reaper.py), started on first use: whatever kills
    this process, the reaper then stops every service it started."""
    pid = os.getpid()
    if pid not in _reapers:
        token = f"{pid}-{uuid.uuid4().hex[:12]}"
        script = Path(__file__).with_name("reaper.py")
        proc = subprocess.Popen(
            [sys.executable, str(script), str(pid), str(start_time(pid)), token],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k not in (MARKER, OWNER)},
            start_new_session=True,  # out of the owner's group: a group kill must not take it too
        )
        _reapers[pid] = token, proc
    return _reapers[pid][0]


def start_service(
    name: str,
    cmd: list[str],
    *,
    url: str,
    health: str,
    root: Path,
    env: Mapping[str, str | None],
    client_env: Mapping[str, str],
    timeout: float = 90.0,
    ready: Callable[[Service], bool] | None = None,
    cwd: Path | None = None,
) -> Service:
    """Launch `cmd` in its own session and return once `health` answers (and `ready(service)` holds).

    A None value in `env` removes that variable from the inherited environment."""
    log = root / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    marker = f"{name}-{uuid.uuid4().hex[:12]}"
    full_env = {**os.environ, **QUIET_ENV, **env, MARKER: marker, OWNER: _reaper()}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in full_env.items() if v is not None},
            start_new_session=True,
            cwd=cwd,
        )
    svc = _running[marker] = Service(name, url, dict(client_env), cmd, log, proc, marker)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not svc.alive():
            break
        if _http_ok(health) and (ready is None or ready(svc)):
            return svc
        time.sleep(0.3)
    code = svc.proc.poll()
    svc.stop()
    state = f"exited with code {code}" if code is not None else f"not healthy after {timeout:.0f}s"
    raise StackError(
        f"{name} {state} (health URL {health})\ncommand: {' '.join(cmd)}\nlog {log}:\n{svc.log_tail()}"
    )


def run_cmd(cmd: list[str], env: Mapping[str, str], cwd: Path | None = None, timeout: float = 120) -> str:
    """Run a setup command to completion; raise with its output when it fails."""
    res = subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **QUIET_ENV, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if res.returncode != 0:
        raise StackError(f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}\n{res.stderr}")
    return res.stdout


# --- S3 ------------------------------------------------------------------------------------


def start_s3(root: Path, bucket: str = "svd", port: int | None = None) -> S3Endpoint:
    """moto's HTTP server (not in-process mock_aws) so subprocesses (mlflow, dvc) reach it too."""
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    client_env = {**AWS_ENV, "AWS_ENDPOINT_URL_S3": url, "MLFLOW_S3_ENDPOINT_URL": url}
    cmd = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    svc = start_service(
        "s3", cmd, url=url, health=f"{url}/moto-api/", root=root, env=AWS_ENV, client_env=client_env
    )
    s3 = _running[svc.marker] = S3Endpoint(**vars(svc), bucket=bucket)
    try:
        s3.client().create_bucket(Bucket=bucket)
    except Exception:
        s3.stop()
        raise
    return s3


def snapshot_bucket(s3: S3Endpoint, dest: Path) -> int:
    """Copy the bucket to disk: moto keeps objects in memory only, and MLflow's sqlite store
    would otherwise point at artifacts that vanished with the last `up`."""
    client, count, tmp = s3.client(), 0, dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket):
        for obj in page.get("Contents", []):
            target = tmp / obj["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(s3.bucket, obj["Key"], str(target))
            count += 1
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return count


def restore_bucket(s3: S3Endpoint, src: Path) -> int:
    client, count = s3.client(), 0
    for path in sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else []:
        client.upload_file(str(path), s3.bucket, path.relative_to(src).as_posix())
        count += 1
    return count


# --- MLflow --------------------------------------------------------------------------------


def start_mlflow(root: Path, s3: S3Endpoint, port: int | None = None, prefix: str = "mlflow") -> Service:
    """Tracking + registry on sqlite, artifacts proxied by the server to S3, so clients need
    only the tracking URI (no S3 credentials) to log and load artifacts."""
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    db = (root / "mlflow.db").resolve()
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{db}",
        "--artifacts-destination", f"s3://{s3.bucket}/{prefix}",
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    return start_service(
        "mlflow",
        cmd,
        url=url,
        health=f"{url}/health",
        root=root,
        # The job runner serves GenAI features (online scoring, trace archival) this project
        # does not use; without it the server starts fewer processes and stops in a second.
        env={**s3.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        client_env={"MLFLOW_TRACKING_URI": url},
    )


# --- Prefect -------------------------------------------------------------------------------


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """Settings for any Prefect process of this stack: its own PREFECT_HOME, never ~/.prefect."""
    env = {"PREFECT_HOME": str(home.resolve()), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def start_prefect(root: Path, port: int | None = None, ui: bool = True) -> Service:
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    home = root / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)]
    env: dict[str, str | None] = {
        **prefect_env(home),
        "PREFECT_SERVER_UI_ENABLED": str(ui).lower(),
        # the browser's API: without it the UI calls the default port 4200 ("Can't connect")
        "PREFECT_SERVER_UI_API_URL": f"{url}/api",
        "PREFECT_API_URL": None,
    }
    return start_service(
        "prefect",
        cmd,
        url=f"{url}/api",
        health=f"{url}/api/health",
        root=root,
        env=env,
        client_env=prefect_env(home, f"{url}/api"),
    )


def _api(url: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body or {}).encode(), headers={"Content-Type": "application/json"}, method=method
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


def create_work_pool(
    prefect: Service, name: str, pool_type: str = "process", base_job_template: Path | None = None
) -> None:
    """Through the CLI, which fills in the type's default base job template."""
    cmd = [sys.executable, "-m", "prefect", "work-pool", "create", name, "--type", pool_type, "--overwrite"]
    if base_job_template:
        cmd += ["--base-job-template", str(base_job_template)]
    run_cmd(cmd, prefect.env)


def create_automations(prefect: Service, automations: list[dict[str, Any]] | None = None) -> None:
    """Create the automations (infra/automations.yaml's by default), or update those the server has
    by name: a restarted stack keeps its database, where a second copy would act twice and an old
    one would miss the file's edits."""
    import yaml

    if automations is None:
        automations = yaml.safe_load(AUTOMATIONS.read_text())["automations"]
    names = {"automations": {"name": {"any_": [a["name"] for a in automations]}}}
    have = {a["name"]: a["id"] for a in _api(f"{prefect.url}/automations/filter", names)}
    for automation in automations:
        if automation["name"] in have:
            _api(f"{prefect.url}/automations/{have[automation['name']]}", automation, method="PUT")
        else:
            _api(f"{prefect.url}/automations/", automation)


def start_worker(
    prefect: Service, pool: str, root: Path, env: Mapping[str, str] | None = None, poll_seconds: int = 2
) -> Service:
    """A process worker on `pool`; flow runs inherit `env` (e.g. the MLflow and S3 settings).

    Ready once the server lists it as a worker of the pool, so a run submitted right after
    cannot sit in a pool nobody polls."""
    create_work_pool(prefect, pool)
    # A unique name: a restarted stack's database still lists the previous run's worker.
    name = f"{pool}-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
    cmd += ["--name", name]
    workers_url = f"{prefect.url}/work_pools/{pool}/workers/filter"

    def registered() -> bool:
        try:
            return any(w["name"] == name for w in _api(workers_url))
        except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
            return False

    return start_service(
        f"worker-{pool}",
        cmd,
        url=f"{prefect.url}/work_pools/{pool}",
        health=f"{prefect.url}/health",
        ready=lambda _: registered(),
        root=root,
        env={**(env or {}), **prefect.env, "PREFECT_WORKER_QUERY_SECONDS": str(poll_seconds)},
        client_env={},
    )


def start_warm(project: Path, prefect: Service, root: Path, env: Mapping[str, str]) -> Service:
    """The warm process that `dvc repro`'s stages in `project` are forked from (flows/warm.py),
    its flow runs on `prefect`; ready once it has imported every flow and answers, or once it says
    the flows do not import (the stages then run cold until an edit fixes them).

    `env` is the environment of the shell that runs `dvc repro`, and exactly the warm process's:
    a stage whose settings read at import differ from it runs cold."""
    from flows import warm

    exact: dict[str, str | None] = {**{k: None for k in os.environ}, **env, **prefect.env}  # not ours
    return start_service(
        "warm",
        [sys.executable, "-m", "flows", "warm"],
        url=str(warm.address(project)),
        health=f"{prefect.url}/health",
        ready=lambda svc: _warm_ready(project, svc.proc.pid),
        root=root,
        env=exact,
        client_env={},
        timeout=180,
        cwd=project,
    )


def _warm_ready(project: Path, pid: int) -> bool:
    """The project's lock is held by the warm process `pid` (not one it takes over from), which
    serves, or serves nothing until an edit."""
    from flows import warm

    held = warm.holder(project)
    if not held or held.pid != pid:
        return False
    return held.state == "broken" or (held.state == "serving" and warm.wait_until_served(project, 0.1))


# --- DVC -----------------------------------------------------------------------------------


def configure_dvc_remote(
    repo: Path, s3: S3Endpoint, name: str = "s3store", prefix: str = "dvc", default: bool = False
) -> str:
    """Point a DVC remote at the running endpoint, in .dvc/config.local only: the committed
    .dvc/config stays as it is and the endpoint (a per-run port) never lands in git. `default`:
    a plain `dvc push` goes there (until release_dvc_remote)."""
    url = f"s3://{s3.bucket}/{prefix}"
    dvc = [sys.executable, "-m", "dvc", "remote"]
    run_cmd([*dvc, "add", "--local", "-f", name, url], s3.env, cwd=repo)
    for key, value in (
        ("endpointurl", s3.url),
        ("access_key_id", AWS_ENV["AWS_ACCESS_KEY_ID"]),
        ("secret_access_key", AWS_ENV["AWS_SECRET_ACCESS_KEY"]),
        ("region", AWS_ENV["AWS_DEFAULT_REGION"]),
    ):
        run_cmd([*dvc, "modify", "--local", name, key, value], s3.env, cwd=repo)
    if default:
        run_cmd([*dvc, "default", "--local", name], s3.env, cwd=repo)
    return url


def release_dvc_remote(repo: Path, name: str = "s3store") -> None:
    """Drop the stack's remote from .dvc/config.local once its endpoint is gone, default and all:
    `dvc push` goes to the committed default again."""
    dvc = [sys.executable, "-m", "dvc", "remote"]
    run_cmd([*dvc, "default", "--local", "--unset"], {}, cwd=repo)
    run_cmd([*dvc, "remove", "--local", name], {}, cwd=repo)


# --- Stack ---------------------------------------------------------------------------------


@dataclass
class Stack:
    """The services started together, in start order; `env` is what a client exports."""

    root: Path
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for svc in self.services.values():
            merged.update(svc.env)
        return merged

    @property
    def s3(self) -> S3Endpoint | None:
        svc = self.services.get("s3")
        return svc if isinstance(svc, S3Endpoint) else None

    def stop(self) -> None:
        for svc in reversed(list(self.services.values())):
            svc.stop()
        self.services.clear()


@contextlib.contextmanager
def local_stack(
    root: Path,
    *,
    s3: bool = True,
    mlflow: bool = True,
    prefect: bool = True,
    pool: str | None = "local",
    bucket: str = "svd",
    ui: bool = True,
) -> Iterator[Stack]:
    """Start the chosen services (MLflow needs S3; a worker needs Prefect) and stop them all on
    exit, including when startup of a later one fails."""
    root.mkdir(parents=True, exist_ok=True)
    stack = Stack(root)
    try:
        if s3 or mlflow:
            endpoint = stack.services["s3"] = start_s3(root, bucket)
        if mlflow:
            stack.services["mlflow"] = start_mlflow(root, endpoint)
        if prefect:
            server = stack.services["prefect"] = start_prefect(root, ui=ui)
            # the GPU pool the training deployments name; its worker runs in a cluster, not here
            create_work_pool(server, "gpu", "kubernetes", GPU_TEMPLATE)
            create_automations(server)
            if pool:
                stack.services["worker"] = start_worker(server, pool, root, env=stack.env)
        yield stack
    finally:
        stack.stop()


def env_lines(env: Mapping[str, str]) -> str:
    return "".join(f"export {k}={v}\n" for k, v in sorted(env.items()))


def _up(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    snapshot = root / "s3"

    def terminate(signum: int, frame: object) -> None:
        # Once: a second Ctrl-C must not cut the shutdown short and orphan servers.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    # SIGINT explicitly too: a shell starting `up` in the background sets it to ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, terminate)
    with local_stack(root, pool=args.pool, bucket=args.bucket) as stack:
        assert stack.s3 is not None
        (root / "pid").write_text(str(os.getpid()))  # for `down` (make stop)
        restored = restore_bucket(stack.s3, snapshot)
        env = {**stack.env, **QUIET_ENV}
        (root / "env").write_text(env_lines(env))
        ui = stack.services["prefect"].url.removesuffix("/api")
        print(f"Prefect UI   {ui}\nMLflow UI    {stack.services['mlflow'].url}")
        print(f"S3 endpoint  {stack.s3.url}  bucket {stack.s3.bucket} ({restored} objects restored)")
        print(f"Worker       pool '{args.pool}', logs in {root / 'logs'}")
        dvc_repo = (Path.cwd() / ".dvc").is_dir()
        if dvc_repo:
            url = configure_dvc_remote(Path.cwd(), stack.s3, default=True)
            print(f"DVC remote   s3store -> {url} (.dvc/config.local, the default while this runs)")
        else:
            print("DVC remote   skipped: no .dvc here (run `dvc init` and `up` again)")
        if dvc_repo:
            shell = {**os.environ, **env}  # a shell that sourced the env file
            stack.services["warm"] = start_warm(Path.cwd(), stack.services["prefect"], root, shell)
            print(f"Warm process `dvc repro`'s stages fork from it; log in {root / 'logs' / 'warm.log'}")
        # the names only: the file holds the values, keys included, and a terminal log should not
        names = ", ".join(sorted(env))
        print(f"\nsource {root / 'env'}  # sets {names}\nCtrl-C stops everything.", flush=True)
        try:
            while all(svc.alive() for svc in stack.services.values()):
                time.sleep(1)
            dead = [s for s in stack.services.values() if not s.alive()]
            for svc in dead:
                print(
                    f"{svc.name} exited ({svc.proc.returncode}); log tail:\n{svc.log_tail()}", file=sys.stderr
                )
            return 1
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
            return 0
        finally:
            count = snapshot_bucket(stack.s3, snapshot) if stack.s3.alive() else 0
            print(f"saved {count} S3 objects to {snapshot}", flush=True)
            if dvc_repo:
                release_dvc_remote(Path.cwd())
            (root / "pid").unlink(missing_ok=True)


def _down(args: argparse.Namespace) -> int:
    """Stop the stack `up` runs (from another shell): SIGTERM, as Ctrl-C, then wait for it."""
    pid_file = Path(args.dir).resolve() / "pid"
    if not pid_file.exists():
        print(f"no stack running from {pid_file.parent}")
        return 0
    pid = int(pid_file.read_text())
    try:  # a pid file a killed `up` left behind may name another process by now
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        cmdline = []
    if b"infra.stack" not in cmdline or b"up" not in cmdline:
        print(f"no stack running from {pid_file.parent} (stale pid file removed)")
        pid_file.unlink()
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)

    def running() -> bool:  # a zombie has exited; its parent just has not reaped it yet
        return start_time(pid) is not None

    deadline = time.monotonic() + 120
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    if running():
        print(f"stack {pid} still running after 120 s", file=sys.stderr)
        return 1
    print("stack stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start S3, MLflow, Prefect server and a worker until Ctrl-C")
    up.add_argument("--dir", default=".stack", help="state, logs and the env file (default .stack)")
    up.add_argument("--pool", default="local", help="process work pool the worker serves")
    up.add_argument("--bucket", default="svd")
    down = sub.add_parser("down", help="stop the stack `up` started (from another shell)")
    down.add_argument("--dir", default=".stack")
    args = parser.parse_args(argv)
    if args.command == "down":
        return _down(args)
    try:
        return _up(args)
    except KeyboardInterrupt:  # interrupted while starting: local_stack already stopped all
        return 130


if __name__ == "__main__":
    sys.exit(main())

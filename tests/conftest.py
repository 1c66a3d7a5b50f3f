"""Session-wide test environment and lazily started real servers (S3, MLflow, Prefect).

The environment is set in `pytest_configure`, before any test module imports prefect: Prefect
reads PREFECT_HOME once at import, so a fixture would come too late to keep ~/.prefect clean.
Servers start only when a test asks for their fixture and stop at session end; the
`pytest_sessionfinish` check then fails the run if any process they started is still alive.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from svd.params import Params

from infra.stack import (
    AWS_ENV,
    MARKER,
    QUIET_ENV,
    S3Endpoint,
    Service,
    processes_with_env,
    start_mlflow,
    start_prefect,
    start_s3,
    start_worker,
)

SESSION_KEY = "SVD_TEST_SESSION"
SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN")
_session_tmp: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _session_tmp
    _session_tmp = Path(tempfile.mkdtemp(prefix="svd-tests-"))
    os.environ.update(
        {
            **QUIET_ENV,
            # Dummy AWS credentials: no test can sign a request to real AWS by accident. The secrets
            # are recognisable, so the end-to-end test can prove that no log, run, artifact, report
            # or table holds one (moto takes any credentials).
            **AWS_ENV,
            **{k: f"svd-fake-{k.lower().replace('_', '-')}-{uuid.uuid4().hex[:8]}" for k in SECRETS},
            "PREFECT_HOME": str(_session_tmp / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # Stages run cold unless a test starts a warm process: one that a `dvc repro` starts
            # would outlive its test by its idle time (test_warm covers that door).
            "SVD_WARM_IDLE_S": "0",
            # Inherited by every subprocess a test starts: how the end check finds leftovers.
            SESSION_KEY: uuid.uuid4().hex,
        }
    )
    # make test runs the suite in pytest-xdist workers: each one's torch and BLAS get its share
    # of the cores, as curate's workers do, or two trainings at once oversubscribe them and crawl
    if workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
        share = str(max(1, len(os.sched_getaffinity(0)) // int(workers)))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, share)
    # A developer's shell may point at a live server; tests must never talk to it.
    for key in ("PREFECT_API_URL", "PREFECT_API_KEY", "MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(key, None)


def stack_processes() -> set[int]:
    """The live stack processes (servers, workers, their flow runs) this session started: not another
    xdist worker's, which carry its session key."""
    return set(processes_with_env(SESSION_KEY, os.environ[SESSION_KEY])) & set(processes_with_env(MARKER))


@pytest.fixture(scope="session")
def our_stack_processes() -> Callable[[], set[int]]:
    """`stack_processes`, for tests that check what a command started or left."""
    return stack_processes


_leaked: list[str] = []  # the controller's: what its xdist workers found


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """An xdist worker ended: its leaks, which its own exit status and output cannot carry to the run."""
    _leaked.extend(getattr(node, "workeroutput", {}).get("leaked", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Runs after session fixtures are torn down: a process of this session that carries the
    stack marker is a server (or a flow run of its worker) that outlived its fixture. Kill it
    and fail the run so the leak gets fixed. An xdist worker hands what it found to the controller,
    which fails the run: xdist reads a worker's exit status before this hook, and drops its output."""
    found = []
    for pid in sorted(stack_processes()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        found.append(f"stack process {pid} outlived its fixture (killed now): {cmd[:200]}")
    if hasattr(session.config, "workeroutput"):  # an xdist worker
        session.config.workeroutput["leaked"] = found
    else:
        for line in [*_leaked, *found]:
            print(f"\nLEAKED {line}")
        if _leaked or found:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if _session_tmp is not None:
        shutil.rmtree(_session_tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_root() -> Path:
    """State and logs of the session's servers (logs are named in any startup error)."""
    assert _session_tmp is not None
    root = _session_tmp / "stack"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def s3(stack_root: Path) -> Iterator[S3Endpoint]:
    """A moto S3 endpoint over HTTP with bucket `svd`: `.url`, `.bucket`, `.env`, `.client()`."""
    endpoint = start_s3(stack_root, bucket="svd")
    try:
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture(scope="session")
def mlflow_server(stack_root: Path, s3: S3Endpoint) -> Iterator[Service]:
    """MLflow tracking + registry on sqlite, artifacts proxied to s3://svd/mlflow.
    `.url` is the tracking URI; clients need no S3 credentials."""
    server = start_mlflow(stack_root, s3)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prefect_server(stack_root: Path) -> Iterator[Service]:
    """A Prefect server (no UI) with its own PREFECT_HOME; `.url` is the API URL, `.env`
    holds PREFECT_API_URL and PREFECT_HOME for subprocesses."""
    server = start_prefect(stack_root, ui=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prefect_worker(prefect_server: Service, stack_root: Path) -> Iterator[Service]:
    """A process worker polling pool `pytest-local` (`.url` is that pool's API URL), registered
    with the server before it is yielded. Flow runs that need MLflow/S3 settings want their own:
    `start_worker(prefect_server, pool, root, env={**s3.env, **mlflow_server.env})`."""
    worker = start_worker(prefect_server, "pytest-local", stack_root, poll_seconds=1)
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="session")
def tiny_params(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """A tiny curated dataset on the smoke profile, built once per session by the real curation code.
    Imports inside: Prefect must not be imported before pytest_configure has set its home."""
    import yaml

    from svd.curation.curate import curate
    from svd.curation.filter import make_subsets, write_subsets
    from svd.media.synth import make_corpus
    from svd.params import load, merge

    root = Path(__file__).resolve().parents[1]
    d = tmp_path_factory.mktemp("curated")
    smoke = yaml.safe_load((root / "tests" / "e2e" / "smoke.yaml").read_text())
    paths = {
        "synth": {"out": str(d / "raw")},
        "curate": {"sources": [str(d / "raw")], "out": str(d / "curated"), "cache": str(d / "cache")},
        "filter": {"out": str(d / "subsets")},
        "train": {  # one latent store for both video stages: entries are keyed by content
            s: {"out": str(d / s), **({"init": str(d / prev), "latents": str(d / "latents")} if prev else {})}
            for s, prev in (("image", None), ("video", "image"), ("finetune", "video"))
        },
        "evaluate": {"out": str(d / "eval")},
    }
    p = load(root / "params.yaml", merge(smoke, paths))
    make_corpus(p.synth, p.seed)
    table = curate(p.curate, p.seed)
    write_subsets(make_subsets(table, p.filter), p.filter.out)
    return p

"""MLflow runs with lineage: every run says which code (git commit and its source files' hashes),
which data (DVC hashes), both exactly as its step's dvc.yaml stage declares them, and which
orchestration run (Prefect flow-run id, passed in by the flow) produced it, so a registered model
traces back to all three."""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import os
import queue
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from svd.params import read_yaml
from svd.storage import TMP_PREFIX

if TYPE_CHECKING:
    from svd.params import Params

Tags = Mapping[str, str] | None
CODE = "svd/"  # dependencies under it are source files; the others are data
log = logging.getLogger("svd.tracking")
EXPERIMENT = "svd"  # each step's runs go to the experiment "svd/<step>", e.g. svd/train-video


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set (the local stack or a team server), else SQLite in the cwd."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').absolute()}"


def connect() -> str:
    """Point MLflow at the tracking URI, a SQLite store there made whole first; the URI."""
    uri = tracking_uri()
    if uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        db = make_url(uri).database
        if db and db != ":memory:":
            create_sqlite_store(Path(db))
    mlflow.set_tracking_uri(uri)
    return uri


def create_sqlite_store(path: Path) -> None:
    """MLflow makes a SQLite store in place, migration by migration: a first run killed meanwhile
    (Ctrl-C, SIGKILL) left a store that every later run failed to open ("table ... already
    exists"), for good. It is made under a temporary name holding this process's id and linked into
    place, which fails if a process beside this one linked its own first: that one is used, and any
    run it logs is kept. What a killed process left under a temporary name is removed. The default
    experiment's artifacts go to ./mlartifacts, as this project's experiments' do (MLflow's own
    default is ./mlruns)."""
    for left in path.parent.glob(f"{TMP_PREFIX}*-{path.name}*"):  # a store or its journal
        pid = left.name.removeprefix(TMP_PREFIX).split("-", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or not alive(int(pid))):
            left.unlink(missing_ok=True)
    if path.exists():
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        SqlAlchemyStore(f"sqlite:///{tmp}", local_artifacts()).engine.dispose()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError as e:  # a filesystem without hard links (SMB, some FUSE mounts)
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            if not path.exists():  # a narrow race with another first run, in place of none
                os.rename(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def local_artifacts() -> str:
    """Where runs tracked in a local SQLite store keep their artifacts: ./mlartifacts."""
    return Path("mlartifacts").absolute().as_uri()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def configure(experiment: str = EXPERIMENT) -> None:
    """Point MLflow at the tracking URI and the experiment, made on first use as a model training
    experiment (MLflow 3's UI otherwise guesses, and shows GenAI pages for runs without traces)."""
    uri = connect()
    if mlflow.get_experiment_by_name(experiment) is None:
        location = local_artifacts() if uri.startswith("sqlite:") else None  # a server decides its own
        kind = {"mlflow.experimentKind": "custom_model_development"}
        try:
            mlflow.create_experiment(experiment, artifact_location=location, tags=kind)
        except MlflowException as e:  # a pipeline in another workspace made it first: use it
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    mlflow.set_experiment(experiment)


def git_commit(cwd: Path = Path()) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


@dataclass(frozen=True)
class Declared:
    """What a step's DVC stage says it reads: params.yaml keys and dependency paths."""

    params: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()


def declared(stage: str, p: Params) -> Declared:
    """The stage's entry in dvc.yaml, the one place that says what a step reads, its `${key}`s
    filled from `p` as DVC fills them from params.yaml. The project's own dvc.yaml (the cwd's),
    else this checkout's; a step with no stage there (a latent store of a stage the default
    pipeline does not store) declares nothing."""
    path = Path("dvc.yaml")
    if not path.exists():
        path = Path(__file__).resolve().parents[1] / "dvc.yaml"
    spec = (read_yaml(path)["stages"] if path.exists() else {}).get(stage)
    if spec is None:
        return Declared()
    tree = p.model_dump(mode="json")

    def fill(dep: str) -> str:
        return re.sub(r"\$\{([\w.]+)\}", lambda m: str(lookup(tree, m[1])), dep)

    return Declared(tuple(spec.get("params", [])), tuple(map(fill, spec.get("deps", []))))


def lookup(tree: Mapping, key: str) -> Any:
    """`a.b.c` in nested mappings, as dvc.yaml names params."""
    for part in key.split("."):
        tree = tree[part]
    return tree


def md5_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def dvc_hashes(inputs: Iterable[str], lock: Path = Path("dvc.lock")) -> dict[str, str]:
    """The md5 DVC gives each input: a file's own (DVC 3 hashes the bytes), a folder's as recorded
    for the stage that output it (DVC's `.dir` hash). Inputs with neither are left out."""
    outs: dict[str, str] = {}
    if lock.exists():
        for stage in (read_yaml(lock) or {}).get("stages", {}).values():
            outs |= {o["path"].rstrip("/"): o.get("md5", "") for o in stage.get("outs", [])}
    hashes = {}
    for path in inputs:
        if Path(path).is_file():
            hashes[path] = md5_file(Path(path))
        elif path.rstrip("/") in outs:
            hashes[path] = outs[path.rstrip("/")]
    return hashes


def declared_params(p: Params, keys: Iterable[str]) -> dict[str, str]:
    """The values of dvc.yaml's params keys (e.g. `train.video`, `seed`) in the params a step runs
    with, flattened to MLflow params."""
    tree = p.model_dump(mode="json")
    return {k: v for key in keys for k, v in flatten({key: lookup(tree, key)}).items()}


def lineage(hashes: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    tags = {"git.commit": git_commit()}
    tags |= {f"dvc.md5.{path}": md5 for path, md5 in hashes.items()}
    tags |= dict(extra or {})
    tags.setdefault("prefect.flow_run_id", "none")  # library or CLI use, outside any flow
    return tags


def flatten(d: Mapping, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= flatten(v, key + ".") if isinstance(v, Mapping) else {key: str(v)}
    return out


def log_datasets(hashes: Mapping[str, str]) -> None:
    """Each data input as a dataset input of the run, its digest the DVC md5: the run's Datasets tab
    names the exact data, and searches can filter runs by it. Code inputs are tags only. Two runs
    logging the same data at once both look its row up and insert it, hence retry_raced (the
    server skips inputs a run already has)."""
    from mlflow.data.dataset import Dataset
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource, S3ArtifactDatasetSource  # type: ignore[attr-defined]

    datasets: list[Dataset | None] = []
    for path, md5 in hashes.items():
        if path.startswith(CODE):
            continue
        uri = path if path.startswith("s3://") else str(Path(path).absolute())
        source = S3ArtifactDatasetSource(uri) if path.startswith("s3://") else LocalArtifactDatasetSource(uri)
        datasets.append(MetaDataset(source, name=path, digest=md5[:36]))  # type: ignore[abstract]
    if datasets:
        retry_raced(mlflow.log_inputs, datasets, ["input"] * len(datasets), [None] * len(datasets))


def retry_raced(write: Callable[..., None], *args: Any, tries: int = 5) -> None:
    """`write(*args)`, done again while it breaks a unique key. MLflow's SQL store looks a row up,
    then inserts it (a dataset input, a model version's tag, an alias), so two clients writing the
    same new row at once (two workspaces on one server) can both miss it and the second insert
    fails; measured on sqlite, one round of concurrent alias and tag writes in three. Done again,
    the write finds the row the other committed and updates or skips it. Other errors are raised at
    once."""
    for n, wait in enumerate(backoff(first=0.2), 1):
        try:
            write(*args)
            return
        except MlflowException as e:
            said = str(e).lower()
            raced = any(w in said for w in ("unique", "duplicate", "integrity"))  # SQLite, Postgres, MySQL
            if n == tries or not raced:
                raise
            log.info("%s raced another client (%s); again in %.1f s", write.__name__, str(e)[:200], wait)
            time.sleep(wait)


@contextmanager
def run(step: str, p: Params, tags: Tags = None, description: str = "") -> Iterator[str]:
    """An MLflow run of `step` (its DVC stage's name) in the step's experiment (svd/<step>): the
    params and the inputs, with their DVC hashes, that the stage declares in dvc.yaml, lineage tags,
    a description, and CPU, memory and GPU sampled every 5 s; yields the run id."""
    configure(f"{EXPERIMENT}/{step}")
    mlflow.set_system_metrics_sampling_interval(5)
    mlflow.set_system_metrics_samples_before_logging(1)
    what = declared(step, p)
    hashes = dvc_hashes(what.deps)
    run_tags = lineage(hashes, tags) | ({"mlflow.note.content": description} if description else {})
    with mlflow.start_run(run_name=step, tags=run_tags, log_system_metrics=True) as active:
        mlflow.log_params(declared_params(p, what.params))
        log_datasets(hashes)
        yield active.info.run_id


def run_page(experiment_id: str, run_id: str, artifact: str = "") -> str:
    """An MLflow run's page on the tracking server, or the page of one of its artifacts."""
    page = f"{tracking_uri()}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{page}/artifacts/{artifact}" if artifact else page


def finite(metrics: Mapping) -> dict[str, float]:
    """The numeric metrics MLflow can log."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}


def log_bytes(data: bytes, name: str) -> None:
    """An artifact of the active run from bytes in memory, at `name` (e.g. report/loss.png)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        mlflow.log_artifact(str(path), artifact_path=str(Path(name).parent))


class MLflowRecorder:
    """svd.train.record.Recorder into the active run: metrics by step, sample videos as artifacts,
    and each resume point as a LoggedModel of the run (model_type "checkpoint", its step a tag).

    Nothing here waits on the tracking server: each record joins a queue that one thread sends in
    order, retrying with backoff until the server takes it. A server that goes away mid-stage (a
    restart, a network cut) delays the run's records, never the training; metrics keep the time
    they were measured at. Leaving the `with` block waits for the queue to drain, so the run ends
    complete once the server is back, or after `patience` seconds more raises an error that says
    what was not sent (the stage's outputs are saved by then). Leaving it on an error waits a few
    seconds only, and leaves that error to be seen."""

    def __init__(self, patience: float = 900.0) -> None:
        active = mlflow.active_run()
        if active is None:
            raise RuntimeError("MLflowRecorder records into the active run: start one first")
        self.run_id, self.experiment_id = active.info.run_id, active.info.experiment_id
        self.patience = patience
        self.failures = 0  # sends that failed and were retried
        self.unsent = 0
        self.rejected: list[str] = []  # what the server refused (a 4xx): sending again cannot help
        self._client = mlflow.MlflowClient()
        self._files = tempfile.TemporaryDirectory(prefix="svd-records-")
        self._points: set[Path] = set()  # resume points this recorder has linked
        self._queue: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._sender = threading.Thread(target=self._send, name="mlflow-records", daemon=True)

    def __enter__(self) -> MLflowRecorder:
        self._sender.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self._queue.put(None)
        self._sender.join(self.patience if kind is None else 5.0)
        if not self._sender.is_alive():
            self._files.cleanup()
        if self.unsent or self.rejected:
            what = (
                f"MLflow at {tracking_uri()}, run {self.run_id}: {self.unsent} record(s) not sent,"
                f" {len(self.rejected)} rejected {self.rejected[:3]} (the stage's outputs are saved)"
            )
            if kind is not None:  # the error that ended the stage is the one to see
                log.error("%s", what)
                return
            raise RuntimeError(what)

    def metrics(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in values.items()]
        self._put(lambda: self._client.log_batch(self.run_id, metrics=batch))

    def video(self, name: str, frames: np.ndarray, fps: float, step: int) -> None:
        from svd.media.io import encode_video

        path = Path(self._files.name) / uuid.uuid4().hex / Path(name).name
        path.parent.mkdir()
        path.write_bytes(encode_video(frames, fps))
        folder = str(Path(name).parent)
        self._put(lambda: self._client.log_artifact(self.run_id, str(path), folder))

    def checkpoint(self, name: str, path: Path, step: int) -> None:
        """The point as it is now, hard-linked beside it (the loop replaces the file, a new inode, at
        the next point; a link in the same folder costs no copy), under its own name. A process
        killed before it sent its points left their links, each holding a point's bytes on disk:
        the first point linked here removes those of the same point."""
        prefix = f"{TMP_PREFIX}record-{path.name}-"
        if path not in self._points:
            self._points.add(path)
            for stale in path.parent.glob(f"{prefix}*"):
                shutil.rmtree(stale, ignore_errors=True)
        folder = path.parent / f"{prefix}{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        os.link(path, folder / path.name)
        model_id: str | None = None

        def send() -> None:
            nonlocal model_id
            if model_id is None:  # once: a retry uploads again into the same LoggedModel
                model_id = mlflow.initialize_logged_model(
                    name=name,
                    source_run_id=self.run_id,
                    experiment_id=self.experiment_id,
                    tags={"step": str(step)},
                    model_type="checkpoint",
                ).model_id
            self._client.log_model_artifact(model_id, str(folder / path.name))
            mlflow.finalize_logged_model(model_id, "READY")
            shutil.rmtree(folder)

        self._put(send)

    def _put(self, record: Callable[[], object]) -> None:
        with self._lock:
            self.unsent += 1
        self._queue.put(record)

    def _send(self) -> None:
        while (record := self._queue.get()) is not None:
            for wait in backoff():
                try:
                    record()
                    break
                except MlflowException as e:
                    status = e.get_http_status_code()
                    if 400 <= status < 500 and status != 429:  # refused for good, not "later"
                        self.rejected.append(str(e))
                        break
                    self._failed(e, wait)
                except OSError as e:  # the server is away: keep the record, try again
                    self._failed(e, wait)
            with self._lock:
                self.unsent -= 1

    def _failed(self, e: Exception, wait: float) -> None:
        self.failures += 1
        log.warning("MLflow run %s: a record was not sent (%s); again in %.1f s", self.run_id, e, wait)
        time.sleep(wait)


def backoff(first: float = 0.5, cap: float = 30.0) -> Iterator[float]:
    """Waits between tries: doubling from `first` up to `cap`, with jitter, without end."""
    wait = first
    while True:
        yield wait * (0.5 + random.random() / 2)
        wait = min(wait * 2, cap)

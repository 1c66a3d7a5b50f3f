"""Curation on real engines: the Prefect flow fanning videos out over local worker processes and over
a real local Ray, sources and outputs on an S3 endpoint over HTTP, and a CLI run killed again and
again. Every way gives the bytes of the plain in-process run."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from infra.stack import S3Endpoint, Service
from svd import storage
from svd.curation.annotate import list_videos
from svd.curation.curate import curate, write_outputs
from svd.data.clips import Windows
from svd.data.shards import read_shard
from svd.media.synth import make_corpus
from svd.params import CurateParams, SynthParams
from svd.storage import TMP_PREFIX, read_bytes

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def outputs(out: Path) -> dict[str, str]:
    return {
        str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(out.rglob("*"))
        if f.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = SynthParams(
        out=tmp_path_factory.mktemp("engine") / "raw", videos=4, segments=(2, 3), segment_seconds=(1.5, 2.5)
    )
    return make_corpus(p, seed=3)


@pytest.fixture(scope="module")
def serial(corpus: Path) -> CurateParams:
    p = CurateParams(
        sources=(str(corpus),),
        out=str(corpus.parent / "serial"),
        cache=str(corpus.parent / "c0"),
        shard_clips=3,
    )
    curate(p)
    return p


RUN_FLOW = """
import json, os, pickle, sys, threading, time
import psutil
from flows.annotate import annotate_videos, task_runner
from svd.params import CurateParams
p = CurateParams.model_validate_json(open(sys.argv[1]).read())
runner = task_runner(p)
if p.gpus_per_video:
    runner.init_kwargs["num_gpus"] = 1  # Ray is told of a GPU this machine lacks: scorers stay on cpu
listening = set()  # the addresses this process and every process it starts listen on, while they run
def watch():
    while True:
        try:
            ours = {os.getpid(), *(c.pid for c in psutil.Process().children(recursive=True))}
            tcp = psutil.net_connections("tcp")
            listening.update(c.laddr.ip for c in tcp if c.status == psutil.CONN_LISTEN and c.pid in ours)
        except psutil.Error:  # a process ended meanwhile
            pass
        time.sleep(0.5)
threading.Thread(target=watch, daemon=True).start()
try:
    results = annotate_videos.with_options(task_runner=runner)(p)
finally:
    if p.runner == "ray":
        import ray
        ray.shutdown()
open(sys.argv[2], "wb").write(pickle.dumps(results))
open(sys.argv[2] + ".listening", "w").write(json.dumps(sorted(listening)))
"""


def run_flow(p: CurateParams, server: Service, tmp_path: Path) -> list:
    """The flow in its own process, as a user runs it, with the server's URL in its environment from
    the start: Prefect reads it at import, and the threads that forward the workers' task events
    never see a URL set later (they started a temporary server of their own)."""
    spec, out = tmp_path / "curate.json", tmp_path / "results.pkl"
    spec.write_text(p.model_dump_json())
    env = {**os.environ, **server.env}
    subprocess.run([sys.executable, "-c", RUN_FLOW, str(spec), str(out)], env=env, check=True, timeout=600)
    results = pickle.loads(out.read_bytes())
    write_outputs(results, p)
    return results


def test_killed_runs_resume_to_the_same_bytes(serial: CurateParams, tmp_path: Path) -> None:
    """`svd curate` SIGKILLed at random points, several times, then run to the end: identical to an
    uninterrupted run, and no temporary file left anywhere."""
    killed = serial.model_copy(update={"out": str(tmp_path / "out"), "cache": str(tmp_path / "cache")})
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["curate"] = json.loads(killed.model_dump_json()) | {"workers": 1}
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(raw))
    cli = [sys.executable, "-m", "svd.cli", "--params", str(f), "curate"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run() -> subprocess.Popen:
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        return subprocess.Popen(cli, cwd=tmp_path, env=env, **quiet)

    rng = random.Random(0)
    for _ in range(4):
        proc = run()
        time.sleep(rng.uniform(1.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    last = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert last.returncode == 0, last.stderr[-5000:]
    assert outputs(Path(killed.out)) == outputs(Path(serial.out))
    left = list(tmp_path.rglob(f"{TMP_PREFIX}*"))
    assert not left, left


@pytest.mark.parametrize(("workers", "per_task"), [(1, 0), (2, 3)])
def test_local_workers_give_the_serial_bytes(
    serial: CurateParams, prefect_server: Service, workers: int, per_task: int, tmp_path: Path
) -> None:
    """Two workers given two tasks of two videos: the bytes depend neither on how the videos were
    grouped nor on which worker finished first."""
    update = {"out": str(tmp_path / "out"), "cache": str(tmp_path / "c"), "workers": workers}
    p = serial.model_copy(update=update | {"videos_per_task": per_task})
    results = run_flow(p, prefect_server, tmp_path)
    assert outputs(Path(p.out)) == outputs(Path(serial.out))
    assert len({r.worker for r in results}) <= workers
    assert len(results) == 4


def test_ray_gives_the_serial_bytes_and_loads_each_model_once_per_worker(
    serial: CurateParams, prefect_server: Service, tmp_path: Path
) -> None:
    update = {"out": str(tmp_path / "out"), "cache": str(tmp_path / "c"), "runner": "ray", "workers": 2}
    p = serial.model_copy(update=update | {"videos_per_task": 1})
    results = run_flow(p, prefect_server, tmp_path)
    assert outputs(Path(p.out)) == outputs(Path(serial.out))
    assert all(r.model_loads["text"] == 1 for r in results), [(r.worker, r.model_loads) for r in results]
    assert len({r.worker for r in results}) <= 2 < len(results)  # workers were reused across tasks
    # a local Ray listens on loopback only: its GCS, raylet, agents and workers alike
    listening = json.loads((tmp_path / "results.pkl.listening").read_text())
    assert listening and set(listening) <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening


def test_on_ray_each_task_gets_its_share_of_a_gpu(
    serial: CurateParams, prefect_server: Service, tmp_path: Path
) -> None:
    update = {"out": str(tmp_path / "out"), "cache": str(tmp_path / "c"), "runner": "ray", "workers": 2}
    p = serial.model_copy(update=update | {"gpus_per_video": 0.5, "videos_per_task": 1})
    results = run_flow(p, prefect_server, tmp_path)
    assert {r.devices for r in results} == {"0"}  # Ray placed every task on GPU 0, two at a time
    assert outputs(Path(p.out)) == outputs(Path(serial.out))
    # Ray starts a fresh process per GPU task unless told not to: models must still load once a worker
    assert all(r.model_loads["text"] == 1 for r in results), [(r.worker, r.model_loads) for r in results]
    assert len({r.worker for r in results}) <= 2 < len(results)


def test_sources_and_outputs_on_s3(
    serial: CurateParams, corpus: Path, s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    client = s3.client()
    for f in sorted(corpus.iterdir()):
        client.upload_file(str(f), s3.bucket, f"raw/{f.name}")
    p = serial.model_copy(
        update={
            "sources": (f"s3://{s3.bucket}/raw",),
            "out": f"s3://{s3.bucket}/curated",
            "cache": f"s3://{s3.bucket}/cache",
        }
    )
    sizes = {storage.name(v): n for v, n in list_videos(p.sources).items()}
    assert sizes == {v.name: v.stat().st_size for v in corpus.glob("*.mp4")}  # what tasks are evened by
    table = curate(p)
    local = pd.read_parquet(Path(serial.out) / "clips.parquet")
    assert table["video"].tolist() == [f"s3://{s3.bucket}/raw/{Path(v).name}" for v in local["video"]]
    pd.testing.assert_frame_equal(table.drop(columns="video"), local.drop(columns="video"), check_dtype=False)
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3.bucket, Prefix="curated/")["Contents"])
    assert keys == [
        "curated/clips.parquet",
        *sorted(f"curated/{s}" for s in local["shard"].dropna().unique()),
    ]
    back = pd.read_parquet(
        io.BytesIO(client.get_object(Bucket=s3.bucket, Key="curated/clips.parquet")["Body"].read())
    )
    assert back["clip"].equals(table["clip"])
    shard = local["shard"].dropna().iloc[0]
    remote = [(k, v) for k, v, _ in read_shard(f"s3://{s3.bucket}/curated/{shard}")]
    assert remote == [(k, v) for k, v, _ in read_shard(str(Path(serial.out) / shard))]  # same clip bytes
    # training streams clips from the S3 shards by range requests, as from local ones
    ok = local[local["status"] == "ok"].reset_index(drop=True)
    on_s3, here = (Windows(out, ok, 6, 4, (32, 32)) for out in (f"s3://{s3.bucket}/curated", serial.out))
    for i in (0, len(ok) - 1):
        assert np.array_equal(on_s3.window(i, 0.5), here.window(i, 0.5))
    # a missing object is the error a missing file is (the latent store reads without exists() first)
    with pytest.raises(FileNotFoundError, match="curated/no-such-entry"):
        read_bytes(f"s3://{s3.bucket}/curated/no-such-entry")

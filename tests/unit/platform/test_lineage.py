"""What an MLflow run says it read comes from dvc.yaml, with the hashes DVC itself gives."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import yaml

from svd.params import load
from svd.tracking import declared, declared_params, dvc_hashes, flatten, lineage

ROOT = Path(__file__).resolve().parents[3]


def test_a_stage_declares_its_params_and_deps_with_its_subset_filled_in(tmp_path, monkeypatch):
    p = load(ROOT / "params.yaml", {"train": {"video": {"subset": "hq"}}})
    monkeypatch.chdir(tmp_path)  # no dvc.yaml here: the checkout's
    what = declared("train-video", p)
    assert "data/subsets/hq.parquet" in what.deps and "svd/train/loop.py" in what.deps
    assert what.params == ("seed", "model", "conditioning", "train.compute", "train.video", "evaluate.sigmas")
    logged = declared_params(p, what.params)
    assert logged["train.video.subset"] == "hq" and logged["seed"] == "0"
    assert not any(k.startswith(("train.image", "train.finetune", "curate")) for k in logged)
    assert declared("latents-image", p).deps == ()  # no such stage: nothing declared


def test_hashes_are_dvcs_own(tmp_path, monkeypatch):
    """A file's md5 is what `dvc add` records for it; a folder's, its producing stage's `.dir` hash."""
    monkeypatch.chdir(tmp_path)
    Path("clips.parquet").write_bytes(b"table bytes\r\n" * 1000)
    lock = {
        "schema": "2.0",
        "stages": {"train-video": {"cmd": "x", "outs": [{"path": "models/video", "md5": "abc.dir"}]}},
    }
    Path("dvc.lock").write_text(yaml.safe_dump(lock))
    got = dvc_hashes(["models/video", "clips.parquet", "missing"])
    assert got == {
        "models/video": "abc.dir",
        "clips.parquet": hashlib.md5(b"table bytes\r\n" * 1000).hexdigest(),
    }
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "clips.parquet"], check=True)
    assert yaml.safe_load(Path("clips.parquet.dvc").read_text())["outs"][0]["md5"] == got["clips.parquet"]
    assert dvc_hashes(["models/video"], tmp_path / "absent.lock") == {}


def test_lineage_tags_always_name_commit_and_flow_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tags = lineage({"data/raw": "abc.dir"}, {"prefect.flow_run_id": "1234"})
    assert (
        tags["git.commit"] and tags["prefect.flow_run_id"] == "1234" and tags["dvc.md5.data/raw"] == "abc.dir"
    )
    assert lineage({})["prefect.flow_run_id"] == "none"
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}}) == {"a.b": "1", "a.c.d": "[1, 2]"}

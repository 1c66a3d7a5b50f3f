"""Promotion gates and lineage lookups: the decisions registration makes, on their own."""

from __future__ import annotations

import yaml

from svd.params import Gates
from svd.registry import gate_failures
from svd.tracking import dvc_hashes, flatten, lineage


def test_gates_pass_fail_and_unset():
    metrics = {"val_loss": 0.4, "motion_spearman": 0.6}
    assert gate_failures(metrics, Gates()) == []
    assert gate_failures(metrics, Gates(max_val_loss=0.5, min_motion_spearman=0.5)) == []
    failures = gate_failures(metrics, Gates(max_val_loss=0.3, min_motion_spearman=0.9))
    assert len(failures) == 2 and "val_loss" in failures[0] and "motion_spearman" in failures[1]
    # an undefined correlation (constant motion in every sample) cannot pass a motion gate
    assert gate_failures({"val_loss": 0.1, "motion_spearman": None}, Gates(min_motion_spearman=0.0))


def test_dvc_hashes_come_from_the_stage_that_produced_the_input(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        yaml.safe_dump(
            {
                "schema": "2.0",
                "stages": {
                    "train_video": {
                        "cmd": "x",
                        "outs": [{"path": "models/video", "md5": "abc.dir", "hash": "md5"}],
                    },
                    "filter": {
                        "cmd": "y",
                        "deps": [{"path": "data/curated/clips.parquet", "md5": "def"}],
                        "outs": [{"path": "data/subsets", "md5": "123.dir"}],
                    },
                },
            }
        )
    )
    got = dvc_hashes(["models/video", "data/subsets", "data/curated/clips.parquet", "missing"], lock)
    assert got == {"models/video": "abc.dir", "data/subsets": "123.dir", "data/curated/clips.parquet": "def"}
    assert dvc_hashes(["models/video"], tmp_path / "absent.lock") == {}


def test_lineage_tags_always_name_commit_and_flow_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tags = lineage([], {"prefect.flow_run_id": "1234"})
    assert tags["git.commit"] and tags["prefect.flow_run_id"] == "1234"
    assert lineage([])["prefect.flow_run_id"] == "none"
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}}) == {"a.b": "1", "a.c.d": "[1, 2]"}

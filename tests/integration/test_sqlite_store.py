"""The local MLflow store survives a first run killed while MLflow makes it. Not a unit test: it
kills a process, and two imports of MLflow and its migrations take seconds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow

from svd import tracking

ROOT = Path(__file__).resolve().parents[2]
# The first run of a project, SIGKILLed at the KILL_AT-th SQL statement: MLflow runs about 1,700 of
# them to make a SQLite store, its migrations one by one.
KILLED = """
import os, sqlalchemy
from sqlalchemy import event
from svd import tracking
statements = 0
@event.listens_for(sqlalchemy.engine.Engine, "after_cursor_execute")
def count(*args):
    global statements
    statements += 1
    if statements == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), 9)
tracking.configure()
"""


def test_a_first_run_killed_while_mlflow_makes_its_store_leaves_none_half_made(tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONPATH": str(ROOT)}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED], cwd=tmp_path, env=env | {"KILL_AT": "600"}, capture_output=True
    )
    assert killed.returncode == -9, killed.stderr.decode()[-3000:]
    assert not (tmp_path / "mlflow.db").exists()  # MLflow itself left a store half migrated there
    left = [f.name for f in tmp_path.glob(".tmp-*")]  # its own half-made store, and maybe its journal
    assert left and all(re.fullmatch(r"\.tmp-\d+-[0-9a-f]{8}-mlflow\.db(-journal)?", f) for f in left), left

    # the next run makes the store whole, runs in it, and removes what the killed one left
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        tracking.configure()
        with mlflow.start_run(run_name="after the kill"):
            mlflow.log_metric("loss", 1.0)
        (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    finally:  # what configure() set for the rest of this process
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.tracking.fluent._active_experiment_id = None
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    assert run.info.run_name == "after the kill" and run.data.metrics == {"loss": 1.0}
    assert sorted(f.name for f in tmp_path.iterdir() if f.name != "mlartifacts") == ["mlflow.db"]

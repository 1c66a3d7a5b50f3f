"""The arena as a person uses it: `svd arena serve` on loopback, its page in a real headless
Chromium (Debian's chromium, driven by Selenium), votes cast by clicking, a ranking that follows
them, and `svd arena results` logging it to MLflow against the registered model versions."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
from PIL import Image

from svd.media.io import write_video

VOTES = 6


def samples(folder: Path, seed: int) -> str:
    """Evaluation's layout: <key>.png beside <key>_m<bucket>.mp4."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for key in ("k1", "k2"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{key}.png")
        for bucket in (0, 128):
            write_video(
                folder / f"{key}_m{bucket:03d}.mp4", rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), 6
            )
    return str(folder)


def test_votes_cast_by_clicking_rank_the_models(chromium, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    client.create_registered_model("svd-video")
    for _ in range(2):  # the two versions the arena compares
        client.create_model_version("svd-video", source=str(tmp_path))
    a, b = "svd-video/1", "svd-video/2"
    db = tmp_path / "arena.sqlite"
    cli = [sys.executable, "-m", "svd.cli", "arena", "--db", str(db)]
    server = subprocess.Popen(
        [
            *cli,
            "serve",
            "--model",
            f"{a}={samples(tmp_path / 'a', 0)}",
            "--model",
            f"{b}={samples(tmp_path / 'b', 1)}",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = ""
        while "arena on " not in line:
            line = server.stdout.readline()
            assert line, "the arena exited before serving"
        url = line.split("arena on ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")  # loopback unless told otherwise
        for _ in range(VOTES):  # a prefers a's pictures and b's prompt following
            chromium.get(url)
            pair = int(chromium.find_element(By.NAME, "pair").get_attribute("value"))
            with sqlite3.connect(db) as c:
                left = c.execute("select left from pairs where id = ?", (pair,)).fetchone()[0]
            a_side, b_side = ("left", "right") if left == a else ("right", "left")
            chromium.find_element(By.ID, f"quality-{a_side}").click()
            chromium.find_element(By.ID, f"prompt-{b_side}").click()
            button = chromium.find_element(By.ID, "vote")
            button.click()
            WebDriverWait(chromium, 20).until(expected_conditions.staleness_of(button))
        with sqlite3.connect(db) as c:
            counts = dict(c.execute("select axis, count(*) from votes group by axis").fetchall())
            shown = {p for (p,) in c.execute("select distinct pair from votes")}
        assert counts == {"quality": VOTES, "prompt": VOTES} and len(shown) == 4  # every pair got a vote
        chromium.get(url + "ranking")
        first = {
            axis: chromium.find_element(By.CSS_SELECTOR, f"#{axis} tr:nth-child(2) td.model").text
            for axis in ("quality", "prompt")
        }
        assert first == {"quality": a, "prompt": b}
    finally:
        server.terminate()
        server.wait(timeout=20)

    out = subprocess.run(
        [*cli, "results", "--rounds", "100"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert (
        f"1. {a}" in out.stdout.split("Prompt following")[0]
        and f"1. {b}" in out.stdout.split("Prompt following")[1]
    )
    run = mlflow.search_runs(experiment_names=["arena"], output_format="list")[0]
    assert run.data.metrics[f"elo_quality/{a}"] > 1000 > run.data.metrics[f"elo_quality/{b}"]
    assert run.data.metrics["votes_prompt"] == VOTES
    tags = {v: client.get_model_version("svd-video", v).tags for v in ("1", "2")}
    assert float(tags["1"]["arena.elo_quality"]) > float(tags["2"]["arena.elo_quality"])
    assert float(tags["2"]["arena.elo_prompt"]) > float(tags["1"]["arena.elo_prompt"])
    card = client.get_model_version("svd-video", "1").description
    assert "## Arena" in card and "Visual quality: Elo" in card and "rank 1 of 2" in card

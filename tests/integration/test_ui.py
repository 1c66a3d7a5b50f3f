"""The two UIs a user opens, loaded in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium): the Prefect UI lists the deployments of infra/prefect.yaml,
and the MLflow UI lists the registered model. Both are single-page apps, so this also proves the
pages reach their APIs (the Prefect UI once pointed the browser at the wrong port)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.stack import Service, create_work_pool, start_prefect

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.stack


def page_shows(browser, url: str, text: str, timeout: float = 60) -> str:
    """Load `url` and wait until the rendered page's text contains `text`; the text it had."""
    browser.get(url)
    deadline = time.monotonic() + timeout
    shown = ""
    while time.monotonic() < deadline:
        shown = browser.execute_script("return document.body ? document.body.innerText : ''")
        if text in shown:
            return shown
        time.sleep(1)
    raise AssertionError(f"{url}: no {text!r} after {timeout:.0f} s; the page showed:\n{shown[:2000]}")


@pytest.fixture
def prefect_with_ui(tmp_path: Path) -> Iterator[Service]:
    server = start_prefect(tmp_path / "ui-stack", ui=True)
    try:
        yield server
    finally:
        server.stop()


def test_prefect_ui_lists_the_deployments(chromium, prefect_with_ui: Service) -> None:
    create_work_pool(prefect_with_ui, "local")
    deploy = ["--no-prompt", "deploy", "--prefect-file", "infra/prefect.yaml", "--name", "train-video"]
    env = {**os.environ, **prefect_with_ui.env}
    r = subprocess.run(
        [sys.executable, "-m", "prefect", *deploy], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    ui = prefect_with_ui.url.removesuffix("/api")
    shown = page_shows(chromium, f"{ui}/deployments", "train-video")
    assert "Unable to connect" not in shown


def test_mlflow_ui_lists_the_registered_model(chromium, mlflow_server: Service) -> None:
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    client = mlflow.MlflowClient()
    client.create_registered_model("svd-ui-check", description="registered by the UI test")
    page_shows(chromium, f"{mlflow_server.url}/#/models", "svd-ui-check")

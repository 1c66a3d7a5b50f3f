"""`python -m flows <flow> [...]`: the entry point dvc.yaml's stages and `make demo` call."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

FLOWS = ["pipeline", "synth", "curate", "filter", "latents", "train", "evaluate", "register", "ablate"]


@contextmanager
def temporary_server() -> Iterator[None]:
    """A temporary Prefect server for this process and the processes it starts.

    With none configured, Prefect starts a temporary server in every process that needs one, and
    child processes inherit no URL from it: each of curate's worker processes then started a server
    of its own (seconds of CPU each, on cores the annotation needs) and its task runs went there.
    One temporary server here, its URL in the environment, serves them all. What the run logged and
    emitted is sent before the server stops, whether the run succeeded or failed (sent to a stopped
    server it would be retried for a minute and lost)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            try:
                yield
            finally:
                APILogWorker.drain_all()
                EventsWorker.drain_all()
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m flows")
    ap.add_argument("flow", choices=FLOWS)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--stage", choices=["image", "video", "finetune"], default="image")
    ap.add_argument("--processes", type=int, default=1, help="train: processes under torchrun, one per GPU")
    args = ap.parse_args(argv)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "svd")  # library logs show in the Prefect UI
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s")  # WARNING for libraries (httpx, ...)
    logging.getLogger("svd").setLevel(logging.INFO)
    kwargs: dict[str, Any] = {"params_path": args.params}
    if args.flow in ("latents", "train"):
        kwargs["stage"] = args.stage
    if args.flow == "train":
        kwargs["processes"] = args.processes

    # Only the flow asked for is imported: a DVC stage is a process of its own, and the training
    # flows' torch and diffusers cost the others seconds.
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        getattr(importlib.import_module(f"flows.{args.flow}"), args.flow)(**kwargs)
        return
    # No server configured: the flow's module imports while a temporary server boots, each taking
    # seconds. Prefect's server side is imported here first, so the two threads import disjoint modules.
    import prefect.events.worker
    import prefect.logging.handlers
    import prefect.server.api.server  # noqa: F401

    with ThreadPoolExecutor(1) as pool:
        module = pool.submit(importlib.import_module, f"flows.{args.flow}")
        with temporary_server():
            getattr(module.result(), args.flow)(**kwargs)


if __name__ == "__main__":
    main()

"""`python -m flows <flow> [...]`: the entry point dvc.yaml's stages and `make demo` call."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

STEPS = ["pipeline", "synth", "curate", "filter", "latents", "train", "evaluate", "register"]


@contextmanager
def prefect_api() -> Iterator[None]:
    """The Prefect server this process and the processes it starts report to.

    With none configured, Prefect starts a temporary server in every process that needs one, and
    child processes inherit no URL from it: each of curate's worker processes then started a server
    of its own (seconds of CPU each, on cores the annotation needs) and its task runs went there.
    One temporary server here, its URL in the environment, serves them all and stops with this
    process's run."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield
            # What the run logged and emitted is still queued; sent to a stopped server it would be
            # retried for a minute and lost.
            APILogWorker.drain_all()
            EventsWorker.drain_all()
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m flows")
    ap.add_argument("flow", choices=STEPS)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--stage", choices=["image", "video", "finetune"], default="image")
    ap.add_argument("--processes", type=int, default=1, help="train: processes under torchrun, one per GPU")
    args = ap.parse_args(argv)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "svd")  # library logs show in the Prefect UI
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s")  # WARNING for libraries (httpx, ...)
    logging.getLogger("svd").setLevel(logging.INFO)

    kwargs: dict = {"params_path": args.params}
    if args.flow in ("latents", "train"):
        kwargs["stage"] = args.stage
    if args.flow == "train":
        kwargs["processes"] = args.processes
    # Only the flow asked for is imported (a DVC stage is a process of its own, and the training
    # flows' torch and diffusers cost the others seconds), and while a temporary server boots: each
    # takes seconds, mostly waiting on the other core.
    with ThreadPoolExecutor(1) as pool:
        module = pool.submit(importlib.import_module, f"flows.{args.flow}")
        with prefect_api():
            getattr(module.result(), args.flow)(**kwargs)


if __name__ == "__main__":
    main()

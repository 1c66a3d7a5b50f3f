"""`python -m flows <flow> [...]`: the entry point dvc.yaml's stages and `make demo` call."""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STARTED_NS = time.time_ns()  # before this process read a file of the project but this one
# dvc.yaml's stages run these, one process each
STEPS = ["synth", "curate", "filter", "latents", "train", "evaluate", "register"]
FLOWS = ["pipeline", *STEPS, "ablate"]


@dataclass
class TemporaryServer:
    """A temporary Prefect server booting in a process of its own."""

    url: str
    process: subprocess.Popen[bytes]

    def ready(self) -> None:
        """Wait until it answers. Prefect's 20-s default is too short here: on a new database the boot
        runs every migration (21 s on a 2-core machine with nothing else running), and it shares the
        CPU with the caller's import. A server that dies is seen at once, so a long wait only costs
        a hang."""
        import httpx
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

        timeout = max(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), 180)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1) as client:
            while self.alive() and time.monotonic() < deadline:
                with suppress(httpx.TransportError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                time.sleep(0.1)
        code = self.process.returncode
        why = f"exited with code {code}" if code is not None else f"{timeout} s"
        raise RuntimeError(f"the temporary Prefect server at {self.url} did not start: {why}")

    def alive(self) -> bool:
        return self.process.poll() is None


@contextmanager
def temporary_server(scoped: bool = True) -> Iterator[TemporaryServer]:
    """A temporary Prefect server for this process and the processes it starts. It boots in a
    process of its own; its `ready()` waits until it answers, so the caller can import its flow
    meanwhile. `scoped=False` (the warm process): only the environment and Prefect's global
    settings name it, since a settings context would pass to every fork over the settings that
    each takes from its client.

    With none configured, Prefect starts a temporary server in every process that needs one, and
    child processes inherit no URL from it: each of curate's worker processes then started a server
    of its own (seconds of CPU each, on cores the annotation needs) and its task runs went there.
    One temporary server here, its URL in the environment, serves them all. It is Prefect's app
    under uvicorn, started as Prefect starts its own temporary server, but without importing the
    server side into this process: that import alone took 3 s of every `dvc repro` stage before the
    boot could begin. What the run logged and emitted is sent before the server stops, whether the
    run succeeded or failed (sent to a stopped server it would be retried for a minute and lost)."""
    import prefect
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    site = str(Path(prefect.__file__).parents[1])  # the app is imported from there, not from cwd
    app = ["--factory", "prefect.server.api.server:create_app", "--app-dir", site, "--lifespan", "on"]
    env = os.environ | get_current_settings().to_environment_variables(exclude_unset=True)
    env |= {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    # as the stack's servers: no usage reports (its first one raced the migrations of a new database)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    where = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "error"]
    cmd = [sys.executable, "-m", "uvicorn", *app, *where]

    server = subprocess.Popen(cmd, env=env, preexec_fn=_die_with(os.getpid()))
    try:
        # In the environment for child processes, and in Prefect's global settings for threads that
        # start with no context of their own (the process pool's event forwarder: with no URL it
        # would start another temporary server and send the workers' events there).
        os.environ["PREFECT_API_URL"] = url
        refresh_global_settings_context()
        with temporary_settings({PREFECT_API_URL: url}) if scoped else nullcontext():
            try:
                yield TemporaryServer(url, server)
            finally:
                from prefect.events.worker import EventsWorker
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all()
                EventsWorker.drain_all()
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        refresh_global_settings_context()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _die_with(parent: int) -> Callable[[], None] | None:
    """Run in the temporary server's process before it starts: it gets SIGTERM once `parent` dies,
    SIGKILL included (Linux's parent-death signal; it fires when the thread that started the server
    ends, so temporary_server() is entered from the main thread). A stage killed so (the OOM killer,
    `kill -9`) left its server running for good, holding a port and Prefect's database. The other
    processes a stage starts (curate's workers, torchrun's ranks) are not covered. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it

    def arm() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def load(name: str) -> Callable[..., Any]:
    """The flow `name`, imported with the cyclic garbage collector paused, and what the import made
    frozen out of later collections. Torch, diffusers, MLflow and Prefect make millions of objects
    that live as long as the process. Collecting during the import walked them again and again: it
    cost 1.5-2 s of a training flow's 11-s import on 2 cores. Frozen, they are not walked by the run's
    full collections either. The price: cyclic garbage the import left is never freed."""
    gc.disable()
    try:
        return getattr(importlib.import_module(f"flows.{name}"), name)
    finally:
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> None:
    from flows import warm

    ap = argparse.ArgumentParser(prog="python -m flows")
    ap.add_argument(
        "flow", choices=[*FLOWS, "warm"], help="warm: serve the stages of `dvc repro` (flows/warm.py)"
    )
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--stage", choices=["image", "video", "finetune"], default="image")
    ap.add_argument("--processes", type=int, default=1, help="train: processes under torchrun, one per GPU")
    idle = "warm: end after this many seconds without a stage"
    ap.add_argument("--idle", type=warm.seconds, default=0, help=idle)
    args = ap.parse_args(argv)
    started = dict(os.environ)  # before the settings below and the imports: for the warm process
    # The process ends with the flow. The interpreter's last collection would walk everything the run
    # left, 2-3 s after a training flow, to free memory that the OS takes back at exit anyway. Objects
    # in reference cycles then get no finalizer: every file here is written in a `with` block.
    atexit.register(gc.freeze)
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

    if args.flow == "warm":
        serve_warm(started, args.idle)
    elif PREFECT_API_URL.value():
        load(args.flow)(**kwargs)
    else:
        # No server configured: a temporary one boots while this process imports the flow's module,
        # each taking seconds.
        with temporary_server() as server:
            flow = load(args.flow)
            server.ready()
            flow(**kwargs)


def serve_warm(started: dict[str, str], idle: float) -> None:
    """The warm process; when an imported file changes it starts again as a new program, for a fresh
    import of everything. Its children's flow runs go to their own configured Prefect server, else
    to the warm process's: the one configured for `make serve`'s, else a temporary one it holds while
    it lives. Started by hand or by `make serve` (no idle end), it takes over from one that a stage
    started: that one serves no more and ends once its running stages have."""
    from prefect.settings import PREFECT_API_URL

    from flows import warm

    root = Path.cwd()
    lock = warm.claim(root, idle)
    if lock is None and not idle and (held := warm.holder(root)) and held.idle > 0:
        with suppress(ProcessLookupError):  # ended meanwhile
            os.kill(held.pid, signal.SIGUSR1)
        lock = warm.claim(root, idle, wait=60)
    if lock is None:
        raise SystemExit(f"python -m flows warm: another warm process serves {root}, or is starting")
    if PREFECT_API_URL.value():
        again = warm.serve(root, load, FLOWS, main, started, STARTED_NS, lock)
    else:
        with temporary_server(scoped=False) as server:
            again = warm.serve(root, load, FLOWS, main, started, STARTED_NS, lock, server.ready, server.alive)
    lock.release()
    if again:
        argv = [sys.executable, "-m", "flows", "warm", "--idle", f"{idle:g}"]
        os.execve(sys.executable, argv, started)


if __name__ == "__main__":
    from flows import warm

    # A stage that a warm process in this project can run is forked from it (flows/warm.py); with
    # none, the stage starts one for itself and the stages after it.
    code = None
    if sys.argv[1:2] and sys.argv[1] in FLOWS:
        code = warm.hand_over(sys.argv[1:])
        # Only a step starts one: a pipeline or an ablation is one long process, which would wait
        # for every flow's imports and leave a process behind for nothing.
        idle = warm.idle_seconds() if code is None and sys.argv[1] in STEPS else 0
        if idle > 0 and warm.start(Path.cwd(), sys.argv[1:], idle):
            code = warm.hand_over(sys.argv[1:])
    if code is None:
        main()
    else:
        sys.exit(code)

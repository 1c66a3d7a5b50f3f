"""A warm process for the `dvc repro` door: `python -m flows warm` imports every flow once and forks
a child per `python -m flows <flow>` that asks, in the project it serves.

A DVC stage is a process of its own. Each one spent 8-10 s of a 2-core machine importing torch,
diffusers, MLflow and Prefect, and booting a Prefect server, before its step began: 13 s a stage,
27% of the default profile's `dvc repro`. Build tools with the same problem keep a warm process that
clients hand their work to (the Bazel server, the Gradle daemon, dmypy); this is that, without a
scheduler: a stage still runs when DVC runs it, in a process of its own, now forked from one that
has imported everything. The stage's command hands over its arguments, working directory,
environment and stdin/stdout/stderr, so DVC sees the same output and exit code as from a cold run.

The child runs the code the warm process imported. When a module of the project changed since, it
is not used: that stage runs cold, and the warm process restarts (re-imports) once its running
children are done. The client closing its end (DVC stopped, Ctrl-C) ends the child's process group.
Unix only (fork); elsewhere, and with no warm process, stages run cold as before."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("svd.warm")
STALE = -(2**31)  # the answer that says "run it yourself": no exit code is this


def address(root: Path) -> str:
    """The socket of the warm process serving `root`: in the temp folder, since a Unix socket's path
    must be short (a project's own folder can exceed the 104-108 bytes allowed)."""
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / f"svd-warm-{os.getuid()}-{digest}.sock")


def hand_over(argv: list[str]) -> int | None:
    """Run `python -m flows <argv>` in a child of the warm process serving the working directory:
    its exit code, or None when no warm process serves it or it cannot run this (run it here)."""
    if not hasattr(socket, "send_fds"):
        return None
    request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "prefix": interpreter()}
    body = json.dumps(request).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(address(Path.cwd()))
            socket.send_fds(sock, [struct.pack("!I", len(body)) + body], [0, 1, 2])
        except OSError:  # none running, a socket file a killed one left, or no stdin/stdout/stderr
            return None
        reply = _read(sock, 4)
    if len(reply) < 4:
        print("python -m flows: the warm process ended during the run", file=sys.stderr)
        return 1
    code = struct.unpack("!i", reply)[0]
    return None if code == STALE else code


def interpreter() -> str:
    """The environment (venv) this Python runs in: a client in another must not run this one's."""
    return os.path.realpath(sys.prefix)


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n and (chunk := sock.recv(n - len(data))):
        data += chunk
    return data


def project_modules(root: Path) -> dict[str, int]:
    """The project's imported source files and their modification times: what a child would run."""
    files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    mine = [Path(f) for f in files if f and Path(f).is_relative_to(root)]
    return {str(f): f.stat().st_mtime_ns for f in mine}


def changed(imported: dict[str, int]) -> bool:
    for f, mtime in imported.items():
        try:
            if os.stat(f).st_mtime_ns != mtime:
                return True
        except FileNotFoundError:
            return True
    return False


def serve(
    root: Path, load: Callable[[str], object], flows: list[str], run: Callable[[list[str]], None]
) -> None:
    """Import every flow, then fork a child per request until a module of the project changes; then
    finish the running children and return, for the caller to start again with fresh imports."""
    for name in flows:
        load(name)
    imported = project_modules(root)
    path = address(root)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a killed warm process's
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop through the pipe
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stopped: end the children's groups too
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    children: dict[int, socket.socket] = {}
    ending: dict[int, float] = {}  # children whose client is gone: when to stop asking
    print(f"warm: {len(flows)} flows imported; serving {root} on {path}", flush=True)
    try:
        while listener.fileno() >= 0 or children:
            for key, _ in sel.select(timeout=1.0 if ending else None):
                if key.data == "accept":
                    conn, _ = listener.accept()
                    if (got := _receive(conn)) is None:
                        continue
                    request, fds = got
                    if changed(imported):
                        print("warm: the project's code changed; restarting when idle", flush=True)
                        sel.unregister(listener)
                        listener.close()
                        os.unlink(path)
                        _refuse(conn, fds)
                        continue
                    if request.get("prefix") != interpreter():  # another venv: its own packages
                        _refuse(conn, fds)
                        continue
                    pid = _fork(conn, fds, request, [listener, wake_r, wake_w, *children.values()], run)
                    print(
                        f"warm: process {pid} runs `python -m flows {' '.join(request['argv'])}`", flush=True
                    )
                    children[pid] = conn
                    sel.register(conn, selectors.EVENT_READ, pid)
                elif key.data == "child":
                    while os.read(wake_r, 512) == 512:
                        pass
                else:  # the client's end closed (or it wrote, which it never does): it is gone
                    _signal(key.data, signal.SIGINT)  # as Ctrl-C would: the flow run ends as crashed
                    ending[key.data] = time.monotonic() + 30
                    sel.unregister(key.fileobj)
            _reap(children, sel)
            for pid, deadline in list(ending.items()):
                if pid not in children:
                    del ending[pid]
                elif time.monotonic() > deadline:
                    _signal(pid, signal.SIGKILL)
    finally:
        signal.set_wakeup_fd(-1)
        for pid in children:
            _signal(pid, signal.SIGTERM)
        if listener.fileno() >= 0:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _refuse(conn: socket.socket, fds: list[int]) -> None:
    """Tell the client to run the flow itself."""
    for fd in fds:
        os.close(fd)
    with contextlib.suppress(OSError):  # a client that is gone hears nothing
        conn.sendall(struct.pack("!i", STALE))
    conn.close()


def _signal(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)


def _reap(children: dict[int, socket.socket], sel: selectors.BaseSelector) -> None:
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if not done:
            continue
        conn = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        print(f"warm: process {pid} exited with {code}", flush=True)
        with contextlib.suppress(KeyError):
            sel.unregister(conn)
        with contextlib.suppress(OSError):  # a client that is gone hears nothing
            conn.sendall(struct.pack("!i", code))
        conn.close()


def _receive(conn: socket.socket) -> tuple[dict, list[int]] | None:
    """A client's request and its stdin, stdout and stderr; None for a probe (wait_until_served)."""
    conn.settimeout(10)
    msg, fds = b"", list[int]()
    try:
        msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        size = struct.unpack("!I", msg[:4])[0]
        body = msg[4:] + (_read(conn, size - len(msg) + 4) if len(msg) - 4 < size else b"")
        return json.loads(body), fds
    except (OSError, ValueError, struct.error) as e:
        if fds or msg:
            print(f"warm: a request could not be read ({e})", file=sys.stderr, flush=True)
        for fd in fds:
            os.close(fd)
        conn.close()
        return None


def _fork(
    conn: socket.socket, fds: list[int], request: dict, inherited: list, run: Callable[[list[str]], None]
) -> int:
    """Fork the child for one request; in the child it never returns: the child exits."""
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        for f in inherited:  # the warm process's ends: their holder is the warm process alone
            f.close() if isinstance(f, socket.socket) else os.close(f)
        conn.close()
        os.setpgid(0, 0)  # its own group: ending the stage ends what it started (pools, torchrun)
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
            os.close(fd)
        code = _child(request, run)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _child(request: dict, run: Callable[[list[str]], None]) -> int:
    """Become the process the client would have been, run the flow, run the exit handlers."""
    import numpy as np
    import torch
    from prefect.context import refresh_global_settings_context

    served = os.environ.get("PREFECT_API_URL")
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if served and "PREFECT_API_URL" not in os.environ:  # the warm process's temporary server
        os.environ["PREFECT_API_URL"] = served
    refresh_global_settings_context()
    if threads := os.environ.get("OMP_NUM_THREADS"):  # OpenMP read it once, in the warm process
        torch.set_num_threads(int(threads))
    torch.seed()  # a forked child would otherwise share the unseeded generators of its siblings
    np.random.seed()
    sys.argv = ["python -m flows", *request["argv"]]
    code = 0
    try:
        run(request["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # MLflow ends its runs there, as in a process that exits
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def wait_until_served(root: Path, timeout: float) -> bool:
    """True once a warm process answers on `root`'s socket."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(address(root))
                return True
            except OSError:
                time.sleep(0.2)
    return False

"""A warm process for the `dvc repro` door: `python -m flows warm` imports every flow once and forks
a child per `python -m flows <flow>` that asks, in the project it serves.

A DVC stage is a process of its own. Each one spent 8-10 s of a 2-core machine importing torch,
diffusers, MLflow and Prefect before its step began. Build tools with the same problem keep a warm
process that clients hand their work to (the Bazel server, the Gradle daemon, dmypy); this is that,
without a scheduler: a stage still runs when DVC runs it, in a process of its own, now forked from
one that has imported everything. The stage's command hands over its arguments, working directory,
environment and stdin/stdout/stderr, forwards Ctrl-C and SIGTERM, and exits as the fork did, so DVC
sees what a cold run would give it.

`make serve` starts one on its Prefect server. Without it, a step's command that finds none starts
one (with a temporary Prefect server of its own) and waits for it, as the Gradle daemon is started
by the build that needs it; that one ends after SVD_WARM_IDLE_S seconds without a stage, and one
started by hand or by `make serve` takes over from it. A lock per project keeps one at a time.

A fork runs what the warm process imported, so it is used only when that is what a cold process
would run: no imported file changed since (the warm process then starts again with fresh imports,
once its children are done), the same venv and groups, `ulimit`s a fork can take (no memory cap,
the same stack size, hard limits no higher), no lower niceness, CPUs the warm process may use, and
the same settings that libraries read once, at import (HF_*, PYTHON*, thread counts, locale, ...).
Otherwise the stage runs cold, as it does on platforms without fork, with SVD_WARM_IDLE_S=0 and no
warm process serving, or while one drains its stages before starting again."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import math
import os
import resource
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from hashlib import sha1
from pathlib import Path

REFUSED = -(2**31)
FORWARDED = {signal.SIGINT, signal.SIGTERM}  # the answer that says "run it yourself": no exit code is this
# Variables read when a library is imported or the interpreter starts: a fork would keep the warm
# process's values, so a client whose values differ runs cold.
AT_IMPORT = (
    "HOME",
    "XDG_",
    "PYTORCH_",
    "LD_",
    "GLIBC_",
    "MALLOC_",
    "KMP_",
    "GOMP_",
    "PYTHON",
    "HF_",
    "HUGGINGFACE_",
    "TRANSFORMERS_",
    "DIFFUSERS_",
    "TORCH",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "TMPDIR",
    "TZ",
    "LANG",
    "LC_",
    "PREFECT_LOGGING_",
)
IDLE = "SVD_WARM_IDLE_S"  # how long a warm process that a stage started waits for the next; 0: start none
LIMITS = sorted(name for name in dir(resource) if name.startswith("RLIMIT_"))  # ulimit's, on this OS


def folder() -> Path:
    """This user's folder of warm-process sockets: only its owner can enter it, so no other user can
    stand in for a warm process, or read what a client hands over."""
    path = Path(tempfile.gettempdir()) / f"svd-warm-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{path} must be a folder only its owner (uid {os.getuid()}) can open")
    return path


def address(root: Path) -> Path:
    """The socket of the warm process serving `root`, short enough for a Unix socket (104-108 bytes
    at most, which a project's own folder can exceed)."""
    return folder() / f"{sha1(str(root.resolve()).encode()).hexdigest()[:16]}.sock"


def interpreter() -> str:
    """The environment (venv) this Python runs in: a client in another must not run this one's."""
    return os.path.realpath(sys.prefix)


def groups() -> list[int]:
    """The effective group, then the supplementary ones: whose files a process may open and make."""
    return [os.getegid(), *sorted(os.getgroups())]


def at_import(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(AT_IMPORT)}


# --- the client: `python -m flows <flow>` ------------------------------------------------------


def hand_over(argv: list[str]) -> int | None:
    """Run `python -m flows <argv>` as a fork of the warm process serving the working directory: its
    exit code, or None when none serves it or it cannot run this (then run it here)."""
    if not hasattr(socket, "send_fds"):
        return None
    body = json.dumps(_request(argv)).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(address(Path.cwd())))
            socket.send_fds(sock, [struct.pack("!I", len(body)) + body], [0, 1, 2])
            pid = _int(sock)
        except OSError:  # none running, a socket a killed one left, no stdin/stdout/stderr
            return None
        if pid is None or pid == REFUSED:
            return None
        # Ctrl-C and SIGTERM go to the fork, as they would reach a cold process; then wait for it
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda sig, _: _forward(pid, sig))
        try:
            code = _int(sock)
        except OSError:
            code = None
    if code is None:  # the connection ended: the fork (which holds it too) and the warm process are gone
        print("python -m flows: the warm process ended during the run", file=sys.stderr)
        return 1
    if code < 0:  # killed by a signal: so is this process, for DVC to see the same
        sys.stderr.flush()
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def _request(argv: list[str]) -> dict:
    """What a fork must take from this process to be the process this one would be."""
    umask = os.umask(0)
    os.umask(umask)
    return {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "prefix": interpreter(),
        "umask": umask,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "limits": {name: resource.getrlimit(getattr(resource, name)) for name in LIMITS},
        "groups": groups(),
    }


def start(root: Path, argv: list[str], idle: float, timeout: float = 180) -> bool:
    """Start a warm process for `root` that ends after `idle` seconds without a stage, or wait for
    the one that is starting: True once one serves (it may still refuse this stage: ask it again).
    The stage waits instead of importing on its own: on 2 cores two imports at once take as long as
    both in turn. False (run cold) when one is there but will not serve soon (its flows do not import, it is
    draining its stages), none came to serve, it would refuse this stage anyway (a memory cap), or
    the project is one of DVC's temporary experiment workspaces, which it would outlive."""
    try:
        path = address(root)
        if _answers(path):  # serving since this stage asked
            return True
        if _refusal(_request(argv), os.environ) or "/.dvc/tmp/" in f"{root.resolve()}/":
            return False
        started: subprocess.Popen[bytes] | None = None
        if holder(root) is None:  # none serves or starts: this client starts one
            log = root / ".stack" / "logs" / "warm.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as out:
                started = subprocess.Popen(
                    [sys.executable, "-m", "flows", "warm", "--idle", f"{idle:g}"],
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # not ended with this stage, nor by Ctrl-C in its terminal
                )
            print(
                f"python -m flows: started a warm process (flows/warm.py; log {log}) that forks this"
                f" project's stages until it has been idle {idle:g} s; {IDLE}=0 turns this off",
                file=sys.stderr,
            )
        deadline = time.monotonic() + timeout
        while not _answers(path):
            # the lock's holder, once the process started here (or another stage's) has claimed it
            held = holder(root)
            starting = held.state == "starting" if held else bool(started and started.poll() is None)
            if not starting or time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True
    except OSError as e:  # no socket folder, a read-only project, no processes left: run cold
        print(f"python -m flows: no warm process ({e}); this stage runs cold", file=sys.stderr)
        return False


def seconds(value: str) -> float:
    """A finite number of seconds, not negative: SVD_WARM_IDLE_S, `--idle`."""
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"not a number of seconds: {value!r}")
    return number


def idle_seconds() -> float:
    """SVD_WARM_IDLE_S: how long a warm process that a stage starts waits for the next one."""
    value = os.environ.get(IDLE, "600")
    try:
        return seconds(value)
    except ValueError:
        raise SystemExit(f"{IDLE} must be a number of seconds (0: no warm process), not {value!r}") from None


@dataclass
class Lock:
    """The lock a warm process holds on its project from its start to its end, and what it tells
    clients there: its pid, how long it waits idle, and its state (starting; serving; broken: its
    flows do not import; draining: it takes no more stages and waits for its running ones). A
    client waits only for one that is starting."""

    fd: int
    idle: float

    def say(self, state: str) -> None:
        if self.fd >= 0:  # one fixed-size write, so a reader never sees it half done
            os.pwrite(self.fd, f"{os.getpid()} {self.idle:g} {state}".ljust(64).encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def lock_path(root: Path) -> Path:
    return address(root).with_suffix(".lock")


def claim(root: Path, idle: float, wait: float = 0.0) -> Lock | None:
    """`root`'s lock, tried for `wait` seconds (the warm process that one taking over stops lets it
    go at its next turn), or None while another process holds it."""
    fd = os.open(lock_path(root), os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            os.close(fd)
            return None
        lock = Lock(fd, idle)
        lock.say("starting")
        return lock


@dataclass
class Holder:
    pid: int
    idle: float
    state: str


def holder(root: Path) -> Holder | None:
    """The warm process that says it holds `root`'s lock, if that process is alive and is a warm
    process of this project, not a pid reused since (Linux's /proc; elsewhere, None)."""
    try:
        pid, idle, state = lock_path(root).read_text().split()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if cmd[1:4] != [b"-m", b"flows", b"warm"] or Path(os.readlink(f"/proc/{pid}/cwd")) != root.resolve():
            return None
        return Holder(int(pid), float(idle), state)
    except (OSError, ValueError):
        return None


def _forward(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _int(sock: socket.socket) -> int | None:
    data = _recv(sock, 4)
    return struct.unpack("!i", data)[0] if len(data) == 4 else None


def _recv(sock: socket.socket, n: int, data: bytes = b"") -> bytes:
    """`data` topped up to `n` bytes, or fewer when the other end closed."""
    while len(data) < n and (chunk := sock.recv(n - len(data))):
        data += chunk
    return data


def _send(conn: socket.socket, n: int) -> None:
    with contextlib.suppress(OSError):  # a client that is gone hears nothing
        conn.sendall(struct.pack("!i", n))


# --- the warm process: `python -m flows warm` --------------------------------------------------


def snapshot(files: set[str]) -> dict[str, tuple[int, int]]:
    """Each file's mtime and size."""
    out = {}
    for f in files:
        with contextlib.suppress(OSError):
            info = os.stat(f)
            out[f] = (info.st_mtime_ns, info.st_size)
    return out


def imported() -> set[str]:
    """Every imported source file: the project's and its venv's."""
    return {f for m in list(sys.modules.values()) if isinstance(f := getattr(m, "__file__", None), str)}


def changed(files: dict[str, tuple[int, int]]) -> bool:
    return snapshot(set(files)) != files


def serve(
    root: Path,
    load: Callable[[str], object],
    flows: list[str],
    run: Callable[[list[str]], None],
    started: Mapping[str, str],
    since: int,
    lock: Lock,
    ready: Callable[[], None] = lambda: None,
    alive: Callable[[], bool] = lambda: True,
) -> bool:
    """Import every flow, then fork a child per request until a module changes or the Prefect server
    it holds ends (True: start again, with fresh imports, once the children are done); SIGTERM
    (False: after the children had SIGINT and 7 s to end); SIGUSR1 (False: it serves no more and
    lets the project's lock go at once, for the warm process taking over, and ends once its children
    are done); or `lock.idle` seconds without a child (False). `started`: the environment this
    process started with, as a client's is before its imports; `since`: when it started, before it
    read any file of the project; `ready` waits for the Prefect server it holds, `alive` says it
    still runs."""
    idle = lock.idle

    def taken_over(*_: object) -> None:  # before it serves: nothing of its own to finish
        try:  # not print(): the main thread may be inside a write to stdout
            os.write(1, b"warm: another warm process takes over\n")
        finally:
            os._exit(0)  # its temporary Prefect server gets its parent-death signal

    signal.signal(signal.SIGUSR1, taken_over)
    try:
        for name in flows:
            load(name)
        ready()
    except Exception as e:  # an edit that does not import: serve nothing (stages run cold) until the next
        traceback.print_exc()
        where = {f.filename for f in traceback.extract_tb(e.__traceback__)} | {
            getattr(e, "filename", None) or ""
        }
        files = snapshot(imported() | where)
        print(
            "warm: the flows do not import, or its Prefect server did not start; serving nothing until a"
            " file changes",
            flush=True,
        )
        lock.say("broken")
        until = time.monotonic() + (idle or math.inf)
        while not changed(files):
            if time.monotonic() > until:
                print(f"warm: nothing changed in {idle:g} s; ending", flush=True)
                return False
            time.sleep(2)
        lock.say("starting")  # for the stages that wait: the program it becomes claims the lock again
        return True
    files, now = snapshot(imported()), time.time_ns()
    made = {k: v for k, v in os.environ.items() if started.get(k) != v}  # what the imports set
    # A project file saved while the import ran may not be what it read: import again. (Not a file
    # dated in the future, a clock's doing; not the venv's, which some libraries write as they import.)
    project = [f for f in files if Path(f).is_relative_to(root) and not Path(f).is_relative_to(sys.prefix)]
    if any(since <= files[f][0] <= now for f in project):
        return True
    path = address(root)
    if _answers(path):
        raise SystemExit(f"warm: {root} is already served on {path}")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a killed warm process's
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    # said before a client can connect, so whoever saw the socket answer finds the line in the log
    print(f"warm: {len(flows)} flows imported; serving {root} on {path}", flush=True)
    listener.listen(16)
    lock.say("serving")
    stopping: list[float] = []
    leaving: list[bool] = []  # SIGUSR1, now that it serves: another warm process takes over
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop through the pipe
    for sig in (signal.SIGTERM, signal.SIGINT):  # stopped (make stop, or Ctrl-C in its terminal)
        signal.signal(sig, lambda *_: stopping.append(time.monotonic() + 7))
    signal.signal(signal.SIGUSR1, lambda *_: leaving.append(True))
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    ending: dict[int, float] = {}  # children whose client is gone: when to stop asking
    told = False  # the children, that the warm process stops
    until = time.monotonic() + (idle or math.inf)  # when it ends unless a stage comes
    again = False  # start again once the children are done

    def stop_listening() -> None:
        if listener.fileno() >= 0:
            sel.unregister(listener)
            listener.close()
            path.unlink(missing_ok=True)
            lock.say("draining")

    try:
        while (listener.fileno() >= 0 or children) and not (stopping and not children):
            wait = 1.0 if ending or stopping else None if children or not idle else until - time.monotonic()
            wait = min(max(wait, 0.0), 3600.0) if wait is not None else None  # epoll's bound
            for key, _ in sel.select(timeout=wait):
                if key.fileobj is wake_r:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_r, 512):
                            pass
                elif key.fileobj is listener:
                    if (got := _receive(listener.accept()[0])) is None:
                        continue
                    conn, request, fds = got
                    try:
                        if changed(files) or not alive():
                            why = "an imported file changed" if alive() else "its Prefect server ended"
                            print(f"warm: {why}; starting again when idle", flush=True)
                            again = True
                            stop_listening()
                            _answer(conn, fds, REFUSED)
                        elif stopping:
                            _answer(conn, fds, REFUSED)
                        elif why := _refusal(request, started):
                            print(
                                f"warm: `python -m flows {' '.join(request['argv'])}` runs cold: {why}",
                                flush=True,
                            )
                            _answer(conn, fds, REFUSED)
                        elif pid := _fork(
                            conn,
                            fds,
                            # make serve's configured server stands in for a client that names
                            # none; one a stage started lends its configured server to no client
                            # (whose cold run would boot its own), its temporary one through `made`
                            request | {"made": made, "lend_server": not idle},
                            [listener, wake_r, wake_w, lock.fd, *children.values()],
                            run,
                        ):
                            print(
                                f"warm: process {pid} runs `python -m flows {' '.join(request['argv'])}`",
                                flush=True,
                            )
                            children[pid] = conn
                            sel.register(conn, selectors.EVENT_READ, pid)
                    except Exception:  # a request it cannot serve: that client runs cold
                        traceback.print_exc()
                        if conn.fileno() >= 0 and conn not in children.values():
                            _answer(conn, fds, REFUSED)
                else:  # the client's end closed (or it wrote, which it never does): it is gone
                    _signal(key.data, signal.SIGINT)  # as Ctrl-C would: the flow run ends as crashed
                    ending[key.data] = min(ending.get(key.data, math.inf), time.monotonic() + 30)
                    sel.unregister(key.fileobj)
            if _reap(children, sel) or children:  # idle from when the last stage ended
                until = time.monotonic() + (idle or math.inf)
            if leaving and lock.fd >= 0:  # serving or draining: the lock goes now, its stages end as they do
                print(
                    "warm: another warm process takes over; ending once the running stages have", flush=True
                )
                stop_listening()
                lock.release()
            elif not stopping and time.monotonic() >= until:
                print(f"warm: no stage for {idle:g} s; ending", flush=True)
                stopping.append(time.monotonic())
            if stopping and not told:  # once: SIGINT the children, then they have 7 s
                told = True
                if listener.fileno() >= 0:
                    stop_listening()
                for pid in children:
                    _signal(pid, signal.SIGINT)
                    ending[pid] = stopping[0]
            for pid, deadline in list(ending.items()):
                if pid not in children:
                    del ending[pid]
                elif time.monotonic() > deadline:
                    _signal(pid, signal.SIGKILL)
    finally:
        signal.set_wakeup_fd(-1)
        for pid in children:
            _signal(pid, signal.SIGKILL)
        if listener.fileno() >= 0:
            stop_listening()
    again = again and not stopping and not leaving
    if again:  # for the stages that wait: the program it becomes claims the lock again
        lock.say("starting")
    return again


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _refusal(request: dict, started: Mapping[str, str]) -> str:
    """Why a fork would not run what this client would run cold, or ''."""
    if request.get("prefix") != interpreter():
        return f"its Python is {request.get('prefix')}, this one's {interpreter()}"
    if request["groups"] != groups():  # `sg`, `newgrp`: a fork could not take them
        return "its groups differ from the warm process's"
    limits = {n: tuple(request["limits"][n]) for n in LIMITS}
    own = {n: resource.getrlimit(getattr(resource, n)) for n in LIMITS}
    if raised := [n for n in LIMITS if not _within(limits[n][1], own[n][1])]:
        return f"its hard {', '.join(raised)} are above the warm process's, which a fork cannot raise"
    # A fork holds the warm process's memory, imports and all: under the command's memory cap it
    # could fail where a cold process fits. glibc sizes thread stacks from the stack limit at start.
    if capped := [
        n for n in ("RLIMIT_AS", "RLIMIT_DATA") if n in own and limits[n][0] != resource.RLIM_INFINITY
    ]:
        return f"its {', '.join(capped)} caps memory, and a fork starts with the warm process's"
    if limits.get("RLIMIT_STACK") != own.get("RLIMIT_STACK"):
        return "its RLIMIT_STACK differs from the one the warm process sized its thread stacks by"
    if request["nice"] < os.getpriority(os.PRIO_PROCESS, 0):  # lowering niceness may need privileges
        return "it is less nice than the warm process (`nice make serve`?)"
    if request["cpus"] is not None and not set(request["cpus"]) <= os.sched_getaffinity(0):
        return "it may run on CPUs the warm process may not (another cpuset)"
    mine, theirs = at_import(started), at_import(request["env"])
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if differ:
        return f"{', '.join(differ)} differ from the warm process's, which read them at import"
    if "PREFECT_API_URL" not in started and "PREFECT_API_URL" not in request["env"]:
        # both would hold a temporary Prefect server: the same one only if it has the same settings
        mine, theirs = _prefect(started), _prefect(request["env"])
        differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if differ:
            return f"{', '.join(differ)} differ from those of the warm process's temporary Prefect server"
    return ""


def _prefect(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("PREFECT_")}


def _within(limit: int, bound: int) -> bool:
    return bound == resource.RLIM_INFINITY or (limit != resource.RLIM_INFINITY and limit <= bound)


def _answer(conn: socket.socket, fds: list[int], code: int) -> None:
    for fd in fds:
        os.close(fd)
    _send(conn, code)
    conn.close()


def _signal(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)


def _reap(children: dict[int, socket.socket], sel: selectors.BaseSelector) -> int:
    """How many children ended (each one's client told its exit code)."""
    ended = 0
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if not done:
            continue
        ended += 1
        conn = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        print(f"warm: process {pid} exited with {code}", flush=True)
        with contextlib.suppress(KeyError):
            sel.unregister(conn)
        _answer(conn, [], code)
    return ended


def _receive(conn: socket.socket) -> tuple[socket.socket, dict, list[int]] | None:
    """A client's request and its stdin, stdout and stderr; None for a probe (_answers) or a client
    of another user (a warm process runs its owner's stages only)."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux; elsewhere the socket's folder alone keeps others out
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] != os.getuid():
            conn.close()
            return None
    conn.settimeout(10)
    msg, fds = b"", list[int]()
    try:
        msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        size = struct.unpack("!I", msg[:4])[0]
        request = json.loads(_recv(conn, size, msg[4:]))
        if not isinstance(request, dict) or not {"argv", "cwd", "env", "limits", "groups"} <= request.keys():
            raise ValueError("not a request of python -m flows")
        return conn, request, fds
    except Exception as e:  # not a request of ours (bad JSON, too deep, cut short): no fork
        if fds or msg:
            print(f"warm: a request could not be read ({e})", file=sys.stderr, flush=True)
        for fd in fds:
            os.close(fd)
        conn.close()
        return None


def _fork(
    conn: socket.socket, fds: list[int], request: dict, inherited: list, run: Callable[[list[str]], None]
) -> int:
    """Fork the child for one request and tell the client its pid (0 and the client told to run it
    itself when the fork fails). In the child it never returns: the child exits."""
    sys.stdout.flush()
    sys.stderr.flush()
    # Ctrl-C or SIGTERM forwarded to the child before it has its own handlers waits until it does
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        pid = os.fork()
    except OSError as e:  # out of memory or processes: the client runs it cold
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        print(f"warm: cannot fork ({e})", file=sys.stderr, flush=True)
        _answer(conn, fds, REFUSED)
        return 0
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        with contextlib.suppress(OSError):  # its group, before anything may signal it (as the child does)
            os.setpgid(pid, pid)
        for fd in fds:
            os.close(fd)
        _send(conn, pid)
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, as in a new process
        for f in inherited:  # the warm process's; `conn` stays open until this process ends, so
            f.close() if isinstance(f, socket.socket) else os.close(f)  # the client sees it end
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)  # its own group: ending the stage ends what it started (pools, torchrun)
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
            os.close(fd)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        code = _child(request, run)
    except KeyboardInterrupt:  # before or after the flow: die of it, as Python does
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _child(request: dict, run: Callable[[list[str]], None]) -> int:
    """Become the process the client would have started, run the flow and exit as Python does."""
    import numpy as np
    from prefect.context import refresh_global_settings_context

    served = os.environ.get("PREFECT_API_URL") if request["lend_server"] else None
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    for name in LIMITS:  # the `ulimit`s of the stage's shell (open files, core size, nice ...)
        resource.setrlimit(getattr(resource, name), tuple(request["limits"][name]))
    os.setpriority(os.PRIO_PROCESS, 0, request["nice"])  # as nice as the warm process or nicer
    if request["cpus"] is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, request["cpus"])
    os.environ.clear()
    os.environ.update(request["env"])
    for k, v in request["made"].items():  # as the client's own imports would have set them
        os.environ.setdefault(k, v)
    if served and "PREFECT_API_URL" not in os.environ:  # the warm process's server
        os.environ["PREFECT_API_URL"] = served
    refresh_global_settings_context()
    tempfile.tempdir = None  # cached when the warm process found its socket folder
    np.random.seed()  # fresh entropy, as a new process's; torch's generator is still the default-seeded one
    sys.stdout.reconfigure(line_buffering=os.isatty(1))  # type: ignore[union-attr]
    sys.argv = [
        sys.modules["__main__"].__file__ or "-m",
        *request["argv"],
    ]  # MLflow finds the git repo from it
    code, interrupted = 0, False
    try:
        run(request["argv"])
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        traceback.print_exc()
        interrupted = True
    except BaseException:
        traceback.print_exc()
        code = 1
    # What Python does at exit: join non-daemon threads (Prefect sends its last events and logs
    # there), then the atexit handlers (MLflow ends its runs, logging flushes)
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    if interrupted:  # as Python does after an unhandled Ctrl-C: die of SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def wait_until_served(root: Path, timeout: float) -> bool:
    """True once a warm process answers on `root`'s socket."""
    deadline = time.monotonic() + timeout
    while not _answers(address(root)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True

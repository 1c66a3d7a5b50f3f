"""Fixtures the integration tests share."""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from infra.stack import HOST, free_port


@pytest.fixture
def chromium() -> Iterator[object]:
    """A real headless Chromium (Debian's chromium and chromium-driver) driven by Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "needs Debian's chromium and chromium-driver (make system installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=DriverService(driver))
    try:
        yield browser
    finally:
        browser.quit()


class Outage:
    """A TCP forwarder in front of a server, to take the server away mid-request and bring it back.

    Clients talk to `url`. `cut()` resets every open connection and closes the port, so new ones are
    refused, as when the server process dies; `restore()` listens on the same port again.
    `arm(b"PUT /bucket/key", down_for=3, forward=20_000)` waits for a client to send those bytes,
    lets `forward` bytes of its stream through from there (0: none; the request line and part of
    the body: a cut mid-upload), cuts, and restores `down_for` seconds later."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or HOST, parts.port or 80)
        self.port = free_port()
        self.url = parts._replace(netloc=f"{HOST}:{self.port}").geturl()
        self.cuts: list[float] = []  # when each cut came (time.time())
        self.reset = 0  # connections reset by cuts
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._trigger: tuple[bytes, float, int] | None = None
        self._closed = False
        self.restore()

    def restore(self) -> None:
        with self._lock:
            if self._listener is None and not self._closed:
                self._listener = socket.create_server((HOST, self.port))
                threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                with contextlib.suppress(OSError):  # wakes the blocked accept(): the port closes now
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            self.cuts.append(time.time())
            for s in self._open:
                self.reset += 1
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RD)  # wakes the pump blocked reading it
                s.close()  # linger 0: the peer sees a reset, not a clean end
            self._open.clear()

    def arm(self, pattern: bytes, down_for: float, forward: int = 0) -> None:
        self._trigger = (pattern, down_for, forward)

    def close(self) -> None:
        self._closed = True  # a restore still pending must not listen again
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by cut()
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        budget, down_for = None, 0.0  # bytes still to forward before the cut, once triggered
        try:
            while data := src.recv(1 << 16):
                with self._lock:  # one connection takes the trigger
                    trigger = self._trigger
                    if from_client and budget is None and trigger and trigger[0] in data:
                        self._trigger = None
                        _, down_for, budget = trigger
                if budget is None:
                    dst.sendall(data)
                    continue
                dst.sendall(data[:budget])
                budget -= min(budget, len(data))
                if budget == 0:
                    self.cut()
                    threading.Timer(down_for, self.restore).start()
                    return
        except OSError:
            pass
        finally:
            with self._lock:
                for s in (src, dst):
                    if s in self._open:
                        self._open.discard(s)
                        s.close()


@pytest.fixture
def outage() -> Iterator[Callable[[str], Outage]]:
    """`outage(url)`: an Outage in front of the server at `url`; all closed at the test's end."""
    made: list[Outage] = []

    def make(url: str) -> Outage:
        made.append(Outage(url))
        return made[-1]

    yield make
    for o in made:
        o.close()

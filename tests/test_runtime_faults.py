"""Reload under hostile conditions: real localhost servers and real files.

After each fault the last good bundle keeps serving, ``status``/``last_error`` tell the
truth in between, and the next good bundle goes live (the reload thread survived)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from flagstone.bundle import dump_bundle
from flagstone.runtime import BundleError, Client
from tests.runtime_helpers import bundle_from_yaml


def flags_with(value: str) -> str:
    return f"f:\n  variants: {{a: {value}, b: other}}\n  default: a\n"


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


class FlakyServer:
    """A raw-socket HTTP server whose answer is chosen per request by ``mode``:
    ``good`` (200 with the body and an ETag; 304 to a matching If-None-Match),
    ``truncate`` (Content-Length says more than is sent), ``garbage`` (not HTTP at all),
    ``reset`` (the connection is reset), ``hang`` (never answers), ``500``."""

    def __init__(self, body: bytes, etag: str) -> None:
        self.body, self.etag, self.mode = body, etag, "good"
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/prod.json"
        self._stop = threading.Event()
        self._hung: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            request = conn.recv(65536).decode("latin-1")
            self.requests += 1
            mode, body, etag = self.mode, self.body, self.etag
            if mode == "hang":
                self._hung.append(conn)
                return
            if mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                return
            if mode == "garbage":
                conn.sendall(b"\x00\x01 this is not HTTP \xff\r\n\r\n")
            elif mode == "500":
                conn.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops"
                )
            elif f"If-None-Match: {etag}" in request:
                conn.sendall(b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n")
            else:
                sent = body[: len(body) // 2] if mode == "truncate" else body
                conn.sendall(
                    f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nETag: {etag}\r\n"
                    "Connection: close\r\n\r\n".encode()
                    + sent
                )
            conn.close()
        except OSError:
            pass

    def serve(self, body: bytes, etag: str) -> None:
        self.body, self.etag, self.mode = body, etag, "good"

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._hung:
            conn.close()


@pytest.fixture
def bundles(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    out = {}
    for name in ("one", "two", "three"):
        bundle = bundle_from_yaml(tmp_path, flags_with(name))
        out[name] = (dump_bundle(bundle), f'"{bundle["hash"]}"')
    return out


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("truncate", "cut short"),
        ("garbage", "did not answer HTTP"),
        ("reset", "reset"),
        ("hang", "timed out"),
        ("500", "HTTP 500"),
    ],
)
def test_from_url__server_fault__stale_with_the_cause_then_recovers(bundles, mode, words) -> None:
    server = FlakyServer(*bundles["one"])
    try:
        with Client.from_url(server.url, poll_interval=0.05, timeout=0.3) as client:
            assert client.status.state == "READY"
            server.body, server.etag = bundles["two"]  # a new bundle, which the fault spoils
            server.mode = mode
            assert wait_for(lambda: client.status.state == "STALE")
            status = client.status
            assert words in (status.last_error or ""), status.last_error
            assert status.last_error_at is not None and status.source_errors >= 1
            assert client.last_error == status.last_error
            assert client.value("f", {}) == "one"  # the last good bundle keeps serving
            server.serve(*bundles["two"])
            assert wait_for(lambda: client.value("f", {}) == "two")
            status = client.status
            assert (status.state, status.last_error) == ("READY", None)
            assert status.reloads == 1
            # The thread is still alive and polling: a third bundle also goes live.
            server.serve(*bundles["three"])
            assert wait_for(lambda: client.value("f", {}) == "three")
    finally:
        server.close()


def test_from_url__truncated_body__its_etag_is_not_kept(bundles) -> None:
    """Otherwise the next poll would get a 304 and the good bundle would never load."""
    server = FlakyServer(*bundles["one"])
    try:
        with Client.from_url(server.url, poll_interval=0.05, timeout=0.5) as client:
            server.body, server.etag = bundles["two"]
            server.mode = "truncate"
            assert wait_for(lambda: client.status.state == "STALE")
            server.mode = "good"  # same body and ETag, now complete
            assert wait_for(lambda: client.value("f", {}) == "two")
            assert client.status.state == "READY"
    finally:
        server.close()


def test_from_url__refused_bundle__error_state_then_recovers(bundles) -> None:
    server = FlakyServer(*bundles["one"])
    try:
        with Client.from_url(server.url, poll_interval=0.05, timeout=0.5) as client:
            server.serve(b'{"format": "flagstone-bundle", "version": 9}', '"bad"')
            assert wait_for(lambda: client.status.state == "ERROR")
            assert "unsupported bundle version 9" in (client.last_error or "")
            assert client.status.refusals >= 1
            assert client.value("f", {}) == "one"
            server.serve(*bundles["two"])
            assert wait_for(lambda: client.value("f", {}) == "two")
            assert client.status.state == "READY" and client.last_error is None
    finally:
        server.close()


def test_from_url__unreachable_at_start__bundle_error_not_a_traceback(bundles) -> None:
    server = FlakyServer(*bundles["one"])
    server.mode = "500"
    try:
        with pytest.raises(BundleError, match="HTTP 500"):
            Client.from_url(server.url, timeout=0.5)
    finally:
        server.close()


def test_from_url__errors_are_logged_once_per_cause(bundles, caplog) -> None:
    server = FlakyServer(*bundles["one"])
    try:
        with Client.from_url(server.url, poll_interval=0.02, timeout=0.3) as client:
            server.mode = "500"
            requests = server.requests
            assert wait_for(lambda: server.requests >= requests + 4)
            assert client.status.source_errors >= 3
            logged = [r for r in caplog.records if "HTTP 500" in r.getMessage()]
            assert len(logged) == 1
    finally:
        server.close()


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def test_watch__deep_nesting_truncation_deletion_recreation(tmp_path: Path, bundles) -> None:
    path = tmp_path / "prod.json"
    path.write_bytes(bundles["one"][0])
    with Client.from_file(path, watch=True, settle=0.05) as client:
        write_atomically(path, b"[" * 100_000 + b"]" * 100_000)
        assert wait_for(lambda: client.status.state == "ERROR")
        assert "nested too deeply" in (client.last_error or "")
        assert client.value("f", {}) == "one"

        write_atomically(path, bundles["two"][0])
        assert wait_for(lambda: client.value("f", {}) == "two")
        assert client.status.state == "READY" and client.last_error is None

        write_atomically(path, bundles["three"][0][:100])  # truncated, and it stays so
        assert wait_for(lambda: client.status.state == "ERROR")
        assert "truncated or corrupt" in (client.last_error or "")

        path.unlink()
        assert wait_for(lambda: "missing" in (client.last_error or ""))
        assert client.status.state == "STALE"
        assert client.value("f", {}) == "two"

        path.write_bytes(bundles["three"][0])  # re-created
        assert wait_for(lambda: client.value("f", {}) == "three")
        status = client.status
        assert (status.state, status.last_error) == ("READY", None)
        assert status.refusals == 2 and status.source_errors >= 1 and status.reloads == 2


def test_watch__in_place_rewrite_read_half_written__is_retried_quietly(
    tmp_path: Path, bundles
) -> None:
    path = tmp_path / "prod.json"
    path.write_bytes(bundles["one"][0])
    states: list[str] = []
    with Client.from_file(path, watch=True, settle=1.0) as client:
        client.on_status(lambda status: states.append(status.state))
        data = bundles["two"][0]
        with path.open("r+b") as f:  # an in-place writer: truncate, write half, pause, finish
            f.truncate(0)
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.1)
            f.write(data[len(data) // 2 :])
        assert wait_for(lambda: client.value("f", {}) == "two")
        assert states == []  # never reported: the half-written read was retried quietly
        assert client.status.refusals == 0


def test_watch__every_exception_in_the_loop__is_survived(
    tmp_path: Path, bundles, monkeypatch
) -> None:
    path = tmp_path / "prod.json"
    path.write_bytes(bundles["one"][0])
    with Client.from_file(path, watch=True) as client:
        original = client.load_task
        calls = []

        def broken(data: bytes):
            calls.append(1)
            if len(calls) == 1:
                raise MemoryError("a surprise")
            return original(data)

        monkeypatch.setattr(client, "load_task", broken)
        write_atomically(path, bundles["two"][0])
        assert wait_for(lambda: "MemoryError: a surprise" in (client.last_error or ""))
        write_atomically(path, bundles["three"][0])
        assert wait_for(lambda: client.value("f", {}) == "three")
        assert client.status.state == "READY"

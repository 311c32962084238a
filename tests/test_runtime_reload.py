from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from flagstone.bundle import dump_bundle, sign_bundle
from flagstone.runtime import Client
from flagstone.runtime.evaluate import BundleError
from tests.runtime_helpers import bundle_from_yaml


def flags_with(value: str) -> str:
    return f"f:\n  variants: {{a: {value}, b: other}}\n  default: a\n"


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def wait_for(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


def test_hot_reload__rewritten_while_evaluating__no_error_no_torn_read(tmp_path: Path) -> None:
    path = tmp_path / "prod.json"
    path.write_bytes(dump_bundle(bundle_from_yaml(tmp_path, flags_with("v0"))))
    versions = [dump_bundle(bundle_from_yaml(tmp_path, flags_with(f"v{i}"))) for i in range(1, 6)]
    client = Client.from_file(path, watch=True)
    seen: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def evaluate_in_a_loop() -> None:
        try:
            while not stop.is_set():
                value = client.value("f", {"user_id": "u"})
                assert isinstance(value, str) and value.startswith("v"), value
                seen.add(value)
        except BaseException as e:
            errors.append(e)

    reader = threading.Thread(target=evaluate_in_a_loop)
    reader.start()
    try:
        for i, data in enumerate(versions, 1):
            write_atomically(path, data)
            assert wait_for(lambda i=i: client.value("f", {}) == f"v{i}"), f"v{i} never went live"
        assert wait_for(lambda: "v5" in seen)  # the evaluating thread saw the last bundle too
    finally:
        stop.set()
        reader.join()
        client.close()
    assert errors == []


def test_hot_reload__corrupt_or_truncated_bundle__is_refused_and_last_good_stays(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prod.json"
    good = dump_bundle(bundle_from_yaml(tmp_path, flags_with("good")))
    path.write_bytes(good)
    changes = []
    with Client.from_file(path, watch=True) as client:
        client.on_change(lambda new, old: changes.append(new.hash))
        write_atomically(path, good[: len(good) // 2])
        assert wait_for(lambda: client.last_error is not None)
        assert "truncated or corrupt" in (client.last_error or "")
        assert client.value("f", {}) == "good"
        write_atomically(path, b'{"format": "something-else"}')
        assert wait_for(lambda: "not a flagstone bundle" in (client.last_error or ""))
        assert client.value("f", {}) == "good"
        newer = dump_bundle(bundle_from_yaml(tmp_path, flags_with("newer")))
        write_atomically(path, newer)
        assert wait_for(lambda: client.value("f", {}) == "newer")
        assert client.last_error is None
    assert len(changes) == 1


def test_hot_reload__kubernetes_style_symlink_swap__is_seen(tmp_path: Path) -> None:
    # A ConfigMap volume: prod.json -> ..data/prod.json, ..data -> ..2026_v1; the update swaps ..data.
    for version in ("v1", "v2"):
        folder = tmp_path / f"..{version}"
        folder.mkdir()
        (folder / "prod.json").write_bytes(
            dump_bundle(bundle_from_yaml(tmp_path, flags_with(version)))
        )
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "prod.json").symlink_to("..data/prod.json")
    with Client.from_file(tmp_path / "prod.json", watch=True) as client:
        assert client.value("f", {}) == "v1"
        (tmp_path / "..data_tmp").symlink_to("..v2")
        (tmp_path / "..data_tmp").replace(tmp_path / "..data")
        assert wait_for(lambda: client.value("f", {}) == "v2")


def keypair() -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return private, public


def test_signature__signed_bundle_loads_tampered_or_unsigned_is_refused(tmp_path: Path) -> None:
    private, public = keypair()
    bundle = bundle_from_yaml(tmp_path, flags_with("signed"))
    signed = sign_bundle(bundle, private)
    path = tmp_path / "prod.json"
    path.write_bytes(dump_bundle(signed))
    client = Client.from_file(path, public_key=public)
    assert client.value("f", {}) == "signed"

    tampered = json.loads(dump_bundle(signed))
    tampered["flags"]["f"]["variants"]["a"] = "evil"
    path.write_bytes(dump_bundle(tampered))
    with pytest.raises(BundleError, match="does not match its hash"):
        Client.from_file(path, public_key=public)

    rehashed = dict(tampered)
    from flagstone.bundle import content_hash

    rehashed["hash"] = content_hash(rehashed)
    path.write_bytes(dump_bundle(rehashed))
    with pytest.raises(BundleError, match="signature is not valid"):
        Client.from_file(path, public_key=public)

    path.write_bytes(dump_bundle(bundle))
    with pytest.raises(BundleError, match="not signed"):
        Client.from_file(path, public_key=public)

    _, other_public = keypair()
    path.write_bytes(dump_bundle(signed))
    with pytest.raises(BundleError, match="signature is not valid"):
        Client.from_file(path, public_key=other_public)


def test_signature__wrongly_signed_reload__keeps_the_last_good_bundle(tmp_path: Path) -> None:
    private, public = keypair()
    other_private, _ = keypair()
    path = tmp_path / "prod.json"
    path.write_bytes(
        dump_bundle(sign_bundle(bundle_from_yaml(tmp_path, flags_with("trusted")), private))
    )
    with Client.from_file(path, watch=True, public_key=public) as client:
        write_atomically(
            path,
            dump_bundle(
                sign_bundle(bundle_from_yaml(tmp_path, flags_with("forged")), other_private)
            ),
        )
        assert wait_for(lambda: client.last_error is not None)
        assert client.value("f", {}) == "trusted"


class BundleServer(http.server.BaseHTTPRequestHandler):
    body = b""
    etag = ""
    requests: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.headers.get("If-None-Match"))
        if self.headers.get("If-None-Match") == self.etag:
            self.send_response(304)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", self.etag)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def test_from_url__polls_with_etag_and_picks_up_a_new_bundle(tmp_path: Path) -> None:
    first = bundle_from_yaml(tmp_path, flags_with("one"))
    BundleServer.body, BundleServer.etag, BundleServer.requests = (
        dump_bundle(first),
        f'"{first["hash"]}"',
        [],
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BundleServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/prod.json"
        with Client.from_url(url, poll_interval=0.02) as client:
            assert client.value("f", {}) == "one"
            assert wait_for(lambda: len(BundleServer.requests) >= 3)
            assert BundleServer.requests[1] == BundleServer.etag  # unchanged: a 304
            second = bundle_from_yaml(tmp_path, flags_with("two"))
            BundleServer.body, BundleServer.etag = dump_bundle(second), f'"{second["hash"]}"'
            assert wait_for(lambda: client.value("f", {}) == "two")
    finally:
        server.shutdown()
        server.server_close()


def test_reload__unchanged_flags_are_reused_and_changed_ones_recompiled(tmp_path: Path) -> None:
    from flagstone.runtime.evaluate import compile_bundle

    flags = "a:\n  variants: {x: 1, y: 2}\n  rules: [{segment: s, serve: y}]\n  default: x\nb:\n  variants: {x: 1}\n  default: x\n"
    segments = "s:\n  when: {plan: pro}\n"
    old = compile_bundle(bundle_from_yaml(tmp_path, flags, segments))
    compiled_a, compiled_b = old.flags["a"], old.flags["b"]  # in use: compiled
    one_changed = compile_bundle(
        bundle_from_yaml(
            tmp_path, flags.replace("b:\n  variants: {x: 1}", "b:\n  variants: {x: 3}"), segments
        ),
        old,
    )
    assert one_changed.flags.compiled_count() == 1  # only the reused one; b compiles on use
    assert one_changed.flags["a"] is compiled_a
    assert one_changed.flags["b"] is not compiled_b
    assert Client(one_changed).value("b", {}) == 3
    # A changed segment changes what the unchanged flag means: everything is recompiled.
    segment_changed = compile_bundle(
        bundle_from_yaml(tmp_path, flags, "s:\n  when: {plan: team}\n"), old
    )
    assert segment_changed.flags.compiled_count() == 0
    assert segment_changed.flags["a"] is not compiled_a
    assert Client(segment_changed).variant("a", {"plan": "team"}) == "y"
    assert Client(segment_changed).variant("a", {"plan": "pro"}) == "x"


def test_hot_reload__file_missing_for_a_while__keeps_serving_then_picks_up_the_new_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prod.json"
    path.write_bytes(dump_bundle(bundle_from_yaml(tmp_path, flags_with("first"))))
    with Client.from_file(path, watch=True) as client:
        path.unlink()
        time.sleep(0.02)
        assert client.value("f", {}) == "first"
        write_atomically(path, dump_bundle(bundle_from_yaml(tmp_path, flags_with("second"))))
        assert wait_for(lambda: client.value("f", {}) == "second")


def test_reload__parsed_objects_are_freed_once_the_bundle_is_live(tmp_path: Path) -> None:
    import sys

    client = Client.from_bytes(dump_bundle(bundle_from_yaml(tmp_path, flags_with("one"))))
    new = client.load(dump_bundle(bundle_from_yaml(tmp_path, flags_with("two"))))
    assert new.leftovers  # held so that the swap does not wait for them to be freed
    parsed = new.leftovers[0]
    assert client.swap(new)
    assert new.leftovers == []
    assert sys.getrefcount(parsed) == 2  # this name and the call's argument: nothing else
    assert client.value("f", {}) == "two"

from __future__ import annotations

import http.server
import json
import sys
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


def test_reload__collector_is_off_until_the_parsed_objects_are_freed_then_as_the_app_set_it(
    tmp_path: Path,
) -> None:
    import gc

    path = tmp_path / "prod.json"
    path.write_bytes(dump_bundle(bundle_from_yaml(tmp_path, flags_with("one"))))
    seen: list[tuple[str, bool]] = []
    with Client.from_file(path, watch=True) as client:
        client.on_change(lambda new, old: seen.append((client.value("f", {}), gc.isenabled())))
        assert client.reload_bytes(dump_bundle(bundle_from_yaml(tmp_path, flags_with("two"))))
        assert seen == [("two", False)]  # the swap, before the load's objects are freed
        assert gc.isenabled()
        write_atomically(path, dump_bundle(bundle_from_yaml(tmp_path, flags_with("three"))))
        assert wait_for(lambda: len(seen) == 2)
        assert seen[1] == ("three", False)
        assert wait_for(gc.isenabled)  # the watcher's thread switched it back on
        gc.disable()  # the app's own choice is kept
        try:
            assert client.reload_bytes(dump_bundle(bundle_from_yaml(tmp_path, flags_with("x"))))
            assert not gc.isenabled()
        finally:
            gc.enable()


# --- reloads under evaluating threads ----------------------------------------------------


def consistent_pair(version: int, padding: int = 0) -> str:
    """Flag b serves "on" only when flag a, of the same bundle, serves this version: an
    evaluation that mixed two bundles would see b fail its prerequisite."""
    extra = "".join(
        f"pad-{i}:\n  variants: {{x: {version}}}\n  default: x\n" for i in range(padding)
    )
    return (
        f"a:\n  variants: {{v{version}: {version}, other: -1}}\n  default: v{version}\n"
        f"b:\n  variants: {{on: {version}, off: 0}}\n"
        f"  prerequisites: [{{flag: a, variant: v{version}}}]\n  off_variant: off\n  default: on\n"
        + extra
    )


def test_reload__four_threads_evaluating__never_torn_listeners_once_per_swap(
    tmp_path: Path,
) -> None:
    versions = [
        dump_bundle(bundle_from_yaml(tmp_path, consistent_pair(v, padding=300))) for v in range(9)
    ]
    path = tmp_path / "prod.json"
    path.write_bytes(versions[0])
    client = Client.from_file(path, watch=True)
    swaps: list[tuple[str | None, str]] = []
    client.on_change(lambda new, old: swaps.append((new.hash, threading.current_thread().name)))
    errors: list[BaseException] = []
    stop = threading.Event()

    def evaluate_in_a_loop() -> None:
        try:
            while not stop.is_set():
                resolution = client.details("b", {"user_id": "u"})
                assert resolution.variant == "on", resolution  # never PREREQUISITE_FAILED
        except BaseException as e:
            errors.append(e)

    readers = [threading.Thread(target=evaluate_in_a_loop, name=f"reader-{i}") for i in range(4)]
    for reader in readers:
        reader.start()
    try:
        for version in range(1, 9):
            write_atomically(path, versions[version])
            assert wait_for(lambda v=version: client.value("b", {}) == v), f"v{version} never live"
    finally:
        stop.set()
        for reader in readers:
            reader.join()
        client.close()
    assert errors == []
    assert [hash_ for hash_, _ in swaps] == [json.loads(v)["hash"] for v in versions[1:]]
    # With four threads evaluating, they (not the watcher's thread) do most reloads.
    assert any(name.startswith("reader-") for _, name in swaps), swaps


def test_reload__bad_bundle_under_four_threads__never_live_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "prod.json"
    path.write_bytes(dump_bundle(bundle_from_yaml(tmp_path, consistent_pair(1, padding=300))))
    bad = json.loads(dump_bundle(bundle_from_yaml(tmp_path, consistent_pair(2, padding=300))))
    bad["flags"]["pad-250"]["default"] = {"variant": "missing"}
    client = Client.from_file(path, watch=True)
    served: set[object] = set()
    stop = threading.Event()

    def evaluate_in_a_loop() -> None:
        while not stop.is_set():
            served.add(client.value("pad-250", {}))

    readers = [threading.Thread(target=evaluate_in_a_loop) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        write_atomically(path, json.dumps(bad).encode())
        assert wait_for(lambda: client.status.state == "ERROR")
        assert "flag 'pad-250': default.variant: serves unknown variant 'missing'" in (
            client.last_error or ""
        )
        assert client.status.refusals == 1
        write_atomically(
            path, dump_bundle(bundle_from_yaml(tmp_path, consistent_pair(3, padding=300)))
        )
        assert wait_for(lambda: client.value("pad-250", {}) == 3)
        assert client.status.state == "READY" and client.last_error is None
    finally:
        stop.set()
        for reader in readers:
            reader.join()
        client.close()
    assert served == {1, 3}  # the refused bundle's flags were never served


def test_reload__evaluating_threads_notice_and_load__without_the_watcher_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prod.json"
    path.write_bytes(dump_bundle(bundle_from_yaml(tmp_path, flags_with("one"))))
    newer = dump_bundle(bundle_from_yaml(tmp_path, flags_with("two")))
    # The watcher's thread polls once an hour: only evaluating threads can see the change.
    with Client.from_file(path, watch=True, poll_interval=3600) as client:
        write_atomically(path, newer)
        values = [client.value("f", {}) for _ in range(3 * 1024)]
        assert values[-1] == "two"
        assert values.index("two") <= 1024 + 1  # at the first look after the change
    with Client.from_file(path, watch=True, poll_interval=3600, cooperative_reload=False) as client:
        write_atomically(path, dump_bundle(bundle_from_yaml(tmp_path, flags_with("three"))))
        assert {client.value("f", {}) for _ in range(3 * 1024)} == {"two"}


def test_reload__refusal_names_the_first_bad_flag_whichever_batch_fails() -> None:
    from flagstone.runtime.loader import LoadTask

    flags = {
        f"f{i:03d}": {
            "variants": {"a": 1},
            "enabled": True,
            "unit": "user_id",
            "salt": f"f{i:03d}",
            "prerequisites": [],
            "targets": {},
            "rules": [],
            "default": {"variant": "a" if i not in (30, 260) else "zz"},
        }
        for i in range(300)
    }
    bundle = {
        "format": "flagstone-bundle",
        "version": 1,
        "environment": "prod",
        "source": {"commit": None, "dirty": False},
        "default_unit": "user_id",
        "flags": flags,
        "segments": {},
        "experiments": {},
        "config": {},
    }
    task = LoadTask(json.dumps(bundle).encode())
    # As if threads sliced out of the GIL had started every step of every stage: run()
    # takes them over, and of the batches that fail, the first one's refusal counts.
    for stage in range(5):
        task._started.update((stage, index) for index in range(10))
    task.run()
    with pytest.raises(BundleError, match=r"flag 'f030': default\.variant"):
        task.result()
    assert task._finished >= {(3, 0), (3, 1)}  # the batches (of 250) holding f030 and f260 ran


def test_gil_keeping_file__agrees_with_os_stat_and_reads_only_the_expected_file(
    tmp_path: Path,
) -> None:
    import os

    from flagstone.runtime.reload import GilKeepingFile, read_whole

    file = GilKeepingFile.available()
    if file is None:
        assert not sys.platform.startswith("linux")  # on Linux it must be there
        return
    target = tmp_path / "v1" / "prod.json"
    target.parent.mkdir()
    target.write_bytes(b"x" * 70_000)
    link = tmp_path / "prod.json"
    link.symlink_to(target)
    for path in (target, link):
        st = path.stat()
        expected = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        assert file.signature(os.fsencode(path)) == expected
        assert file.read(os.fsencode(path), expected) == b"x" * 70_000 == read_whole(path, expected)
    assert file.signature(os.fsencode(tmp_path / "absent")) is None
    assert file.read(os.fsencode(tmp_path / "absent"), expected) is None
    stale = (expected[0], expected[1], expected[2] - 1, expected[3])  # not the file it was
    assert file.read(os.fsencode(link), stale) is None


def test_load_task__a_step_finished_late_by_a_sliced_out_thread__changes_nothing(
    tmp_path: Path,
) -> None:
    from flagstone.runtime.loader import LoadTask

    data = dump_bundle(bundle_from_yaml(tmp_path, consistent_pair(1, padding=600)))
    task = LoadTask(data)
    while task._stage < 4:  # split, checks and flags done, as another thread did them
        task._step()
    # The thread that started the split first, sliced out of the GIL, finishes it now;
    # then a decoding batch finishes late the same way.
    task._split()
    task._decode(task.split.changed[:250])
    task.run()
    bundle = task.result()
    assert len(bundle.flags) == 602
    assert Client(bundle).details("b", {}).variant == "on"


def test_watcher__a_read_overtaken_by_a_newer_load__never_goes_live(tmp_path: Path) -> None:
    from flagstone.runtime.reload import FileWatcher, read_whole

    path = tmp_path / "prod.json"
    versions = [dump_bundle(bundle_from_yaml(tmp_path, flags_with(v))) for v in ("v0", "v1", "v2")]
    path.write_bytes(versions[0])
    client = Client.from_bytes(versions[0])
    watcher = FileWatcher(path, client, interval=3600, cooperative=False)  # polled by hand
    try:
        # A thread reads v1, then is sliced out of the GIL before it starts the load...
        write_atomically(path, versions[1])
        looked_at = watcher._seen
        signature = (
            path.stat().st_ino,
            path.stat().st_dev,
            len(versions[1]),
            path.stat().st_mtime_ns,
        )
        stale = read_whole(path, signature)
        assert stale == versions[1]
        # ...while v2 is written and loaded by another.
        write_atomically(path, versions[2])
        watcher.poll()
        assert client.value("f", {}) == "v2"
        watcher._begin(looked_at, signature, stale)  # the sliced-out thread resumes
        assert client.value("f", {}) == "v2"
        watcher.poll()
        assert client.value("f", {}) == "v2"
        assert client.status.reloads == 1
    finally:
        watcher.stop()

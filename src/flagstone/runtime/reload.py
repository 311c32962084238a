"""Hot reload: a cheap stat poll of a bundle file, or ETag polling of a URL.

Both loops never die: every exception in an iteration is caught, reported to the client
(``client.status``, ``client.last_error``, one log line per distinct cause) and retried
with backoff; the last good bundle stays live meanwhile.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from flagstone.runtime.client import EVERY_EVALUATION
from flagstone.runtime.errors import BundleError
from flagstone.runtime.loader import collector_paused

if TYPE_CHECKING:
    from flagstone.runtime.client import Client
    from flagstone.runtime.loader import LoadTask

logger = logging.getLogger("flagstone")
Signature = tuple[int, int, int, int]
MAX_BUNDLE_BYTES = 256 * 1024 * 1024  # a response larger than this is refused, not buffered


def _signature(path: Path) -> Signature | None:
    try:
        st = path.stat()  # follows symlinks: a ConfigMap's ..data swap changes st_ino
    except OSError:
        return None
    return st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns


def read_whole(path: Path, expected: Signature) -> bytes | None:
    """The file's bytes if it is still the file ``expected`` describes, else None.

    Under threads that evaluate without pause, every system call that lets go of the GIL
    may cost this thread a turn of every other thread (5 ms each) before it runs again,
    so the file is read with four calls: open, one read of the size the poll saw (plus a
    byte, to see growth), fstat (unchanged while it was read?), close.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        data = os.read(fd, expected[2] + 1)
        while len(data) < expected[2]:  # a short read (rare for files): read the rest
            more = os.read(fd, expected[2] + 1 - len(data))
            if not more:
                break
            data += more
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns) != expected or len(data) != expected[2]:
        return None  # replaced or written meanwhile: the next poll looks again
    return data


def retry_delay(interval: float, failures: int) -> float:
    """After ``failures`` consecutive failures: 1 s, 2 s, 4 s, ... but never past ``interval``.

    A blip recovers within a second or two, a long outage is polled no faster than one
    request a second, and never slower than the normal interval."""
    return min(interval, 2.0 ** (failures - 1)) if failures else interval


class GilKeepingFile:
    """stat and read a file through libc with the GIL held (``ctypes.PyDLL``), on Linux.

    ``os.stat`` and ``os.read`` let go of the GIL for their system call, and a thread that
    lets go of it while others evaluate without pause waits for every other thread's turn
    (5 ms each) before it runs again. These calls take microseconds, so holding the GIL
    through them is what lets an evaluating thread look at the file, and read it, without
    losing its turn. ``statx`` has one layout on every Linux architecture.
    """

    _AT_FDCWD = -100
    _AT_EMPTY_PATH = 0x1000
    _STATX_BASIC_STATS = 0x7FF
    _O_RDONLY_CLOEXEC = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    # stx_ino, stx_size at 32; stx_mtime (tv_sec, tv_nsec) at 112; stx_dev_major/minor at 136.
    _INO_SIZE = struct.Struct("=QQ")
    _MTIME = struct.Struct("=qI")
    _DEV = struct.Struct("=II")

    def __init__(self) -> None:
        libc = ctypes.PyDLL(None, use_errno=True)
        self._statx = libc.statx
        self._statx.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_void_p,
        ]
        self._statx.restype = ctypes.c_int
        self._open = libc.open
        self._open.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self._open.restype = ctypes.c_int
        self._read = libc.read
        self._read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
        self._read.restype = ctypes.c_ssize_t
        self._close = libc.close
        self._close.argtypes = [ctypes.c_int]
        self._close.restype = ctypes.c_int

    @classmethod
    def available(cls) -> GilKeepingFile | None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            return cls()
        except (OSError, AttributeError):  # no statx in this libc (glibc < 2.28, old musl)
            return None

    def signature(self, path: bytes, fd: int = _AT_FDCWD, flags: int = 0) -> Signature | None:
        """As ``os.stat`` (following symlinks) gives it: (st_ino, st_dev, st_size, st_mtime_ns)."""
        buffer = ctypes.create_string_buffer(256)
        if self._statx(fd, path, flags, self._STATX_BASIC_STATS, buffer) != 0:
            return None
        ino, size = self._INO_SIZE.unpack_from(buffer, 32)
        seconds, nanoseconds = self._MTIME.unpack_from(buffer, 112)
        major, minor = self._DEV.unpack_from(buffer, 136)
        return ino, os.makedev(major, minor), size, seconds * 1_000_000_000 + nanoseconds

    def read(self, path: bytes, expected: Signature) -> bytes | None:
        """The file's bytes if it is still the file ``expected`` describes, else None
        (as ``read_whole``)."""
        fd = self._open(path, self._O_RDONLY_CLOEXEC)
        if fd < 0:
            return None
        try:
            size = expected[2]
            buffer = ctypes.create_string_buffer(size + 1)
            length = 0
            while length <= size:
                count = self._read(fd, ctypes.byref(buffer, length), size + 1 - length)
                if count <= 0:
                    break
                length += count
            after = self.signature(b"", fd, self._AT_EMPTY_PATH)
        finally:
            self._close(fd)
        if after != expected or length != size:
            return None  # replaced or written meanwhile: the next look sees it again
        return buffer.raw[:size]


class FileWatcher:
    """Polls ``os.stat`` of the path; loads the file when it changes, and swaps it in.

    A stat costs microseconds, so polling every few milliseconds stays far below 1% of a
    core while seeing changes faster than inotify-based watchers with their debounce.
    A file that does not parse may be caught half-way through an in-place write: it is
    held back quietly for ``settle`` seconds, and reported as refused only if the file
    has not changed again by then.

    With ``cooperative`` (on Linux), the threads that evaluate flags take part too: every
    ``CHECK_EVERY`` evaluations one of them looks at the file (``look``, a stat that keeps
    the GIL), and while a load is under way each evaluation advances it (see
    ``LoadTask``): under threads that evaluate without pause the watcher's own thread
    would wait for their turns each time it woke up or let go of the GIL, while the
    thread that holds the GIL is always one of them. Whichever thread finishes the load
    swaps it in and calls the ``on_change`` listeners.
    """

    def __init__(
        self,
        path: Path,
        client: Client,
        interval: float = 0.002,
        settle: float = 0.25,
        *,
        cooperative: bool = True,
    ) -> None:
        self.path = path
        self.client = client
        self.interval = interval
        self.settle = settle
        self._seen = _signature(path)
        self._missing_reported = False
        self._pending: tuple[BundleError, float] | None = None
        self._task: LoadTask | None = None
        self._finishing = threading.Lock()
        self._starting = threading.Lock()
        self._file = GilKeepingFile.available() if cooperative else None
        self._path_bytes = os.fsencode(path)
        self._stop = threading.Event()
        if cooperative:
            client._watcher = self
        self._thread = threading.Thread(
            target=self._run, name=f"flagstone-watch:{path.name}", daemon=True
        )
        self._thread.start()

    @property
    def loading(self) -> bool:
        """A changed file is being loaded."""
        return self._task is not None

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(
            self.interval if not failures else min(1.0, self.interval * 2**failures)
        ):
            try:
                self.poll()
                failures = 0
            except Exception as e:  # never let the watcher die: report, back off, retry
                failures = min(failures + 1, 10)
                self.failed(e)

    def failed(self, error: Exception) -> None:
        try:
            self.client.source_failed(
                f"watching {self.path} failed: {type(error).__name__}: {error}"
            )
        except Exception:
            logger.exception("flagstone: reporting a watcher failure failed")

    def poll(self) -> None:
        """One look at the file from the watcher's thread (the loop calls this every
        ``interval``); takes part in a load under way."""
        task = self._task
        if task is not None:
            self._advance(task)
            return
        current = _signature(self.path)
        if current is None:
            self._seen = None
            self._pending = None
            if not self._missing_reported:
                self._missing_reported = True
                self.client.source_failed(f"{self.path} is missing (deleted, or not written yet)")
            return
        self._missing_reported = False
        seen = self._seen
        if current == seen:
            if self._pending is not None and time.monotonic() - self._pending[1] >= self.settle:
                error, self._pending = self._pending[0], None
                self.client.refused(error)
            return
        try:
            data = read_whole(self.path, current)
        except FileNotFoundError:
            return  # removed between stat and read: the next poll reports it
        except OSError as e:
            self._seen = current
            self.client.source_failed(f"cannot read {self.path}: {e.strerror or e}")
            return
        if data is not None:
            self._begin(seen, current, data)

    def look(self) -> None:
        """One look from an evaluating thread, without letting go of the GIL: takes part
        in a load under way, or starts one when the file changed. Missing files, read
        errors and refusals held back are left to the watcher's thread."""
        task = self._task
        if task is not None:
            self._advance(task)
            return
        file = self._file
        if file is None:
            return
        seen = self._seen
        current = file.signature(self._path_bytes)
        if current is None or current == seen:
            return
        data = file.read(self._path_bytes, current)
        if data is not None:
            self._begin(seen, current, data)

    def _begin(self, seen: Signature | None, current: Signature, data: bytes) -> None:
        """Start loading ``data`` (the file as ``current`` describes it), unless another
        thread began a load since this one looked (when ``self._seen`` was ``seen``): a
        thread sliced out of the GIL between reading the file and getting here may hold
        a version older than one loaded meanwhile, which must not go live after it."""
        if not self._starting.acquire(blocking=False):  # keeps the GIL
            return  # another thread is starting one: it takes part in that one next
        try:
            if self._seen is not seen or self._task is not None:
                return
            self._seen = current
            task = self._task = self.client.load_task(data)
        finally:
            self._starting.release()
        self.client._beat = EVERY_EVALUATION  # the next evaluation on any thread takes part
        self._advance(task)

    def _advance(self, task: LoadTask) -> None:
        # The collector stays off until the load's parsed objects are freed (after the
        # swap): see collector_paused.
        with collector_paused():
            task.run()
            self._finish(task)

    def _finish(self, task: LoadTask) -> None:
        """Make the outcome of ``task`` known, once: the thread that gets here first with
        the lock does it; the others go back to evaluating."""
        if not self._finishing.acquire(blocking=False):
            return
        try:
            if self._task is not task:
                return  # finished already
            self._task = None
            try:
                bundle = task.result()
            except BundleError as e:
                if e.incomplete and self.settle > 0:
                    self._pending = (e, time.monotonic())  # perhaps half-written: wait for more
                else:
                    self._pending = None
                    self.client.refused(e)
                return
            except Exception as e:
                self.failed(e)
                return
            self._pending = None
            self.client.swap(bundle)
        finally:
            self._finishing.release()

    def stop(self) -> None:
        self._stop.set()
        if self.client._watcher is self:
            self.client._watcher = None
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)


class UrlPoller:
    """GETs a bundle URL with If-None-Match, so an unchanged bundle costs a 304.

    The ETag is remembered only once its bundle has gone live: a truncated or refused
    response must not make the server answer 304 to the next poll.
    """

    def __init__(
        self, url: str, *, timeout: float = 10.0, headers: Mapping[str, str] | None = None
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def fetch(self) -> tuple[bytes, str | None] | None:
        """(body, its ETag), or None when unchanged (304). Raises on any failure."""
        headers = dict(self.headers)
        if self.etag is not None:
            headers["If-None-Match"] = self.etag
        request = urllib.request.Request(self.url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > MAX_BUNDLE_BYTES:
                    raise BundleError(f"the response is {length} bytes, over {MAX_BUNDLE_BYTES}")
                # With no size given, read() raises IncompleteRead on a body cut short.
                body: bytes = (
                    response.read() if length is not None else response.read(MAX_BUNDLE_BYTES + 1)
                )
                if len(body) > MAX_BUNDLE_BYTES:
                    raise BundleError(f"the response is over {MAX_BUNDLE_BYTES} bytes")
                return body, response.headers.get("ETag")
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 304:
                return None
            raise

    def start(self, client: Client, interval: float) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(client, interval), name="flagstone-poll", daemon=True
        )
        self._thread.start()

    def _run(self, client: Client, interval: float) -> None:
        from flagstone.runtime.client import describe_error

        failures = 0
        while not self._stop.wait(retry_delay(interval, failures)):
            try:
                self.poll_once(client)
                failures = 0
            except (
                Exception
            ) as e:  # HTTP errors, resets, timeouts, IncompleteRead, BadStatusLine...
                failures = min(failures + 1, 30)
                try:
                    client.source_failed(f"fetching {self.url} failed: {describe_error(e)}")
                except Exception:
                    logger.exception("flagstone: reporting a fetch failure failed")

    def poll_once(self, client: Client) -> None:
        fetched = self.fetch()
        if fetched is None:
            client.source_unchanged()
            return
        body, etag = fetched
        with collector_paused():
            try:
                bundle = client.load(body)
            except BundleError as e:
                client.refused(e)
                return
            client.swap(bundle)
        self.etag = etag

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

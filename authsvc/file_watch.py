"""Files re-read when they change on disk, off the request path (CONTRACT §6).

A Kubernetes secret is rotated by swapping a symlink: the path's inode,
size or modification time changes. A daemon thread looks every few seconds;
a changed file is loaded whole and handed over only when it loads, so a
bad file keeps the previous value and says why (``last_error``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHECK_EVERY = 2.0
"""Seconds between two looks at the file: the contract asks for at most 10."""


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class FileWatch:
    """Calls ``reload()`` after ``path`` changed; ``reload`` raises to refuse the new file.

    ``what`` names the file in the log (``[auth.jwt.corp] key_file /etc/keys/idp.pem``).
    """

    def __init__(
        self,
        path: str | Path,
        reload: Callable[[], None],
        what: str,
        every: float = CHECK_EVERY,
    ) -> None:
        self.path = Path(path)
        self._reload = reload
        self.what = what
        self._every = every
        self._seen = _stamp(self.path)
        self.loaded_at = time.time()
        self.last_error = ""
        self.last_error_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {what}", daemon=True)
        self._thread.start()

    def check(self) -> bool:
        """Look once; True when the file changed and its new content was taken."""
        stamp = _stamp(self.path)
        if stamp == self._seen:
            return False
        self._seen = stamp
        if stamp is None:
            self._fail("the file is gone; keeping the keys read before")
            return False
        try:
            self._reload()
        except (ValueError, OSError) as exc:  # KeyError_ is a ValueError
            self._fail(f"the changed file is refused, keeping the keys read before: {exc}")
            return False
        self.loaded_at = time.time()
        if self.last_error:
            log.info("%s: read again", self.what)
        self.last_error = ""
        self.last_error_at = None
        log.info("%s: changed on disk, read again", self.what)
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "last_reload": _iso(self.loaded_at),
            "last_error": self.last_error or None,
            "last_error_at": _iso(self.last_error_at) if self.last_error_at else None,
        }

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=self._every + 1)

    def _fail(self, error: str) -> None:
        self.last_error = error
        self.last_error_at = time.time()
        log.warning("%s: %s", self.what, error)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.check()
            except Exception:  # the watcher must outlive any bug
                log.exception("%s: checking the file failed", self.what)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

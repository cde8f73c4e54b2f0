"""A bounded least-recently-used map, by entry count and by bytes.

Every per-token cache is one of these (CONTRACT §7 "Bounded memory"): a
client sending many distinct or very large tokens evicts older entries, it
never grows a worker's memory past the bound.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


class LRUCache(Generic[_K, _V]):
    """At most ``max_entries`` entries whose estimated sizes sum to at most ``max_bytes``.

    Thread-safe. Sizes are the caller's estimate of what an entry keeps alive;
    an entry larger than ``max_bytes`` on its own is not stored.
    """

    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: dict[_K, tuple[_V, int]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: _K) -> _V | None:
        """The value, now the most recently used; None when absent."""
        data = self._data
        entry = data.get(key)
        if entry is None:  # the common miss costs no lock
            return None
        try:
            if next(reversed(data)) == key:  # already the newest (one busy token): no lock
                return entry[0]
        except RuntimeError:  # another thread changed the dict between the two calls
            pass
        with self._lock:
            entry = self._data.pop(key, None)
            if entry is None:
                return None
            self._data[key] = entry  # dicts keep insertion order: the end is the newest
            return entry[0]

    def put(self, key: _K, value: _V, size: int = 0) -> None:
        if self.max_entries <= 0 or (self.max_bytes is not None and size > self.max_bytes):
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._data[key] = (value, size)
            self._bytes += size
            while len(self._data) > self.max_entries or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                oldest = next(iter(self._data))
                self._bytes -= self._data.pop(oldest)[1]

    def pop(self, key: _K) -> None:
        with self._lock:
            entry = self._data.pop(key, None)
            if entry is not None:
                self._bytes -= entry[1]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

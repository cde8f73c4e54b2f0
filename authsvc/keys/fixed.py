"""Key sets given by the configuration: a PEM key, a JWKS file or value, an HMAC secret.

The three configured sources differ only in how they read their keys; once
read, they answer from one dict and describe themselves alike. A key that
lives in a file (``key_file``, ``jwk_set_file``) is read again when the file
changes (``authsvc.file_watch``); a value in the configuration changes only
with a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Self

from authsvc.file_watch import FileWatch
from authsvc.keys.base import KeyState, VerificationKey, describe_keys


class FixedKeyProvider:
    """Keys read at start-up: KeyProvider, KeyIds and KeyDescription.

    Subclasses provide ``from_config``; ``source`` is what /api/admin/keys shows
    of where the keys came from, starting with the config key that set them
    (``key_file /etc/keys/idp.pem``).
    """

    def __init__(
        self,
        keys: Mapping[str | None, VerificationKey],
        source: str,
        reload: Callable[[], Mapping[str | None, VerificationKey]] | None = None,
        path: str = "",
        what: str = "",
    ) -> None:
        """``reload`` (with ``path``) re-reads the keys from that file when it changes."""
        self._keys = dict(keys)
        self._source = source
        self._kind = source.split()[0] if source else ""
        self._watch: FileWatch | None = None
        if reload is not None and path:
            load = reload

            def take() -> None:
                # One assignment: a request sees the old dict or the new one, never half.
                self._keys = dict(load())

            self._watch = FileWatch(path, take, what or source)

    @classmethod
    def file_or_value(
        cls,
        read: Callable[[], Mapping[str | None, VerificationKey]],
        section: str,
        file_key: str,
        path: str,
        value_key: str,
    ) -> Self:
        """Keys from ``file_key`` = ``path`` (re-read when the file changes) or, when no
        path is set, from the inline ``value_key``; ``read`` reads whichever is set."""
        if not path:
            return cls(read(), value_key)
        return cls(
            read(),
            f"{file_key} {path}",
            reload=read,
            path=path,
            what=f"[{section}] {file_key} {path}",
        )

    def get_key(self, kid: str | None) -> VerificationKey | None:
        return self._keys.get(kid)

    def health(self) -> KeyState:
        """Always usable; a changed file that was refused is a problem, not an outage."""
        error = self._watch.last_error if self._watch is not None else ""
        return KeyState("ok", problem=error)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()

    def kids(self) -> list[str | None]:
        return list(self._keys)

    def refresh(self) -> None:
        """Fixed keys change only with a restart."""

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "kind": self._kind,
            "source": self._source,
            "keys": describe_keys(self._keys.values()),
        }
        if self._watch is not None:
            described.update(self._watch.describe())
        return described

"""Log setup: ``text`` or ``json`` lines on stderr, each tagged with its request id.

No token or secret is ever logged: code that must identify a token logs
``authsvc.verifier.fingerprint(token)``, a short hash that cannot be turned back.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from authsvc.config import LogSettings

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra=`` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "t": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``logfmt``-like text, like Grafana's console logger."""

    def __init__(self) -> None:
        super().__init__(
            "t=%(asctime)s level=%(levelname)s logger=%(name)s "
            "request_id=%(request_id)s msg=%(message)r"
        )

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = getattr(record, "request_id", "-")
        line = super().format(record)
        extras = [
            f"{k}={v!r}"
            for k, v in vars(record).items()
            if k not in _RESERVED and not k.startswith("_")
        ]
        return " ".join([line, *extras]) if extras else line


def configure_logging(settings: LogSettings) -> None:
    """Install one stderr handler on the ``authsvc`` logger (idempotent)."""
    logger = logging.getLogger("authsvc")
    logger.setLevel(_LEVELS[settings.level])
    for handler in list(logger.handlers):
        if getattr(handler, "_authsvc", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    handler._authsvc = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = True

    # Audit lines are JSON already (authsvc.audit), whatever the format and level above.
    audit = logging.getLogger("authsvc.audit")
    audit.setLevel(logging.INFO)
    audit.propagate = False
    for handler in list(audit.handlers):
        if getattr(handler, "_authsvc", False):
            audit.removeHandler(handler)
    lines = logging.StreamHandler(sys.stderr)
    lines.setFormatter(logging.Formatter("%(message)s"))
    lines._authsvc = True  # type: ignore[attr-defined]
    audit.addHandler(lines)

"""Minimal Flask "hello world" WSGI app used by ``bench/server_compare.py``.

Served as ``hello_app:app`` (gunicorn / granian are started with this
directory as their working directory).
"""

from __future__ import annotations

from flask import Flask

BODY = "Hello, World!"

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return BODY

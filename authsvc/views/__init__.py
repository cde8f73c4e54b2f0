"""Blueprints: the HTTP API of CONTRACT §3."""

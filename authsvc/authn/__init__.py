"""Authentication, Grafana-shaped: clients behind one interface, then ordered post-auth steps."""

from authsvc.authn.base import Caller, Client, JWTResult
from authsvc.authn.jwt_client import QUERY_PARAM, JWTClient, strip_bearer
from authsvc.authn.service import AuthnService
from authsvc.authn.session_client import SessionClient

__all__ = [
    "QUERY_PARAM",
    "AuthnService",
    "Caller",
    "Client",
    "JWTClient",
    "JWTResult",
    "SessionClient",
    "strip_bearer",
]

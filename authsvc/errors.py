"""The error vocabulary of CONTRACT §3: one base class, one subclass per messageId.

Each class carries its HTTP status and messageId; each instance carries the
specific ``reason`` (which claim, which kid, by how long). The app's single
error handler renders them; nothing else builds an error body.
"""

from __future__ import annotations

from typing import ClassVar


class AuthsvcError(Exception):
    """Base of every error a client may see."""

    status: ClassVar[int] = 500
    message_id: ClassVar[str] = "internal"
    message: ClassVar[str] = "Internal server error"

    def __init__(self, reason: str = "", *, token_presented: bool = True) -> None:
        super().__init__(reason or self.message)
        self.reason = reason
        self.token_presented = token_presented


class Unauthorized(AuthsvcError):
    status = 401
    message_id = "auth.unauthorized"
    message = "Authentication required"


class InvalidToken(AuthsvcError):
    status = 401
    message_id = "jwt.invalid"
    message = "Invalid JWT"


class MissingClaim(AuthsvcError):
    status = 401
    message_id = "jwt.missing_claim"
    message = "Missing required claim in JWT"


class InvalidRole(AuthsvcError):
    status = 403
    message_id = "jwt.invalid_role"
    message = "JWT carries no valid role"


class KeysUnavailable(AuthsvcError):
    status = 503
    message_id = "jwt.keys_unavailable"
    message = "No verification key is available"


class SignupDisabled(AuthsvcError):
    status = 401
    message_id = "user.sync.signup-disabled"
    message = "User not found and sign-up is disabled"


class UserConflict(AuthsvcError):
    status = 409
    message_id = "user.sync.conflict"
    message = "Login or email belongs to another account"


class IdentityDisabled(AuthsvcError):
    status = 401
    message_id = "identity.disabled"
    message = "User is disabled"


class SessionInvalid(AuthsvcError):
    status = 401
    message_id = "session.invalid"
    message = "Session is invalid or expired"


class Forbidden(AuthsvcError):
    status = 403
    message_id = "auth.forbidden"
    message = "Permission denied"


class NotFound(AuthsvcError):
    status = 404
    message_id = "api.not_found"
    message = "Not found"


class MethodNotAllowed(AuthsvcError):
    status = 405
    message_id = "api.method_not_allowed"
    message = "Method not allowed"


class BadRequest(AuthsvcError):
    status = 400
    message_id = "api.bad_request"
    message = "Bad request"


class ServiceUnavailable(AuthsvcError):
    """The database (or Redis as the session store) is unreachable; ``reason`` names which."""

    status = 503
    message_id = "service.unavailable"
    message = "Service unavailable"

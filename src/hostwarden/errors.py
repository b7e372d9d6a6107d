"""The exception hierarchy every user-facing error in hostwarden belongs to."""

from __future__ import annotations


class HostwardenError(Exception):
    """Base of all errors a user can see; the message says what was wrong and what to do.

    ``status`` is the HTTP status the API answers with; ``code`` a stable machine name
    that becomes the problem type URI (RFC 9457).
    """

    status: int = 400
    code: str = "error"
    title: str = "Request failed"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class ConfigError(HostwardenError):
    code = "config-invalid"
    title = "Configuration is invalid"
    status = 500


class ValidationFailed(HostwardenError):
    code = "validation-failed"
    title = "Input is invalid"
    status = 422


class NotFound(HostwardenError):
    code = "not-found"
    title = "Not found"
    status = 404


class TooLarge(HostwardenError):
    code = "too-large"
    title = "Request too large"
    status = 413


class Conflict(HostwardenError):
    code = "conflict"
    title = "Conflicts with stored data"
    status = 409


class AuthenticationFailed(HostwardenError):
    code = "unauthenticated"
    title = "Authentication required"
    status = 401


class AccountLocked(AuthenticationFailed):
    code = "account-locked"
    title = "Account is locked"
    status = 423


class PermissionDenied(HostwardenError):
    code = "forbidden"
    title = "Not allowed for your role"
    status = 403


class CsrfFailed(PermissionDenied):
    code = "csrf-failed"
    title = "Form token missing or wrong"


class NotInitialised(HostwardenError):
    code = "not-initialised"
    title = "Data directory not initialised"
    status = 503


class IntegrityBroken(HostwardenError):
    code = "integrity-broken"
    title = "Tamper evidence check failed"
    status = 500

"""UTC time helpers: every stored time in hostwarden is timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Treat a naive datetime as UTC (SQLite returns naive values) and convert aware ones."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def isoformat(value: datetime) -> str:
    """Canonical text form used in hashes and exports: microseconds, ``Z`` suffix."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def isoformat_or_none(value: datetime | None) -> str | None:
    return isoformat(value) if value is not None else None


def doubling_backoff(first_seconds: float, attempts: int, cap_seconds: float) -> timedelta:
    """The wait after the ``attempts``-th failed try: ``first_seconds``, doubled after each
    further failure, at most ``cap_seconds`` (the exponent is bounded first, so a long run
    of failures cannot overflow)."""
    seconds = first_seconds * 2 ** min(attempts - 1, 30)
    return timedelta(seconds=min(seconds, cap_seconds))


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 date or date-time given by a user; naive input means UTC."""
    cleaned = text.strip()
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        return as_utc(datetime.fromisoformat(cleaned))
    except ValueError as exc:
        from hostwarden.errors import ValidationFailed

        raise ValidationFailed(
            f"'{text}' is not a date or time.",
            hint="Use ISO 8601, for example 2026-05-01 or 2026-05-01T10:00:00+08:00.",
        ) from exc

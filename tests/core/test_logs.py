"""Log lines are JSON with the request id, personal data masked and secrets left out."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from hostwarden.core.logs import bind_request_id, configure_logging, get_logger

ID_NUMBER = "11010519491231002X"
PHONE = "13812345678"
THIRD_PARTY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "apscheduler", "alembic")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the other tests."""
    loggers = [logging.getLogger(name) for name in (None, *THIRD_PARTY_LOGGERS)]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    err = capsys.readouterr().err
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def one_line(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    found = lines(capsys)
    assert len(found) == 1, found
    return found[0]


def test_a_log_line_is_one_json_object_with_level_logger_time_and_request_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    bind_request_id("req-123")

    get_logger("hostwarden.test").info("user created", user_id=7)

    line = one_line(capsys)
    assert line["event"] == "user created"
    assert line["user_id"] == 7
    assert line["level"] == "info"
    assert line["logger"] == "hostwarden.test"
    assert line["request_id"] == "req-123"
    assert line["timestamp"].endswith("Z")


def test_binding_a_new_request_id_replaces_the_previous_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    log = get_logger("hostwarden.test")
    bind_request_id("first")
    log.info("one")
    bind_request_id("second")
    log.info("two")

    assert [line["request_id"] for line in lines(capsys)] == ["first", "second"]


def test_personal_data_in_the_message_and_in_fields_is_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")

    get_logger("hostwarden.test").info(
        f"customer {ID_NUMBER} called",
        phone=PHONE,
        contact={"email": "zhang.wei@example.cn", "numbers": [PHONE]},
    )

    raw = json.dumps(one_line(capsys), ensure_ascii=False)
    for secret in (ID_NUMBER, PHONE, "zhang.wei@"):
        assert secret not in raw
    assert "110105********002X" in raw
    assert "138****5678" in raw
    assert "z***@example.cn" in raw


@pytest.mark.parametrize(
    "key", ["password", "token", "secret", "authorization", "cookie", "session", "Password"]
)
def test_secret_keys_never_show_their_value(capsys: pytest.CaptureFixture[str], key: str) -> None:
    configure_logging("INFO", "json")

    get_logger("hostwarden.test").info("login", **{key: "hunter2-very-secret"})

    line = one_line(capsys)
    assert "hunter2-very-secret" not in json.dumps(line)
    assert line.get(key) in (None, "***")


@pytest.mark.parametrize("key", ["db_password", "api_token", "client_secret", "session-cookie"])
def test_keys_naming_a_secret_as_part_of_their_name_never_show_their_value(
    capsys: pytest.CaptureFixture[str], key: str
) -> None:
    configure_logging("INFO", "json")

    get_logger("hostwarden.test").info("connecting", **{key: "hunter2-very-secret"})

    assert "hunter2-very-secret" not in json.dumps(one_line(capsys))


def test_standard_library_log_records_are_json_and_masked_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    bind_request_id("req-std")

    logging.getLogger("some.library").warning("lookup for %s failed", PHONE)

    line = one_line(capsys)
    assert line["event"] == "lookup for 138****5678 failed"
    assert line["level"] == "warning"
    assert line["logger"] == "some.library"
    assert line["request_id"] == "req-std"


def test_server_loggers_go_through_the_same_json_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.getLogger("uvicorn.access").addHandler(logging.StreamHandler())
    configure_logging("INFO", "json")

    logging.getLogger("uvicorn.access").info("GET /healthz 200")

    assert one_line(capsys)["event"] == "GET /healthz 200"


def test_personal_data_in_an_exception_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    log = get_logger("hostwarden.test")

    try:
        raise ValueError(f"duplicate key (id_number)=({ID_NUMBER}), phone {PHONE}")
    except ValueError:
        log.exception("unhandled error")
    try:
        raise ValueError(f"duplicate key (id_number)=({ID_NUMBER})")
    except ValueError:
        logging.getLogger("some.library").exception("driver failed")

    found = lines(capsys)
    assert len(found) == 2
    for line in found:
        raw = json.dumps(line)
        assert "ValueError" in raw, "the exception was not logged at all"
        assert ID_NUMBER not in raw
        assert PHONE not in raw
        assert "110105********002X" in raw


def test_the_level_setting_filters_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING", "json")
    log = get_logger("hostwarden.test")

    log.info("not shown")
    log.warning("shown")

    assert [line["event"] for line in lines(capsys)] == ["shown"]


def test_the_console_format_is_plain_text_and_still_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "console")

    get_logger("hostwarden.test").info("called", phone=PHONE, password="hunter2-very-secret")

    err = capsys.readouterr().err
    assert "called" in err
    assert not err.lstrip().startswith("{")
    assert PHONE not in err
    assert "hunter2-very-secret" not in err
    assert "138****5678" in err

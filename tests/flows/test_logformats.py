"""Log parsers: nginx/Apache combined and JSON, Junos and configured NAT port blocks, sshd."""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hostwarden.core.config import FlowSettings
from hostwarden.flows import imports, logformats
from hostwarden.flows.logformats import LogContext, LogLineError, ParseStats

LOGS = Path(__file__).parent.parent / "fixtures" / "logs"
SHANGHAI = ZoneInfo("Asia/Shanghai")
CUSTOM_NAT = (
    r"PBA (?P<event>assign|release) (?P<inside>\S+) (?P<outside>\S+) "
    r"(?P<port_first>\d+)-(?P<port_last>\d+)(?: (?P<proto>\w+))?"
)


def parse(fmt: str, name: str, **ctx: object) -> tuple[list[dict[str, object]], ParseStats]:
    context = LogContext(where=name, server_ip="192.0.2.10", zone=SHANGHAI)
    for key, value in ctx.items():
        setattr(context, key, value)
    stats = ParseStats()
    rows: list[dict[str, object]] = []
    with (LOGS / name).open(encoding="utf-8") as handle:
        for table in logformats.READERS[fmt](handle, context, stats):
            rows += table.to_pylist()
    return rows, stats


def test_combined_lines_keep_utf8_agents_percent_encoding_ipv6_clients_and_dashes() -> None:
    rows, stats = parse("nginx", "nginx_combined.log")
    assert stats.records == 6
    assert rows[0]["time"].isoformat() == "2026-05-01T02:00:00+00:00"
    assert (rows[0]["method"], rows[0]["path"], rows[0]["status"]) == ("GET", "/index.html", 200)
    # nginx writes bytes outside ASCII as \xHH; the UTF-8 they spell is stored as text.
    assert (
        rows[1]["user_agent"]
        == "Mozilla/5.0 (Linux; Android 13; 华为 Mate 60) MQQBrowser/14.2 浏览器"
    )
    assert rows[1]["referer"] == "https://www.example.cn/首页"
    assert rows[1]["path"] == "/search?q=%E4%BD%A0%E5%A5%BD&page=2", "percent-encoding kept as sent"
    assert rows[2]["referer"] == "" and rows[2]["bytes"] == 0
    # A TLS handshake sent to a plain port is kept, its control bytes written out.
    assert rows[3]["method"] == "" and rows[3]["path"].startswith("\\x16\\x03\\x01")
    assert rows[4]["bytes"] == 0 and rows[4]["path"] == "/%2e%2e/%2e%2e/etc/passwd"
    assert all(r["host"] == "" and r["request_time"] is None for r in rows)


def test_the_virtual_host_prefix_and_request_time_are_read() -> None:
    rows, _ = parse("nginx", "nginx_vhost_timed.log")
    assert [r["host"] for r in rows] == ["shop.example.cn", "api.example.cn", "shop.example.cn:443"]
    assert [r["request_time"] for r in rows] == [0.012, 30.001, None]
    assert rows[1]["status"] == 502


def test_json_access_logs_take_the_common_key_names() -> None:
    rows, _ = parse("nginx-json", "nginx_access.jsonl")
    assert [r["time"].isoformat() for r in rows] == [
        "2026-05-01T02:00:00+00:00",
        "2026-05-01T02:00:01.250000+00:00",
        "2026-05-01T02:00:02+00:00",
    ]
    assert rows[0]["remote_port"] == 51234 and rows[0]["request_time"] == 0.034
    assert (rows[1]["method"], rows[1]["path"], rows[1]["protocol"]) == (
        "DELETE",
        "/v1/items/7",
        "HTTP/2.0",
    )
    assert rows[1]["host"] == "api.example.cn"


def test_json_lines_without_a_server_address_need_server_ip() -> None:
    with pytest.raises(LogLineError, match=r"nginx_access.jsonl:2: no server_addr"):
        # Line 1 names its server_addr, line 2 does not.
        parse("nginx-json", "nginx_access.jsonl", server_ip=None)
    rows, _ = parse("nginx-json", "nginx_access.jsonl", server_ip="192.0.2.99")
    assert len(rows) == 3


def test_sshd_auth_events_are_read_and_other_lines_counted_as_skipped() -> None:
    rows, stats = parse("ssh-auth", "auth.log", year=2026)
    assert [r["result"] for r in rows] == [
        "invalid-user",
        "failed",
        "disconnect",
        "failed",
        "disconnect",
        "disconnect",
        "accepted",
        "disconnect",
        "failed",
    ]
    assert rows[1]["user"] == "admin" and rows[1]["method"] == "password"
    assert rows[1]["remote_port"] == 52144 and rows[1]["pid"] == 1201
    assert rows[6]["method"] == "publickey" and rows[6]["user"] == "deploy"
    assert rows[8]["user"] == "用户", "OpenSSH 9.8's sshd-session lines count too"
    assert rows[0]["time"].isoformat() == "2026-05-01T02:02:11+00:00"
    assert stats.skipped == {"other sshd messages": 3, "not sshd": 1}


def test_iso_and_rfc5424_syslog_times_need_no_zone_or_year() -> None:
    rows, stats = parse("ssh-auth", "sshd_short_iso.log", zone=None)
    assert [r["time"].isoformat() for r in rows] == [
        "2026-05-01T02:02:11+00:00",
        "2026-05-01T02:02:15.431000+00:00",
        "2026-05-01T02:05:42+00:00",
    ]
    assert rows[2]["pid"] == 1250 and rows[2]["result"] == "accepted"
    assert stats.skipped == {"other sshd messages": 1}


def test_classic_syslog_times_need_a_zone() -> None:
    with pytest.raises(Exception, match="carry no zone") as caught:
        parse("ssh-auth", "auth.log", zone=None, year=2026)
    assert "--tz" in str(caught.value.hint)  # type: ignore[attr-defined]


def test_classic_syslog_takes_the_year_of_the_file_and_one_less_across_new_year() -> None:
    context = LogContext(where="x", zone=SHANGHAI, mtime=1_767_312_000.0)  # 2026-01-02
    assert logformats._bsd_time("Dec 31 23:59:59", context) < logformats._bsd_time(
        "Jan  1 00:00:01", context
    )
    year_end = logformats._bsd_time("Dec 31 23:59:59", context)
    assert year_end == 1_767_196_799_000  # 2025-12-31T23:59:59+08:00


def test_junos_port_block_messages_are_read() -> None:
    rows, stats = parse("nat-syslog", "junos_pba.log", year=2026)
    assert [r["event"] for r in rows] == ["alloc", "alloc", "active", "release"]
    assert (rows[0]["port_first"], rows[0]["port_last"]) == (2048, 2303)
    assert stats.skipped == {"not a port block message": 1}


def test_a_configured_nat_regex_reads_another_devices_lines() -> None:
    rows, _ = parse("nat-syslog", "cgn_custom.log", nat_regex=re.compile(CUSTOM_NAT))
    assert [(r["event"], r["port_first"], r["proto"]) for r in rows] == [
        ("alloc", 4096, "TCP"),
        ("release", 4096, "TCP"),
    ]


def test_a_nat_regex_without_the_required_groups_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="lacks the named group"):
        FlowSettings(nat_regex=r"(?P<inside>\S+) (?P<outside>\S+)")
    with pytest.raises(ValueError, match="not a regular expression"):
        FlowSettings(nat_regex=r"(?P<inside>\S+")
    with pytest.raises(ValueError, match="does not read: when"):
        FlowSettings(nat_regex=CUSTOM_NAT + r" (?P<when>\S+)")


def test_a_bad_line_names_file_and_line(tmp_path: Path) -> None:
    lines = (LOGS / "nginx_combined.log").read_text(encoding="utf-8").splitlines()
    lines.insert(2, '203.0.113.9 - - [01/May/2026:10:00:00 +0800] "GET / HTTP/1.1" 200')
    bad = tmp_path / "access.log"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(LogLineError, match=r"access.log:3: the line is not in the combined"):
        parse("nginx", str(bad), where="access.log")
    lines[2] = '999.1.1.1 - - [01/May/2026:10:00:00 +0800] "GET / HTTP/1.1" 200 1 "-" "-"'
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(LogLineError, match=r"access.log:3: the client address '999.1.1.1'"):
        parse("nginx", str(bad), where="access.log")


def test_a_malformed_sshd_event_is_an_error_but_other_messages_are_not(tmp_path: Path) -> None:
    bad = tmp_path / "auth.log"
    bad.write_text(
        "May  1 10:00:00 web01 sshd[9]: Failed to release session: Interrupted system call\n"
        "May  1 10:00:01 web01 sshd[9]: Failed password for root from bad.example.com "
        "port 22 ssh2\n",
        encoding="utf-8",
    )
    with pytest.raises(LogLineError, match=r"auth.log:2: the remote address 'bad.example.com'"):
        parse("ssh-auth", str(bad), where="auth.log", year=2026)


def test_a_wrong_format_is_refused_on_the_first_line() -> None:
    with pytest.raises(LogLineError, match=r"nginx_combined.log:1: the line is not a syslog line"):
        parse("ssh-auth", "nginx_combined.log", year=2026)
    with pytest.raises(LogLineError, match=r"auth.log:1: the line is not in the combined"):
        parse("nginx", "auth.log")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("nginx_combined.log", "nginx"),
        ("nginx_vhost_timed.log", "nginx"),
        ("nginx_access.jsonl", "nginx-json"),
        ("auth.log", "ssh-auth"),
        ("sshd_short_iso.log", "ssh-auth"),
        ("junos_pba.log", "nat-syslog"),
    ],
)
def test_auto_tells_the_log_formats_apart(name: str, fmt: str) -> None:
    assert imports.detect_format(LOGS / name) == fmt
    assert imports.detect_format(LOGS / "cgn_custom.log", CUSTOM_NAT) == "nat-syslog"


def test_the_fast_split_path_reads_every_line_as_the_full_pattern_does() -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    text = "".join(
        (LOGS / name).read_text(encoding="utf-8")
        for name in ("nginx_combined.log", "nginx_vhost_timed.log")
    )
    text += '203.0.113.9 - - [01/May/2026:10:00:00  +0800] "GET / HTTP/1.1" 200 1 "-" "a b"\n'
    lines = pc.utf8_rtrim(pa.array(text.splitlines()), characters="\n")
    parts, unmatched = logformats._combined_parts(lines)
    assert unmatched is None
    assert parts.to_pylist() == pc.extract_regex(lines, logformats.COMBINED_RE2).to_pylist()

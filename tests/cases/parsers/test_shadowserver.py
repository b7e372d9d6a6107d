"""Shadowserver report mails: one event per CSV row, plain or zipped, zip bombs refused."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from hostwarden.cases.parsers import shadowserver
from hostwarden.cases.parsers.base import ReportMessage
from hostwarden.cases.parsers.mime import read_message
from hostwarden.cases.parsers.shadowserver import ShadowserverParser
from tests.cases.parsers.samples import parse_sample, utc

CSV_NAME = "2026-05-01-scan_ssh-hosting_example_net-asn64496.csv"


def test_scan_ssh_csv_gives_one_other_event_per_row_with_its_port() -> None:
    _, chosen, report = parse_sample("shadowserver_scan_ssh_csv.eml")

    assert chosen == "shadowserver"
    assert [(e.ip, e.port) for e in report.events] == [
        ("192.0.2.10", 22),
        ("192.0.2.11", 2222),
        ("2001:db8:10::5", 22),
    ]
    first = report.events[0]
    assert first.category == "other"
    assert first.occurred_at == utc(2026, 5, 1, 3, 12, 45)
    assert first.zone == ""  # Shadowserver writes UTC without saying so
    assert first.domain == "vps10.hosting.example.net"
    assert first.extra["report_type"] == "scan_ssh"
    assert first.extra["asn"] == "64496"
    assert first.extra["serverid"] == "SSH-2.0-OpenSSH_7.4"
    assert first.extra["row"] == 2
    assert '"2026-05-01 03:12:45","192.0.2.10","tcp",22' in first.excerpt
    assert '"timestamp","ip","protocol","port"' in first.excerpt


def test_a_row_without_a_valid_ip_becomes_a_note() -> None:
    _, _, report = parse_sample("shadowserver_scan_ssh_csv.eml")

    assert report.notes == [f"{CSV_NAME} row 4: no valid IP address ('not-an-ip')"]


def test_zipped_sinkhole_drone_report_gives_malware_events() -> None:
    _, chosen, report = parse_sample("shadowserver_sinkhole_drone_zip.eml")

    assert chosen == "shadowserver"
    assert report.notes == []
    assert [(e.category, e.ip, e.port) for e in report.events] == [
        ("malware", "203.0.113.99", 49152),
        ("malware", "203.0.113.100", 51544),
    ]
    first = report.events[0]
    assert first.occurred_at == utc(2026, 5, 1, 1, 2, 3)
    assert first.zone == "Z"
    assert first.extra["report_type"] == "sinkhole_http_drone"
    assert first.extra["infection"] == "andromeda"
    assert first.extra["cc_ip"] == "198.51.100.250"
    assert '"203.0.113.99",49152' in first.excerpt


@pytest.mark.parametrize(
    ("report_type", "category"),
    [
        ("botnet_drone", "malware"),
        ("sinkhole_http_drone", "malware"),
        ("honeypot_brute_force", "bruteforce"),
        ("honeypot_darknet", "scanning"),
        ("scan_dns", "other"),
        ("blocklist", "other"),
    ],
)
def test_report_type_from_the_file_name_decides_the_category(
    report_type: str, category: str
) -> None:
    name = f"2026-05-01-{report_type}-asn64496.csv"
    message = _mail({name: b"timestamp,ip,port\n2026-05-01 00:00:00,192.0.2.1,53\n"})
    [event] = ShadowserverParser().parse(message).events

    assert event.category == category
    assert event.extra["report_type"] == report_type


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _mail(attachments: dict[str, bytes]) -> ReportMessage:
    """A Shadowserver-style mail with the attachments (zip or csv) base64-encoded."""
    import base64

    parts = []
    for name, data in attachments.items():
        parts.append(
            f'--b\nContent-Type: application/octet-stream; name="{name}"\n'
            "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(data).decode()
        )
    raw = (
        "From: autoreports@shadowserver.example.net\nSubject: Shadowserver report\n"
        'Date: Fri, 01 May 2026 06:00:00 +0000\nContent-Type: multipart/mixed; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nReport attached.\n" + "".join(parts) + "--b--\n"
    )
    return read_message(raw.encode(), max_part_bytes=100 * 1024 * 1024)


GOOD_CSV = b"timestamp,ip,port\n2026-05-01 00:00:00,192.0.2.1,22\n"


def test_zip_bomb_member_is_refused_by_its_compression_ratio_and_the_rest_is_read() -> None:
    bomb = _zip({"2026-05-01-scan_ssh-a.csv": b"0" * (20 * 1024 * 1024), "good.csv": GOOD_CSV})
    assert len(bomb) < 100_000

    report = ShadowserverParser().parse(_mail({"2026-05-01-scan_ssh-a.zip": bomb}))

    assert [e.ip for e in report.events] == ["192.0.2.1"]
    assert report.notes == [
        "2026-05-01-scan_ssh-a.zip:2026-05-01-scan_ssh-a.csv: compression ratio over 100:1; "
        "refused (possible zip bomb)"
    ]


def test_zip_members_over_the_size_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shadowserver, "MAX_UNZIPPED_BYTES", 60)
    archive = _zip({"a.csv": GOOD_CSV, "b.csv": GOOD_CSV})

    report = ShadowserverParser().parse(_mail({"2026-05-01-scan_ssh-a.zip": archive}))

    # The first member fits; the two together exceed the per-report budget.
    assert [e.extra["file"] for e in report.events] == ["a.csv"]
    assert len(report.notes) == 1
    assert report.notes[0] == (
        "2026-05-01-scan_ssh-a.zip:b.csv: declares 51 bytes uncompressed, more than the "
        "9 bytes left of the 60-byte limit for a report; refused (possible zip bomb)"
    )


def _lie_about_size(archive: bytes, size: int) -> bytes:
    """The zip with the member's uncompressed size overwritten in both headers."""
    data = bytearray(archive)
    local = data.index(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, size)
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, size)
    return bytes(data)


def test_zip_bomb_that_lies_about_its_size_is_cut_off_with_a_note_not_a_crash() -> None:
    honest = _zip({"2026-05-01-scan_ssh-a.csv": b"0" * (20 * 1024 * 1024)})
    liar = _lie_about_size(honest, 2000)  # ratio now looks like a plain CSV's

    report = ShadowserverParser().parse(_mail({"2026-05-01-scan_ssh-a.zip": liar}))

    assert report.events == []
    assert len(report.notes) == 1
    assert "cannot be read" in report.notes[0]


def test_inflating_stops_at_the_ratio_limit_even_when_the_declared_sizes_were_believed() -> None:
    bomb = _zip({"a.csv": b"0" * (20 * 1024 * 1024)})
    notes: list[str] = []
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        member = archive.infolist()[0]
        content = shadowserver._read_member(
            archive, member, "a.zip:a.csv", shadowserver._Budget(), notes
        )

    assert content is None
    assert notes[0].startswith(f"a.zip:a.csv: inflates past {member.compress_size * 100} bytes")


def test_corrupt_zip_and_non_csv_members_are_notes() -> None:
    archive = _zip({"readme.txt": b"hello", "data.csv": GOOD_CSV})
    message = _mail({"2026-05-01-scan_ssh-a.zip": archive, "2026-05-01-scan_ssh-b.zip": b"PK\x03"})

    report = ShadowserverParser().parse(message)

    assert [e.ip for e in report.events] == ["192.0.2.1"]
    assert report.notes[0] == "2026-05-01-scan_ssh-a.zip:readme.txt: not a CSV file; skipped"
    assert report.notes[1].startswith("2026-05-01-scan_ssh-b.zip: not a readable zip file")

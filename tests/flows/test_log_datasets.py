"""Log datasets in the tamper-evident store: import, attribution, query, verify, expiry, holds."""

from __future__ import annotations

import errno
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, create_engine, func, select, text
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core import migrate
from hostwarden.core.config import Settings
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.flows import holds, imports
from hostwarden.flows.ingest import Ingestor
from hostwarden.flows.jobs import expire_segments
from hostwarden.flows.logformats import LogLineError
from hostwarden.flows.models import FlowChainEntry, FlowSegment
from hostwarden.flows.store import StoreWriteFailed, open_store
from hostwarden.flows.store import files as files_store
from hostwarden.flows.store.datasets import LogStore
from hostwarden.registry import inventory
from tests.registry.inventory_support import make_customers, make_ranges

LOGS = Path(__file__).parent.parent / "fixtures" / "logs"
runner = CliRunner()
MAY_1 = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp() * 1000)
DAY_MS = 86_400_000


@pytest.fixture
def customers(runtime: Runtime) -> dict[str, int]:
    """192.0.2.10 (the web and SSH server) passed from Acme to Bolt at 2026-05-01T02:05Z;
    CGNAT subscriber 100.64.0.10 is Carol's, and the registry knows her port block."""
    acme, bolt, carol = make_customers(runtime, "Acme", "Bolt", "Carol")
    make_ranges(runtime, "192.0.2.0/24", "203.0.113.0/24", "100.64.0.0/10")
    with runtime.operation(system_actor("test")) as op:
        inventory.assign(
            op,
            "192.0.2.10",
            acme,
            valid_from="2026-01-01T00:00:00Z",
            valid_to="2026-05-01T02:05:00Z",
        )
        inventory.assign(op, "192.0.2.10", bolt, valid_from="2026-05-01T02:05:00Z")
        inventory.assign(op, "100.64.0.10", carol, valid_from="2026-01-01T00:00:00Z")
        inventory.create_nat(
            op, "203.0.113.5", 2048, 2303, "100.64.0.10", valid_from="2026-01-01T00:00:00Z"
        )
    return {"acme": acme, "bolt": bolt, "carol": carol}


def import_log(
    runtime: Runtime, name: str | Path, fmt: str, **options: object
) -> dict[str, object]:
    store = open_store(runtime)
    logs = LogStore(runtime)
    try:
        report = imports.import_file(
            Ingestor(runtime, store),
            LOGS / name,
            fmt,
            tz="Asia/Shanghai",
            logs=logs,
            **options,  # type: ignore[arg-type]
        )
    finally:
        logs.close()
        store.close()
    return report.as_dict()


def log_segments(runtime: Runtime) -> list[FlowSegment]:
    with runtime.reading() as session:
        return list(session.scalars(select(FlowSegment).where(FlowSegment.dataset != "flows")))


def test_ssh_logins_are_attributed_to_who_held_the_server_then(
    runtime: Runtime, customers: dict[str, int]
) -> None:
    report = import_log(runtime, "auth.log", "ssh-auth", server_ip="192.0.2.10", year=2026)
    assert report["records"] == 9 and report["attributed"] == 9
    assert report["notes"] == [
        "1 line(s) skipped: not sshd",
        "3 line(s) skipped: other sshd messages",
    ]
    found = LogStore(runtime).query("ssh", start_ms=MAY_1, end_ms=MAY_1 + DAY_MS)
    rows = found.to_pylist()
    before = [r for r in rows if r["time"] < datetime(2026, 5, 1, 2, 5, tzinfo=UTC)]
    after = [r for r in rows if r["time"] >= datetime(2026, 5, 1, 2, 5, tzinfo=UTC)]
    assert {r["customer_id"] for r in before} == {customers["acme"]}
    assert {r["customer_id"] for r in after} == {customers["bolt"]}
    assert {r["server"] for r in rows} == {"192.0.2.10"}
    attacker = LogStore(runtime).query(
        "ssh", start_ms=MAY_1, end_ms=MAY_1 + DAY_MS, ips=["198.51.100.0/24"]
    )
    assert set(attacker.column("remote").to_pylist()) == {"198.51.100.23", "198.51.100.24"}
    (segment,) = log_segments(runtime)
    assert segment.dataset == "ssh" and segment.name.startswith("ssh/2026-05-01/")
    with runtime.reading() as session:
        body = json.loads(session.scalars(select(FlowChainEntry.body)).one())
    assert body["dataset"] == "ssh"


def test_nat_blocks_are_attributed_through_the_registrys_port_blocks(
    runtime: Runtime, customers: dict[str, int]
) -> None:
    report = import_log(runtime, "junos_pba.log", "nat-syslog", year=2026)
    assert report["records"] == 4
    rows = LogStore(runtime).query("nat", start_ms=MAY_1, end_ms=MAY_1 + DAY_MS).to_pylist()
    by_block = {(r["inside"], r["port_first"], r["event"]): r["customer_id"] for r in rows}
    assert by_block[("100.64.0.10", 2048, "alloc")] == customers["carol"]
    assert by_block[("100.64.0.10", 2048, "release")] == customers["carol"]
    # No NAT block, no assignment of 100.64.0.11 or of the public address: nobody.
    assert by_block[("100.64.0.11", 2304, "alloc")] == -1
    carol = LogStore(runtime).query(
        "nat", start_ms=MAY_1, end_ms=MAY_1 + DAY_MS, customers=[customers["carol"]]
    )
    assert carol.num_rows == 3


def test_http_access_logs_are_stored_and_queried_by_address(
    runtime: Runtime, customers: dict[str, int]
) -> None:
    import_log(runtime, "nginx_combined.log", "auto", server_ip="192.0.2.10")
    import_log(runtime, "nginx_access.jsonl", "auto", server_ip="192.0.2.10")
    store = LogStore(runtime)
    ipv6 = store.query("http", start_ms=MAY_1, end_ms=MAY_1 + DAY_MS, ips=["2001:db8:beef::17"])
    assert ipv6.column("path").to_pylist() == ["/v1/items/7", "/wp-login.php"]
    everything = store.query("http", start_ms=MAY_1, end_ms=MAY_1 + DAY_MS)
    assert everything.num_rows == 9
    assert any("华为 Mate 60" in a for a in everything.column("user_agent").to_pylist())
    assert set(everything.column("customer_id").to_pylist()) == {customers["acme"]}
    # Flow queries never read log segments.
    flows = open_store(runtime)
    try:
        assert flows.query(start_ms=MAY_1, end_ms=MAY_1 + DAY_MS).num_rows == 0
    finally:
        flows.close()


def test_a_file_with_a_bad_line_stores_nothing(runtime: Runtime, tmp_path: Path) -> None:
    lines = (LOGS / "auth.log").read_text(encoding="utf-8").splitlines()
    lines.append(
        "May  1 11:00:00 web01 sshd[9]: Accepted password for x from 300.1.2.3 port 1 ssh2"
    )
    bad = tmp_path / "auth.log"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(LogLineError, match=r"auth.log:14: the remote address '300.1.2.3'"):
        import_log(runtime, bad, "ssh-auth", server_ip="192.0.2.10", year=2026)
    assert log_segments(runtime) == []
    with runtime.reading() as session:
        assert session.scalar(select(func.count()).select_from(FlowChainEntry)) == 0


def test_the_shell_imports_logs_and_queries_them(
    runtime: Runtime, env_for_home: dict[str, str], customers: dict[str, int]
) -> None:
    result = runner.invoke(
        app,
        [
            *("flows", "import", str(LOGS / "auth.log"), "--server-ip", "192.0.2.10"),
            *("--tz", "Asia/Shanghai", "--year", "2026", "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["format"] == "ssh-auth"
    found = runner.invoke(
        app,
        [
            *("logs", "query", "--dataset", "ssh", "--from", "2026-05-01", "--to", "2026-05-01"),
            *("--ip", "198.51.100.23", "--json"),
        ],
    )
    assert found.exit_code == 0, found.output
    rows = json.loads(found.stdout)
    assert len(rows) == 6 and rows[0]["result"] == "invalid-user"
    table = runner.invoke(
        app, ["logs", "query", "--dataset", "ssh", "--from", "2026-05-01", "--to", "2026-05-02"]
    )
    assert table.exit_code == 0 and "deploy" in table.output
    wrong = runner.invoke(
        app, ["logs", "query", "--dataset", "dns", "--from", "2026-05-01", "--to", "2026-05-02"]
    )
    assert wrong.exit_code != 0 and "not a log dataset" in wrong.output
    no_server = runner.invoke(app, ["flows", "import", str(LOGS / "auth.log"), "--tz", "UTC"])
    assert no_server.exit_code != 0 and "--server-ip" in no_server.output


def test_verify_names_each_log_segment_modified_truncated_deleted_or_added(
    runtime: Runtime, settings: Settings
) -> None:
    import_log(runtime, "auth.log", "ssh-auth", server_ip="192.0.2.10", year=2026)
    import_log(runtime, "junos_pba.log", "nat-syslog", year=2026)
    import_log(runtime, "nginx_combined.log", "nginx", server_ip="192.0.2.10")
    import_log(runtime, "nginx_vhost_timed.log", "nginx", server_ip="192.0.2.10")
    store = open_store(runtime)
    try:
        assert store.verify().ok
        assert store.verify().segments_checked == 4
        root = settings.home / settings.flows.store_dir
        names = sorted(s.name for s in log_segments(runtime))
        http1, http2, nat, ssh = names
        data = bytearray((root / ssh).read_bytes())
        data[len(data) // 2] ^= 0x01
        (root / ssh).write_bytes(bytes(data))
        with (root / nat).open("r+b") as handle:
            handle.truncate(100)
        (root / http1).unlink()
        added = root / "http" / "2026-05-01" / "20260501T000000-deadbeef.parquet"
        added.write_bytes((root / http2).read_bytes())
        report = store.verify()
    finally:
        store.close()
    assert report.by_kind("modified") == [ssh]
    assert report.by_kind("truncated") == [nat]
    assert report.by_kind("deleted") == [http1]
    assert report.by_kind("added") == ["http/2026-05-01/20260501T000000-deadbeef.parquet"]
    since = open_store(runtime)
    try:
        assert since.verify(since_ms=MAY_1 + DAY_MS).by_kind("modified") == []
    finally:
        since.close()


def test_expiry_removes_old_log_segments_unless_a_hold_pins_them(
    runtime: Runtime, settings: Settings
) -> None:
    import_log(runtime, "auth.log", "ssh-auth", server_ip="192.0.2.10", year=2026)
    import_log(runtime, "junos_pba.log", "nat-syslog", year=2026)
    with runtime.operation(system_actor("legal")) as op:
        holds.place_hold(
            op, start="2026-05-01", end="2026-05-01", ips=["100.64.0.10"], reason="case 7"
        )
    later = MAY_1 + 200 * DAY_MS
    report = expire_segments(runtime, later)
    (ssh,) = [s.name for s in log_segments(runtime) if s.dataset == "ssh"]
    (nat,) = [s.name for s in log_segments(runtime) if s.dataset == "nat"]
    assert report.expired == [ssh]
    assert list(report.pinned) == [nat], "the inside address 100.64.0.10 is in the NAT segment"
    root = settings.home / settings.flows.store_dir
    assert not (root / ssh).exists() and (root / nat).exists()
    store = open_store(runtime)
    try:
        assert store.verify().ok
    finally:
        store.close()


def test_a_full_disk_while_sealing_stores_nothing_and_keeps_the_records(
    runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = files_store.write_all

    def write_until_full(fd: int, data: memoryview) -> None:
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files_store, "write_all", write_until_full)
    with pytest.raises(StoreWriteFailed, match="could not be written") as caught:
        import_log(runtime, "auth.log", "ssh-auth", server_ip="192.0.2.10", year=2026)
    assert "disk is full" in str(caught.value.hint)
    assert log_segments(runtime) == []
    root = settings.home / settings.flows.store_dir
    assert not [p for p in root.rglob("*") if p.is_file() and "ssh" in p.parts]
    monkeypatch.setattr(files_store, "write_all", real_write)
    report = import_log(runtime, "auth.log", "ssh-auth", server_ip="192.0.2.10", year=2026)
    assert report["records"] == 9 and len(log_segments(runtime)) == 1


def test_the_upgrade_marks_existing_segments_as_flows(settings: Settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0004_flow_store")
            tables = MetaData()
            tables.reflect(conn, only=["flow_segments"])
            conn.execute(
                tables.tables["flow_segments"].insert(),
                [
                    {
                        "name": "2026-05-01/20260501T000112-3f9c2a1e.parquet",
                        "day": "2026-05-01",
                        "rows": 1,
                        "size": 1,
                        "sha256": "0" * 64,
                        "first_ms": MAY_1,
                        "last_ms": MAY_1,
                        "min_local": "0" * 32,
                        "max_local": "0" * 32,
                        "min_customer": -1,
                        "max_customer": -1,
                        "sealed_at": datetime.now(UTC),
                        "seal_seq": 1,
                    }
                ],
            )
            command.upgrade(config, "head")
            assert conn.execute(text("SELECT dataset FROM flow_segments")).scalar_one() == "flows"
            command.downgrade(config, "0004_flow_store")
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def test_with_the_clickhouse_backend_log_segments_are_still_files_verified_as_such(
    runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.flows.test_store_conformance import use_backend

    use_backend(runtime, "clickhouse-chdb", monkeypatch)
    import_log(runtime, "auth.log", "ssh-auth", server_ip="192.0.2.10", year=2026)
    (ssh,) = [s.name for s in log_segments(runtime)]
    path = settings.home / settings.flows.store_dir / ssh
    assert path.is_file()
    store = open_store(runtime)
    try:
        report = store.verify()
        assert report.ok, report.problems
        assert report.segments_checked == 1
        data = bytearray(path.read_bytes())
        data[-100] ^= 0x01
        path.write_bytes(bytes(data))
        assert store.verify().by_kind("modified") == [ssh]
        path.unlink()
        assert store.verify().by_kind("deleted") == [ssh]
    finally:
        store.close()

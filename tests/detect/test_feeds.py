"""Feeds: mining pool lists and blocklists parsed, compiled for lookup, fetched from files
and a loopback HTTP server, and refreshed without losing the last good version."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import numpy as np
import pytest

from hostwarden.detect import feeds
from hostwarden.detect.feeds import AddressTable, FeedError, FeedSet
from hostwarden.errors import ConfigError
from hostwarden.registry import netaddr

POOLS = """\
# Pools seen in incident reports; one address, prefix or address:port a line.
203.0.113.0/28
198.51.100.7:3333
198.51.100.7:14444   # the same pool's TLS port
[2001:db8:5::7]:4444
2001:db8:6::/48

192.0.2.77
"""

FIREHOL = """\
#
# example_level1
#
# ipv4 hash:net ipset
#
# Maintainer      : an example
# This File Date  : Mon May  4 11:00:00 UTC 2026
#
192.0.2.0/24
198.51.100.0/25
203.0.113.200
"""

FEODO = """\
################################################################
# Botnet C2 IP blocklist (CSV), in the shape abuse.ch writes it #
# Last updated: 2026-05-04 11:47:08 UTC                        #
################################################################
#
# "first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"
"2025-11-02 07:30:05","203.0.113.205","443","online","2026-05-04","QakBot"
"2026-01-17 12:01:44","198.51.100.9","8080","offline","2026-04-30","Emotet"
"2026-03-01 00:00:01","2001:db8:c2::1","443","online","2026-05-04",""
"""


def lookup(table: AddressTable, texts: list[str]) -> list[str | None]:
    hi, lo = netaddr.texts_to_hilo(texts)
    return [table.range_text(r) if r >= 0 else None for r in table.lookup(hi, lo).tolist()]


def test_mining_feeds_take_addresses_prefixes_ports_and_comments() -> None:
    entries = feeds.parse_mining(POOLS, "pools.txt")
    assert [(e.port, e.where) for e in entries] == [
        (None, "pools.txt:2"),
        (3333, "pools.txt:3"),
        (14444, "pools.txt:4"),
        (4444, "pools.txt:5"),
        (None, "pools.txt:6"),
        (None, "pools.txt:8"),
    ]
    table = AddressTable(entries)
    assert len(table) == 5  # 198.51.100.7 is one range with two ports
    assert lookup(table, ["203.0.113.9", "203.0.113.16", "198.51.100.7", "2001:db8:5::7"]) == [
        "203.0.113.0/28",
        None,
        "198.51.100.7",
        "2001:db8:5::7",
    ]
    hi, lo = netaddr.texts_to_hilo(["198.51.100.7"] * 3 + ["203.0.113.1", "2001:db8:5::7"])
    ranges = table.lookup(hi, lo)
    ports = np.array([3333, 14444, 443, 80, 4444], np.uint16)
    assert table.port_matches(ranges, ports).tolist() == [True, True, False, True, True]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("pool.example.com:3333", "'pool.example.com' is a host name"),
        ("203.0.113.5/24", "'203.0.113.5/24' has host bits set"),
        ("203.0.113.5:99999", "'99999' is not a port number"),
        ("[2001:db8::7:3333", "has no closing ']'"),
        ("203.0.113.5 3333", "holds more than one entry"),
        ("300.1.2.3", "'300.1.2.3' is not an IP address"),
    ],
)
def test_a_bad_feed_line_names_file_line_and_problem(line: str, problem: str) -> None:
    with pytest.raises(FeedError) as caught:
        feeds.parse_mining(f"# pools\n203.0.113.1\n{line}\n", "pools.txt")
    assert caught.value.message.startswith("pools.txt:3: ")
    assert problem in caught.value.message
    assert caught.value.hint


def test_plain_lists_take_hash_and_semicolon_comments() -> None:
    drop = "; Spamhaus DROP style\n192.0.2.0/24 ; SBL000001\n198.51.100.7 # one host\n\n"
    entries = feeds.parse_plain(drop, "drop.txt", "spam-source")
    assert [(e.label, e.where) for e in entries] == [
        ("spam-source", "drop.txt:2"),
        ("spam-source", "drop.txt:3"),
    ]
    with pytest.raises(FeedError, match=r"drop.txt:1: '1.2.3.4 extra' holds more than one"):
        feeds.parse_plain("1.2.3.4 extra\n", "drop.txt", "x")


def test_firehol_netsets_are_read() -> None:
    table = AddressTable(feeds.parse_netset(FIREHOL, "level1.netset", "attacks"))
    assert len(table) == 3
    assert lookup(table, ["192.0.2.55", "198.51.100.127", "198.51.100.128", "203.0.113.200"]) == [
        "192.0.2.0/24",
        "198.51.100.0/25",
        None,
        "203.0.113.200",
    ]
    with pytest.raises(FeedError, match=r"level1.netset:2: '10.0.0.0/33'"):
        feeds.parse_netset("# x\n10.0.0.0/33\n", "level1.netset", "attacks")


def test_csv_lists_find_a_header_in_the_last_comment_and_take_row_categories() -> None:
    entries = feeds.parse_csv(FEODO, "feodo.csv", "c2", "dst_ip", "malware")
    assert [(e.label, e.where) for e in entries] == [
        ("QakBot", "feodo.csv:7"),
        ("Emotet", "feodo.csv:8"),
        ("c2", "feodo.csv:9"),  # an empty category: the list's own
    ]
    plain = "ip,category\n192.0.2.1,c2\n192.0.2.2,\n"
    assert [e.label for e in feeds.parse_csv(plain, "l.csv", "malware")] == ["malware"] * 2
    assert [e.label for e in feeds.parse_csv(plain, "l.csv", "malware", "ip", "category")] == [
        "c2",
        "malware",
    ]


def test_csv_errors_name_the_header_or_the_row() -> None:
    with pytest.raises(FeedError, match=r"feodo.csv:6: the header has no column 'family'"):
        feeds.parse_csv(FEODO, "feodo.csv", "c2", "dst_ip", "family")
    with pytest.raises(FeedError, match=r"l.csv:1: no header row with the address column 'ip'"):
        feeds.parse_csv("address\n192.0.2.1\n", "l.csv", "c2")
    with pytest.raises(FeedError, match=r"l.csv:3: '192.0.2.300' is not an IP address"):
        feeds.parse_csv("ip,x\n192.0.2.1,a\n192.0.2.300,b\n", "l.csv", "c2")
    with pytest.raises(FeedError, match=r"l.csv:2: the row has 1 field"):
        feeds.parse_csv("x,ip\nonly\n", "l.csv", "c2")


def test_nested_prefixes_answer_with_the_most_specific_entry() -> None:
    text = "10.0.0.0/8\n10.1.0.0/16\n10.1.2.3\n2001:db8::/32\n2001:db8:1::/48\n2001:db8:1::5\n"
    table = AddressTable(feeds.parse_plain(text, "l", "x"))
    assert lookup(
        table,
        [
            *("10.2.0.0", "10.1.2.3", "10.1.2.4", "10.1.255.255", "11.0.0.0", "9.255.255.255"),
            *("2001:db8:1::5", "2001:db8:1::6", "2001:db8:2::1", "2001:db9::", "::ffff:10.1.2.3"),
        ],
    ) == [
        "10.0.0.0/8",
        "10.1.2.3",
        "10.1.0.0/16",
        "10.1.0.0/16",
        None,
        None,
        "2001:db8:1::5",
        "2001:db8:1::/48",
        "2001:db8::/32",
        None,
        "10.1.2.3",
    ]


def test_the_first_list_names_a_range_listed_twice() -> None:
    a = feeds.parse_plain("192.0.2.0/24\n", "a.txt", "c2")
    b = feeds.parse_plain("192.0.2.0/24\n192.0.2.9\n", "b.txt", "malware")
    table = AddressTable(a + b)
    hi, lo = netaddr.texts_to_hilo(["192.0.2.1", "192.0.2.9"])
    found = table.lookup(hi, lo)
    assert [table.label(r) for r in found.tolist()] == ["c2", "malware"]
    assert [table.origins[r] for r in found.tolist()] == ["a.txt:1", "b.txt:2"]


def test_lookup_agrees_with_ipaddress_on_random_nested_lists() -> None:
    rng = np.random.default_rng(11)
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for _ in range(400):
        if rng.random() < 0.7:
            base = ipaddress.IPv4Address(int(rng.integers(0, 2**32)))
            networks.append(ipaddress.ip_network(f"{base}/{int(rng.integers(8, 33))}", False))
        else:
            base6 = ipaddress.IPv6Address(
                (0x20010DB8 << 96) | int(rng.integers(0, 2**62)) << 34 | int(rng.integers(0, 2**34))
            )
            networks.append(ipaddress.ip_network(f"{base6}/{int(rng.integers(32, 129))}", False))
    text = "\n".join(str(n) for n in networks)
    table = AddressTable(feeds.parse_plain(text, "r", "x"))
    probes: list[str] = []
    pick = random.Random(5)
    for n in networks[:200]:
        first = int(n.network_address)
        probes += [str(n.network_address), str(n.broadcast_address)]
        probes.append(str(type(n.network_address)(first + pick.randrange(n.num_addresses))))
        if first > 0:
            probes.append(str(type(n.network_address)(first - 1)))
    probes += [str(ipaddress.IPv4Address(int(x))) for x in rng.integers(0, 2**32, 300)]

    def innermost(text: str) -> str | None:
        address = ipaddress.ip_address(text)
        holding = [n for n in networks if n.version == address.version and address in n]
        return str(min(holding, key=lambda n: n.num_addresses)) if holding else None

    expected = [innermost(p) for p in probes]
    got = lookup(table, probes)
    assert got == [
        None if e is None else (e.split("/")[0] if e.endswith(("/32", "/128")) else e)
        for e in expected
    ]


# --- sources and refresh ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lists_are_fetched_over_http_and_a_failed_refresh_keeps_the_last_version(
    served: tuple[str, Path],
) -> None:
    base, root = served
    (root / "c2.txt").write_text("192.0.2.1\n", encoding="utf-8")
    clock = Clock()
    feed = feeds.threat_feed(f"{base}/c2.txt", root, format="plain", category="c2")
    feedset = FeedSet([feed], every_seconds=3600, clock=clock)
    feedset.start()
    assert lookup(feedset.table, ["192.0.2.1", "192.0.2.2"]) == ["192.0.2.1", None]
    # Not due yet: the new content waits for the refresh time (wall clock).
    (root / "c2.txt").write_text("192.0.2.2\n", encoding="utf-8")
    clock.now += 3599
    assert feedset.maybe_refresh() is False
    clock.now += 1
    assert feedset.maybe_refresh() is True
    assert lookup(feedset.table, ["192.0.2.1", "192.0.2.2"]) == [None, "192.0.2.2"]
    # A broken list and then a missing one: the last good version stays.
    (root / "c2.txt").write_text("192.0.2.3\nnot-an-address\n", encoding="utf-8")
    clock.now += 3600
    assert feedset.maybe_refresh() is False
    (root / "c2.txt").unlink()
    clock.now += 3600
    assert feedset.maybe_refresh() is False
    assert lookup(feedset.table, ["192.0.2.2"]) == ["192.0.2.2"]


def test_http_errors_say_what_the_server_answered(served: tuple[str, Path]) -> None:
    base, root = served
    with pytest.raises(FeedError, match=r"answered HTTP 404"):
        feeds.fetch_text(f"{base}/missing.txt", root)
    with pytest.raises(FeedError, match=r"'ftp' URLs are not read"):
        feeds.fetch_text("ftp://127.0.0.1/list.txt", root)


def test_an_unreachable_url_at_start_is_retried_but_a_bad_file_is_a_config_error(
    tmp_path: Path,
) -> None:
    # Port 9 on loopback (discard) has no listener here: the connection is refused.
    down = feeds.threat_feed("http://127.0.0.1:9/list.txt", tmp_path, format="plain", category="c2")
    clock = Clock()
    feedset = FeedSet([down], every_seconds=3600, clock=clock)
    feedset.start()
    assert len(feedset.table) == 0
    (tmp_path / "late.txt").write_text("192.0.2.1\n", encoding="utf-8")
    down.source = (tmp_path / "late.txt").as_uri()  # the "server" is back
    clock.now += 299
    assert feedset.maybe_refresh() is False
    clock.now += 1  # a feed never loaded is retried after five minutes, not an hour
    assert feedset.maybe_refresh() is True and len(feedset.table) == 1
    (tmp_path / "bad.txt").write_text("192.0.2.1\n192.0.2.0/22\n", encoding="utf-8")
    bad = feeds.threat_feed("bad.txt", tmp_path, format="plain", category="c2")
    with pytest.raises(ConfigError) as caught:
        FeedSet([bad], every_seconds=60).start()
    assert f"{tmp_path / 'bad.txt'}:2: '192.0.2.0/22' has host bits set" in caught.value.message
    with pytest.raises(ConfigError, match="cannot be read"):
        FeedSet([feeds.mining_feed("nowhere.txt", tmp_path)], every_seconds=60).start()


def test_file_urls_relative_paths_and_credentials_in_messages(tmp_path: Path) -> None:
    (tmp_path / "pools.txt").write_text(POOLS, encoding="utf-8")
    assert feeds.fetch_text((tmp_path / "pools.txt").as_uri(), Path("/")) == POOLS
    assert feeds.fetch_text("pools.txt", tmp_path) == POOLS
    assert (
        feeds.display_source("https://user:secret@lists.example.net:8443/c2.csv?x=1")
        == "https://lists.example.net:8443/c2.csv?x=1"
    )
    (tmp_path / "latin1.txt").write_bytes(b"# caf\xe9\n192.0.2.1\n")
    with pytest.raises(FeedError, match="is not UTF-8 text"):
        feeds.fetch_text("latin1.txt", tmp_path)


def test_an_unchanged_file_is_not_parsed_again(tmp_path: Path) -> None:
    path = tmp_path / "pools.txt"
    path.write_text("203.0.113.1\n", encoding="utf-8")
    feed = feeds.mining_feed(str(path), tmp_path)
    assert feed.load() is True
    assert feed.load() is False
    path.write_text("203.0.113.1\n203.0.113.2\n", encoding="utf-8")
    assert feed.load() is True
    assert feed.entries is not None and len(feed.entries) == 2

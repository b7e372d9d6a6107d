"""Log import parsing speed: nginx combined lines into the http dataset's Arrow table.

hostwarden's reader (Arrow RE2 over whole chunks, each distinct time and address
converted once) against the plain approach in the same run: one Python ``re`` match
and one ``datetime.strptime`` per line, rows built as dicts. Both read the same
synthetic lines (random IPv4 clients, 50 requests a second, realistic user agents); the
share of lines holding nginx's ``\\xHH`` escapes (UTF-8 user agents) is varied, since
those take the slower, escape-aware pattern and Python unescaping.

Run: .venv/bin/python bench/logformats.py [--lines 300000] [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import random
import re
import time
from datetime import datetime

import pyarrow as pa

from hostwarden.flows import logformats
from hostwarden.flows.store.datasets import PARSED_SCHEMAS

AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) MicroMessenger/8.0.47",
    "curl/8.5.0",
)
ESCAPED = "Mozilla/5.0 (Linux; Android 13; \\xE5\\x8D\\x8E\\xE4\\xB8\\xBA Mate 60) MQQBrowser/14.2"


def lines(count: int, escaped_share: float, seed: int = 1) -> str:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        s = i // 50
        agent = ESCAPED if rng.random() < escaped_share else rng.choice(AGENTS)
        out.append(
            f"203.0.{rng.randint(0, 255)}.{rng.randint(1, 254)} - - "
            f"[01/May/2026:{10 + s // 3600 % 10:02d}:{s // 60 % 60:02d}:{s % 60:02d} +0800] "
            f'"GET /p/{rng.randint(1, 99999)}?q=x HTTP/1.1" {rng.choice((200, 200, 304, 404))} '
            f'{rng.randint(0, 99999)} "https://www.example.cn/" "{agent}"\n'
        )
    return "".join(out)


PLAIN = re.compile(r'^(\S+) \S+ (\S+) \[([^\]]+)\] "([^"]*)" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"$')


def plain_reader(text: str) -> int:
    """The peer: per line, a match, a strptime and a dict; one Arrow table at the end."""
    rows = []
    for line in io.StringIO(text):
        m = PLAIN.match(line.rstrip("\n"))
        if m is None:
            raise ValueError(line)
        client, _user, when, request, status, sent, referer, agent = m.groups()
        parts = request.split(" ")
        rows.append(
            {
                "time": datetime.strptime(when, "%d/%b/%Y:%H:%M:%S %z"),
                "client": client,
                "method": parts[0] if len(parts) == 3 else "",
                "path": parts[1] if len(parts) == 3 else request,
                "status": int(status),
                "bytes": 0 if sent == "-" else int(sent),
                "referer": referer,
                "user_agent": logformats.unescape(agent),
            }
        )
    return pa.Table.from_pylist(rows).num_rows


def hostwarden_reader(text: str) -> int:
    context = logformats.LogContext(where="bench", server_ip="192.0.2.10")
    stats = logformats.ParseStats()
    rows = 0
    for table in logformats.read_combined(io.StringIO(text), context, stats):
        assert table.schema.equals(PARSED_SCHEMAS["http"])
        rows += table.num_rows
    return rows


def best_of(runs: int, reader: object, text: str) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        reader(text)  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=300_000, help="lines per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per reader (best kept)")
    options = parser.parse_args()
    count, runs = options.lines, options.runs
    print(f"{count:,} nginx combined lines, best of {runs} runs, lines/s")
    print("| escaped UTF-8 agents | plain re + strptime (peer) | hostwarden | ratio |")
    print("|---|---|---|---|")
    for share in (0.0, 0.1, 1 / 3):
        text = lines(count, share)
        peer = count / best_of(runs, plain_reader, text)
        ours = count / best_of(runs, hostwarden_reader, text)
        print(f"| {share:.0%} | {peer:,.0f} | {ours:,.0f} | {ours / peer:.1f}× |")


if __name__ == "__main__":
    main()

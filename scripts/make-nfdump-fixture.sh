#!/usr/bin/env bash
# Writes tests/fixtures/flows/nfdump-v9.csv: the traffic capture of make-traffic-pcap.py,
# metered by softflowd (NetFlow v9), collected by nfcapd and printed by `nfdump -o csv`
# in UTC (TZ=UTC), so the import test reads what a provider's nfdump really prints.
# Needs Debian's softflowd and nfdump; sends only to 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/tests/fixtures/flows/nfdump-v9.csv"
work=$(mktemp -d)
trap 'pkill -f "nfcapd -w $work" 2>/dev/null || true; rm -rf "$work"' EXIT
port=${PORT:-29995}
python3 "$here/scripts/make-traffic-pcap.py" "$work/traffic.pcap"
nfcapd -w "$work" -p "$port" -b 127.0.0.1 >"$work/nfcapd.log" 2>&1 &
sleep 1
softflowd -r "$work/traffic.pcap" -n "127.0.0.1:$port" -v 9 >"$work/softflowd.log" 2>&1
sleep 1
pkill -f "nfcapd -w $work"
sleep 1
for f in "$work"/nfcapd.2*; do TZ=UTC nfdump -r "$f" -o csv >"$out"; done
echo "wrote $out ($(wc -l <"$out") lines)"

#!/usr/bin/env bash
# Makes the softflowd fixtures of tests/fixtures/flows from a real exporter: Debian's
# softflowd meters a generated traffic capture (scripts/make-traffic-pcap.py) offline and
# exports NetFlow v5, v9 and IPFIX to loopback, where tcpdump records the export
# datagrams. Needs root (tcpdump on lo), softflowd and tcpdump; takes about half a minute.
# The outputs are committed, so the tests need none of this: they decode every datagram
# and compare every field with what tshark decodes from the same file.
#
#   softflowd-v5.pcap            NetFlow v5, flows expired early (-m 6): many datagrams
#   softflowd-v5-sampled.pcap    NetFlow v5, 1 in 10 packets (sampling in the header)
#   softflowd-v9.pcap            NetFlow v9, -m 6: templates only in the first datagram
#   softflowd-v9-sampled.pcap    NetFlow v9, 1 in 10 (options record SAMPLING_INTERVAL)
#   softflowd-ipfix.pcap         IPFIX, -m 6, flowStart/EndSysUpTime + systemInitTime
#   softflowd-ipfix-sampled.pcap IPFIX, 1 in 10 (samplingPacketInterval/Space)
#   softflowd-ipfix-biflow.pcap  IPFIX biflows (-b): RFC 5103 reverse elements, PEN 29305
#   softflowd-ipfix-sec.pcap     IPFIX, flowStart/EndSeconds
#   softflowd-ipfix-ms-ipv6.pcap IPFIX, flowStart/EndMilliseconds, exported over IPv6
#   softflowd-ipfix-us.pcap      IPFIX, flowStart/EndMicroseconds (NTP format)
#   softflowd-ipfix-ns.pcap      IPFIX, flowStart/EndNanoseconds (NTP format)
#
# Ports: NetFlow 2055, IPFIX 4739 (tests tell tshark with -d udp.port==PORT,cflow).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=tests/fixtures/flows
mkdir -p "$OUT"
for tool in softflowd softflowctl tcpdump python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing (scripts/system-deps.sh)" >&2; exit 1; }
done
if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root: tcpdump must capture on lo" >&2
  exit 1
fi

work=$(mktemp -d)
chmod 755 "$work"  # tcpdump drops to its own user before writing
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

python3 scripts/make-traffic-pcap.py "$work/traffic.pcap"

# export NAME VERSION DESTINATION PORT [softflowd options...]
export_flows() {
  local name=$1 version=$2 host=$3 port=$4
  shift 4
  local log="$work/$name.tcpdump" ctl="$work/$name.ctl"
  tcpdump -i lo -U --immediate-mode -n -w "$work/$name.pcap" "udp and dst port $port" 2>"$log" &
  local dump=$!
  pids+=("$dump")
  for _ in $(seq 50); do grep -q "listening on" "$log" && break; sleep 0.1; done

  # -a: flow times follow the capture's clock, not the wall clock; -6: IPv6 flows too.
  softflowd -r "$work/traffic.pcap" -n "$host:$port" -v "$version" -d -a -6 \
    -c "$ctl" -p "$work/$name.pid" "$@" >"$work/$name.softflowd" 2>&1 &
  local meter=$!
  pids+=("$meter")
  # softflowd 1.1.0 reads its -r file only when its main loop wakes up; a control-socket
  # request wakes it. It exits by itself at the end of the file, flushing every flow.
  for _ in $(seq 3000); do
    kill -0 "$meter" 2>/dev/null || break
    softflowctl -c "$ctl" statistics >/dev/null 2>&1 || true
    sleep 0.02
  done
  wait "$meter" || true
  sleep 1
  kill -INT "$dump"
  wait "$dump" || true
  cp "$work/$name.pcap" "$OUT/$name.pcap"
  echo "$OUT/$name.pcap: $(grep -o '[0-9]* packets captured' "$log")"
}

export_flows softflowd-v5 5 127.0.0.1 2055 -m 6
export_flows softflowd-v5-sampled 5 127.0.0.1 2055 -s 10
export_flows softflowd-v9 9 127.0.0.1 2055 -m 6
export_flows softflowd-v9-sampled 9 127.0.0.1 2055 -s 10
export_flows softflowd-ipfix 10 127.0.0.1 4739 -m 6
export_flows softflowd-ipfix-sampled 10 127.0.0.1 4739 -s 10
export_flows softflowd-ipfix-biflow 10 127.0.0.1 4739 -b
export_flows softflowd-ipfix-sec 10 127.0.0.1 4739 -A sec
export_flows softflowd-ipfix-ms-ipv6 10 "[::1]" 4739 -A milli
export_flows softflowd-ipfix-us 10 127.0.0.1 4739 -A micro
export_flows softflowd-ipfix-ns 10 127.0.0.1 4739 -A nano
ls -l "$OUT"/softflowd-*

#!/usr/bin/env bash
# Makes the pmacct fixtures of tests/fixtures/flows from a real exporter: Debian's pmacctd
# meters a generated traffic capture (scripts/make-traffic-pcap.py) offline and exports
# sFlow v5 (sfprobe) and NetFlow v9 / IPFIX (nfprobe) to loopback, where tcpdump records
# the export datagrams. Needs root (tcpdump on lo), pmacct, tcpdump and wireshark's
# editcap/mergecap; takes about 80 s because pmacct's sFlow agent sends its interface
# counters only on its wall-clock timer. The outputs are committed, so the tests need none
# of this.
#
#   pmacct-sflow.pcap          sampling 1, Ethernet headers, IPv4 agent, counters
#   pmacct-sflow-rate10.pcap   sampling 10, captured on "any" (Linux SLL2), nanoseconds
#   pmacct-sflow-rawip.pcap    sampling 1, IPv4/IPv6 header samples (raw-IP traffic)
#   pmacct-sflow-ipv6.pcap     sampling 5, IPv6 agent over IPv6, first datagram malformed
#   pmacct-sflow.pcapng        pmacct-sflow.pcap as pcapng (editcap)
#   pmacct-sflow-merged.pcapng pmacct-sflow.pcap + -rate10: two interfaces, two link
#                              types, micro- and nanosecond timestamps (mergecap)
#   pmacct-sflow-truncated.pcap  pmacct-sflow.pcap cut in the middle of a record
#   pmacct-nfprobe-v9.pcap / pmacct-nfprobe-ipfix.pcap  nfprobe, NetFlow v9 and IPFIX
#
# Ports: sFlow 16343-16346, NetFlow v9 12055, IPFIX 14739 (tests decode them by payload).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=tests/fixtures/flows
mkdir -p "$OUT"
for tool in pmacctd tcpdump editcap mergecap python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing (scripts/system-deps.sh)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

python3 scripts/make-traffic-pcap.py "$work/traffic.pcap"
python3 scripts/make-traffic-pcap.py --raw-ip "$work/traffic-rawip.pcap"
python3 scripts/make-traffic-pcap.py --rounds 15 "$work/traffic-long.pcap"

# probe NAME PORT INTERFACE WAIT TCPDUMP-OPTIONS -- CONFIG-LINES...
# Captures what pmacctd exports to 127.0.0.1:PORT into $OUT/NAME.pcap. WAIT seconds > 0
# keep pmacctd running after the savefile (pcap_savefile_wait) so that timers fire.
probe() {
  local name=$1 port=$2 iface=$3 wait=$4
  shift 4
  local opts=()
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done
  shift
  local conf="$work/$name.conf" log="$work/$name.tcpdump"
  printf '%s\n' "daemonize: false" "$@" >"$conf"
  [ "$wait" -gt 0 ] && echo "pcap_savefile_wait: true" >>"$conf"

  tcpdump -i "$iface" -U -n "${opts[@]}" -w "$work/$name.pcap" "udp and dst port $port" \
    >/dev/null 2>"$log" &
  local dump=$!
  pids+=("$dump")
  for _ in $(seq 50); do grep -q "listening on" "$log" && break; sleep 0.1; done

  if [ "$wait" -gt 0 ]; then
    pmacctd -f "$conf" >"$work/$name.pmacctd" 2>&1 &
    local meter=$!
    pids+=("$meter")
    sleep "$wait"
    kill -INT "$meter"
    wait "$meter" || true
  else
    timeout 60 pmacctd -f "$conf" >"$work/$name.pmacctd" 2>&1 || {
      echo "error: pmacctd for $name failed or hung; its log:" >&2
      cat "$work/$name.pmacctd" >&2
      kill -INT "$dump"
      return 1
    }
  fi
  sleep 1
  kill -INT "$dump"
  wait "$dump" || true
  cp "$work/$name.pcap" "$OUT/$name.pcap"
  echo "$OUT/$name.pcap: $(grep -o '[0-9]* packets captured' "$log")"
}

# Keys of a named plugin ("[sf]") because pmacct refuses direction and ifindex globally.
probe pmacct-sflow 16343 lo 70 -- "pcap_savefile: $work/traffic.pcap" "plugins: sfprobe[sf]" \
  "sfprobe_receiver[sf]: 127.0.0.1:16343" "sfprobe_agentip[sf]: 192.0.2.254" \
  "sfprobe_agentsubid[sf]: 7" "sampling_rate[sf]: 1" "sfprobe_direction[sf]: in" \
  "sfprobe_ifindex[sf]: 3" &
probe pmacct-sflow-rate10 16344 any 0 --time-stamp-precision=nano -- \
  "pcap_savefile: $work/traffic-long.pcap" "plugins: sfprobe[sf]" \
  "sfprobe_receiver[sf]: 127.0.0.1:16344" "sfprobe_agentip[sf]: 198.51.100.254" \
  "sfprobe_agentsubid[sf]: 1" "sampling_rate[sf]: 10" "sfprobe_direction[sf]: out" \
  "sfprobe_ifindex[sf]: 12" &
probe pmacct-sflow-rawip 16345 lo 0 -- "pcap_savefile: $work/traffic-rawip.pcap" \
  "plugins: sfprobe[sf]" "sfprobe_receiver[sf]: 127.0.0.1:16345" \
  "sfprobe_agentip[sf]: 192.0.2.253" "sampling_rate[sf]: 1" &
# IPv6 agent and transport. pmacct 1.7.7 garbles the first sample of its first datagram
# here (sample length 5, rate and pool missing): a real malformed datagram, kept as such.
probe pmacct-sflow-ipv6 16346 lo 0 -- "pcap_savefile: $work/traffic.pcap" \
  "plugins: sfprobe[sf]" "sfprobe_receiver[sf]: [::1]:16346" \
  "sfprobe_agentip[sf]: 2001:db8::254" "sampling_rate[sf]: 5" &
probe pmacct-nfprobe-v9 12055 lo 0 -- "pcap_savefile: $work/traffic.pcap" "plugins: nfprobe" \
  "nfprobe_receiver: 127.0.0.1:12055" "nfprobe_version: 9" \
  "aggregate: src_host, dst_host, src_port, dst_port, proto, tos, tcpflags" &
probe pmacct-nfprobe-ipfix 14739 lo 0 -- "pcap_savefile: $work/traffic.pcap" "plugins: nfprobe" \
  "nfprobe_receiver: 127.0.0.1:14739" "nfprobe_version: 10" \
  "aggregate: src_host, dst_host, src_port, dst_port, proto, tos, tcpflags" &
for job in $(jobs -p); do wait "$job" || { echo "error: a probe failed" >&2; exit 1; }; done

editcap -F pcapng "$OUT/pmacct-sflow.pcap" "$OUT/pmacct-sflow.pcapng"
mergecap -F pcapng -w "$OUT/pmacct-sflow-merged.pcapng" "$OUT/pmacct-sflow.pcap" \
  "$OUT/pmacct-sflow-rate10.pcap"
# Cut 100 bytes into the last record: the reader must stop there and say where.
size=$(stat -c %s "$OUT/pmacct-sflow.pcap")
last=$(tshark -r "$OUT/pmacct-sflow.pcap" -T fields -e frame.cap_len 2>/dev/null | tail -1)
head -c $((size - last + 100)) "$OUT/pmacct-sflow.pcap" >"$OUT/pmacct-sflow-truncated.pcap"
ls -l "$OUT"/pmacct-*

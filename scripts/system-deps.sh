#!/usr/bin/env bash
# Installs the Debian packages the test suite drives: chromium for the console's browser
# tests, CJK fonts so Chinese pages render in screenshots, the flow tools (tshark,
# softflowd, pmacct, nfdump), fastnetmon (bench/detect.py) and dovecot (the IMAP intake's
# tests). Idempotent and quiet when everything is present.
#   --runtime   only what `hostwarden serve` needs (used by `make run`): pango for
#               WeasyPrint's PDFs of commitment letters, CJK fonts for their Chinese text.
# Without it, also the test tools: chromium, and poppler-utils (pdftotext reads PDFs back).
set -euo pipefail
need=()
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)
dpkg -s libpango-1.0-0 >/dev/null 2>&1 || need+=(libpango-1.0-0)
dpkg -s libpangoft2-1.0-0 >/dev/null 2>&1 || need+=(libpangoft2-1.0-0)
if [ "${1:-}" != "--runtime" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
  # Flow tests and benchmarks: real exporters make the fixtures, tshark checks every
  # decoded field, nfdump (nfcapd) is the peer the collector is measured against.
  command -v tshark >/dev/null 2>&1 || need+=(tshark)
  command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
  command -v softflowd >/dev/null 2>&1 || need+=(softflowd)
  command -v pmacctd >/dev/null 2>&1 || need+=(pmacct)
  command -v nfcapd >/dev/null 2>&1 || need+=(nfdump)
  # Detection benchmark: FastNetMon (Debian 12: 1.2.4) is the peer the detectors are
  # measured against. Its unit is enabled by the package; the bench runs its own copy.
  dpkg -s fastnetmon >/dev/null 2>&1 || need+=(fastnetmon)  # /usr/sbin: not on every PATH
  # IMAP intake tests: a real dovecot (Debian 12: 2.3.19) serves the abuse mailbox the
  # poller reads. Its unit is enabled by the package; the tests run their own copy.
  dpkg -s dovecot-imapd >/dev/null 2>&1 || need+=(dovecot-imapd)  # /usr/sbin: not on every PATH
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing Debian packages: ${need[*]}; run 'sudo apt-get install ${need[*]}'" >&2
  exit 1
fi
echo "system-deps: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

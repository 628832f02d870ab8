#!/usr/bin/env bash
# Installs the peers and tools the benchmark harness (`layotto-bench run`) compares with or
# counts with, from Debian's packages: HAProxy, nginx with its stream module, h2load
# (nghttp2-client), perf and redis-server. The harness skips whatever is missing, with a note; the test suite
# needs none of them.
set -euo pipefail

missing=()
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v nginx >/dev/null 2>&1 || missing+=(nginx libnginx-mod-stream)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v perf >/dev/null 2>&1 || missing+=(linux-perf)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# perf counts another process's syscalls only when perf_event_paranoid allows it (<= 1, or root).
echo "perf_event_paranoid: $(cat /proc/sys/kernel/perf_event_paranoid)"

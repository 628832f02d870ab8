#!/usr/bin/env bash
# Runs the whole test suite. The tests start real etcd, redis and zookeeper servers on free
# loopback ports; install them from Debian's packages first if they are missing (zookeeper's
# package brings its Java runtime). tests/dapr_js.rs runs Dapr's JavaScript SDK with Debian's
# nodejs (the SDK itself comes from npm into target/dapr-js, once); tests/dapr_python_sdk.rs makes
# a virtual environment for Dapr's Python SDK (pip from PyPI), which needs python3-venv.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -e /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The embedded default listens on fixed ports (configs/default.json), two of them inside the
# kernel's ephemeral range, where a redis or a listener another test binds to port 0 may land
# and hold one for as long as that test runs. Reserve them from automatic assignment (explicit
# binds still work) where this network namespace lets us; else the tests wait and retry.
reserved=/proc/sys/net/ipv4/ip_local_reserved_ports
fixed=$(grep -o '"address": "127.0.0.1:[0-9]*"' configs/default.json | grep -o '[0-9]*"$' | tr -d '"' | paste -sd, -)
if [ -w "$reserved" ]; then
  current=$(cat "$reserved")
  echo "${current:+$current,}$fixed" >"$reserved"
else
  echo "note: cannot reserve ports $fixed from ephemeral assignment ($reserved is read-only)"
fi

# The vendored glommio must be its crates.io release plus vendor/patches/glommio/.
scripts/vendor.sh --check

cargo test --workspace --all-targets "$@"

# glommio's own net unit tests on the vendored fork, once as they are and once with multishot
# polls refused as kernels before 5.13 refuse them, so the one-shot fallback runs here too.
# Skipped: tcp_connect_timeout_error expects 10.255.255.1 to be unroutable; sandboxed networks
# may answer it, and these tests talk to loopback only.
glommio_net_tests=(cargo test --locked --manifest-path vendor/glommio/Cargo.toml --target-dir target
  --lib net:: -- --skip tcp_connect_timeout_error)
"${glommio_net_tests[@]}"
GLOMMIO_TEST_REFUSE_MULTISHOT=1 "${glommio_net_tests[@]}"
# The sleep/wake handshake between threads (patch 0007's fences): shared channels and wakers
# woken from other threads, each reaching an executor that went to sleep; and the executor's
# and timers' own tests (patch 0008's preemption deadline, kept user timer and link poll).
cargo test --locked --manifest-path vendor/glommio/Cargo.toml --target-dir target --lib \
  -- channels::shared_channel executor:: timer::

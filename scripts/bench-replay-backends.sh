#!/usr/bin/env bash
# Requests per second per core through the whole path, with the replay cache in memory versus
# in Redis: `keybound serve` pinned to CPU 0, `keybound bench` pinned to CPU 1 (Redis floats),
# alternating backends ROUNDS times. Token mode: client credentials with a fresh DPoP proof
# (no refresh token, so no database write). Resource mode: GET /api/whoami with a fresh proof.
#
#   KEYBOUND_REDIS_URL=redis://127.0.0.1:6379 scripts/bench-replay-backends.sh
#
# Env: REQUESTS (default 20000), CONCURRENCY (32), ROUNDS (2), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KEYBOUND_REDIS_URL:?set KEYBOUND_REDIS_URL, e.g. redis://127.0.0.1:6379}"
REQUESTS=${REQUESTS:-20000}
CONCURRENCY=${CONCURRENCY:-32}
ROUNDS=${ROUNDS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/keybound-target}
cargo build --release --locked -p keybound-cli >&2
bin="$CARGO_TARGET_DIR/release/keybound"
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
issuer="http://127.0.0.1:$port"
secret=bench-secret-bench-secret
cat >"$work/keybound.toml" <<TOML
issuer = "$issuer"
data_dir = "$work/data"
[[clients]]
client_id = "bench"
auth_method = "client_secret_basic"
client_secret_sha256 = "$(printf %s "$secret" | "$bin" hash-secret)"
grant_types = ["client_credentials"]
dpop_bound_access_tokens = true
TOML

start() { # $1: replay url or empty
  if [ -n "$1" ]; then
    KEYBOUND_REPLAY_URL="$1" taskset -c 0 "$bin" serve --config "$work/keybound.toml" \
      --listen "127.0.0.1:$port" >/dev/null 2>"$work/serve.log" &
  else
    env -u KEYBOUND_REPLAY_URL taskset -c 0 "$bin" serve --config "$work/keybound.toml" \
      --listen "127.0.0.1:$port" >/dev/null 2>"$work/serve.log" &
  fi
  server=$!
  for _ in $(seq 100); do
    curl -fs "$issuer/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "keybound serve did not become ready:" >&2
  cat "$work/serve.log" >&2
  exit 1
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }

run() { # $1: mode; prints requests_per_second p50 p99 generator-cpu%
  local args=(--issuer "$issuer" --client-id bench --client-secret "$secret"
    -n "$REQUESTS" -c "$CONCURRENCY" --warmup 200 --quiet)
  [ "$1" = resource ] && args=(--url "$issuer/api/whoami" "${args[@]}")
  taskset -c 1 "$bin" --json bench "$1" "${args[@]}" | python3 -c '
import json, sys
r = json.load(sys.stdin)
l = r["latency_ms"]["ok"]
print("%.0f %.2f %.2f %.0f %d" % (r["requests_per_second"], l["p50"], l["p99"], r["cpu"]["percent"], r["failed"]))'
}

printf '| round | mode | replay cache | req/s (server on 1 core) | p50 ms | p99 ms | generator CPU %% | failed |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for round in $(seq "$ROUNDS"); do
  for backend in memory redis; do
    url=""
    [ "$backend" = redis ] && url=$KEYBOUND_REDIS_URL
    start "$url"
    for mode in token resource; do
      read -r rps p50 p99 cpu failed < <(run "$mode")
      printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "$round" "$mode" "$backend" "$rps" "$p50" "$p99" "$cpu" "$failed"
    done
    stop
  done
done

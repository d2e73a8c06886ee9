#!/usr/bin/env bash
# Runs every fuzz target for SECONDS_PER_TARGET seconds (default 60), one at a time, on the
# stable toolchain (`--sanitizer none`: no nightly-only sanitizer flags), starting from the
# checked-in seeds (fuzz/seeds/<target>) and the local working corpus (fuzz/corpus/<target>,
# not committed). Exits non-zero if any target crashes, times out or runs out of memory;
# the input is kept in fuzz/artifacts/<target>/ and the last lines of libFuzzer's log shown.
#
#   fuzz/run.sh 8                 # CI: about a minute for the seven targets, plus the build
#   fuzz/run.sh 180 jwk config    # longer runs of some targets
#
# Needs cargo-fuzz (cargo install cargo-fuzz --version 0.13.2 --locked). Prints one line per
# target: its executions (libFuzzer's stat::number_of_executed_units) and its result.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(dpop_proof jwk auth_headers www_authenticate token_form rfc9440 config)
fi
# One build for all targets; `cargo fuzz run` below then finds them up to date.
cargo fuzz build --sanitizer none
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  log="$logs/$target.log"
  status=ok
  # -rss_limit_mb: a leak or an allocation blow-up is a finding too. -print_final_stats for the
  # execution count. One job: the machine is shared.
  if ! cargo fuzz run "$target" --sanitizer none "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    >"$log" 2>&1; then
    status=FAILED
    failed+=("$target")
  fi
  execs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n 1 || true)"
  printf '%-18s %6ss %10s executions  %s\n' "$target" "$seconds" "${execs:-?}" "$status"
  if [ "$status" != ok ]; then
    grep -E -A 4 'panicked at' "$log" | head -n 20 || true
    grep -E 'ERROR: libFuzzer|Test unit written|out-of-memory|timeout after' "$log" | head -n 10 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzzing: ${#targets[@]} targets, ${seconds}s each, no crash"

#!/usr/bin/env bash
# Bounded fuzzing of every decoder of untrusted bytes: builds all cargo-fuzz targets, seeds
# each corpus (real OpenDHT captures, keys, cyphers, STUN messages), runs each target for
# FUZZ_SECONDS and fails if any target crashes, panics, breaks a round-trip assertion or
# hangs on one input. The crash file is printed; reproduce with
# `cargo fuzz run --sanitizer none <target> <file>` in fuzz/.
#
# Usage: fuzz/run.sh [target...]        (default: every target of `cargo fuzz list`)
#   FUZZ_SECONDS    seconds per target (default 15)
#   FUZZ_JOBS       targets fuzzed at once (default: number of cores)
#   FUZZ_SANITIZER  none (default) or address
#
# Toolchain: CI has only stable Rust. `--sanitizer none` needs nothing else: cargo-fuzz then
# passes only stable `-C` flags (the sanitizer-coverage passes libFuzzer needs), and the
# targets are built with debug assertions and overflow checks, so panics and arithmetic
# overflow are caught. AddressSanitizer needs `-Zsanitizer=address`, which stable rustc
# accepts only with RUSTC_BOOTSTRAP=1 (it works on 1.95: the ASan runtime ships with the
# stable standard library), an escape hatch we do not want CI to depend on, and it buys
# little here: node and netsim have no `unsafe` code, so a memory error could only come
# from a dependency. FUZZ_SANITIZER=address opts in; it also sets CARGO_CACHE_RUSTC_INFO=0
# because cargo caches a failed rustc probe in target/.rustc_info.json without keying it on
# RUSTC_BOOTSTRAP, so one build without it poisons every later build in that target dir.
set -euo pipefail
cd "$(dirname "$0")"

SECS=${FUZZ_SECONDS:-15}
JOBS=${FUZZ_JOBS:-$(nproc)}
SANITIZER=${FUZZ_SANITIZER:-none}
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
# libfuzzer-sys compiles libFuzzer's C++ sources with `c++`; clang++ (from .ci/run) will do.
if ! command -v c++ >/dev/null && command -v clang++ >/dev/null; then
  export CXX=clang++
fi
if [ "$SANITIZER" != none ]; then
  export RUSTC_BOOTSTRAP=1 CARGO_CACHE_RUSTC_INFO=0
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
start=$(date +%s)
cargo fuzz build --sanitizer "$SANITIZER"
echo "fuzz: build took $(($(date +%s) - start)) s"

bin=target/x86_64-unknown-linux-gnu/release
logs=$(mktemp -d)
fuzz_one() {
  local t=$1
  # The target's init writes its seeds and exits (see src/seeds.rs).
  JAMISIM_FUZZ_WRITE_SEEDS="corpus/$t" "$bin/$t" 2>"$logs/$t.seeds" || {
    cat "$logs/$t.seeds"
    return 1
  }
  # -timeout: one input taking longer is a hang (a denial of service), reported as a failure.
  cargo fuzz run --sanitizer "$SANITIZER" "$t" "corpus/$t" -- \
    -max_total_time="$SECS" -timeout=20 -print_final_stats=1 >"$logs/$t.log" 2>&1
}

report() {
  local t=$1 rc=$2 log="$logs/$1.log"
  local runs cov
  runs=$(grep -ho 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || true)
  cov=$(grep -ho 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$log" | tail -1 || true)
  if [ "$rc" = 0 ]; then
    echo "fuzz $t: ok, ${runs:-?} executions in ${SECS} s ($cov)"
  else
    echo "fuzz $t: FAILED (exit $rc)"
    tail -n 40 "$log" 2>/dev/null || true
    grep -h -A2 'panicked at' "$log" 2>/dev/null | head -n 6 || true
    grep -h 'Test unit written to' "$log" 2>/dev/null | sed 's/.*Test unit written to /  crash file: /' || true
  fi
}

declare -A pid_of
passed=0
failed=()
finish() {
  local t=$1 rc=0
  wait "${pid_of[$t]}" || rc=$?
  report "$t" "$rc"
  if [ "$rc" = 0 ]; then passed=$((passed + 1)); else failed+=("$t"); fi
  unset "pid_of[$t]"
}
running=()
for t in "${targets[@]}"; do
  fuzz_one "$t" &
  pid_of[$t]=$!
  running+=("$t")
  if [ ${#running[@]} -ge "$JOBS" ]; then
    finish "${running[0]}"
    running=("${running[@]:1}")
  fi
done
for t in "${running[@]}"; do finish "$t"; done
rm -rf "$logs"

echo "fuzz: $(($(date +%s) - start)) s in all (build included)${failed:+; failed: ${failed[*]}}"
echo "fuzz: $passed passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]

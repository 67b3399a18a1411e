#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md, one after the other, in one command:
#
#   scripts/bench-all.sh            # output also saved to target/bench-all/<time>.log
#
# 1. store     `cargo bench -p hub --bench store`: execution transitions
#              with group commit vs one transaction per transition.
# 2. pubsub    `cargo bench -p broker --bench pubsub`: raw QoS 1 pub/sub,
#              1,000 publishers to 1,000 subscribers, embedded broker via
#              the device edge vs Mosquitto.
# 3. fleet     `scripts/bench-fleet.sh 10000`: connect storm and memory per
#              appliance (vs Mosquitto), a job to 10,000 with REST latency
#              idle vs under load, and a rollout limited to 1,000 per minute.
# 4. downloads `cargo bench -p hub --bench downloads`: 200 resumable
#              downloads of a 157 MB artifact vs nginx.
#
# The peers are Debian packages: `apt-get install mosquitto nginx-light`
# (missing ones are installed when running as root). Run it on a quiet
# machine: every figure is compared with its peer measured in the same run,
# but other work on the same cores still moves both. It takes about 15
# minutes on 2 cores. FLEET_COUNT changes the fleet size (default 10000);
# BENCH_ONLY="store pubsub" runs a subset.
set -euo pipefail
cd "$(dirname "$0")/.."

fleet_count=${FLEET_COUNT:-10000}
only=${BENCH_ONLY:-store pubsub fleet downloads}
out=target/bench-all
mkdir -p "$out"
log="$out/$(date -u +%Y%m%dT%H%M%SZ).log"

missing=()
command -v mosquitto > /dev/null || missing+=(mosquitto)
command -v nginx > /dev/null || missing+=(nginx-light)
command -v python3 > /dev/null || missing+=(python3)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" > /dev/null
  else
    echo "missing peers: ${missing[*]} (apt-get install ${missing[*]}); their rows will be empty" >&2
  fi
fi
# The fleet bench holds about one file descriptor per appliance and the
# simulator one per appliance more.
ulimit -n "$(ulimit -Hn)"

run() {
  local name=$1
  shift
  [[ " $only " == *" $name "* ]] || return 0
  echo
  echo "=== $name: $* ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
  "$@"
}

{
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
    "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -sr), $(rustc --version)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with local changes)')"
  run store cargo bench -q -p hub --bench store
  run pubsub cargo bench -q -p broker --bench pubsub
  run fleet scripts/bench-fleet.sh "$fleet_count"
  run downloads cargo bench -q -p hub --bench downloads
  echo
  echo "done $(date -u +%H:%M:%S); the log is $log"
} 2>&1 | tee "$log"

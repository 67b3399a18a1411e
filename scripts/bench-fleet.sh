#!/usr/bin/env bash
# Fleet benchmarks against a real `hub serve` (release build) on this
# machine: N simulated appliances connect over TLS and subscribe (time, and
# the hub's resident memory per appliance), then one job to all of them
# (time from job creation to the last SUCCEEDED committed).
#
#   scripts/bench-fleet.sh [N]        # default N = 10000
#
# The peer, measured in the same run with the same simulator, certificate
# and count: Debian's Mosquitto (`apt-get install mosquitto`) with a TLS
# listener and anonymous clients, started on a free loopback port.
#
# The hub needs about one file descriptor per appliance: keep N under the
# process limit (`ulimit -n`).
set -euo pipefail
cd "$(dirname "$0")/.."

count=${1:-10000}
token=bench-admin-token-0123456789
http=127.0.0.1:18480
mqtts=127.0.0.1:18483

cargo build --release -q -p hub -p device-sim
work=$(mktemp -d)
mosq_pid=
trap 'kill "$hub_pid" $mosq_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

(cd "$work" && HUB_ADMIN_TOKEN=$token RUST_LOG=warn exec "$OLDPWD/target/release/hub" serve \
    --http-addr "$http" --mqtts-addr "$mqtts") > "$work/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 100); do
  curl -sf "http://$http/healthz" > /dev/null && break
  sleep 0.1
done
rss_kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$hub_pid/status"; }
idle=$(rss_kib VmRSS)

sim=(target/release/device-sim bench)
common=(--count "$count" --hub-url "http://$http" --mqtt-url "mqtts://$mqtts"
        --ca-file "$work/certs/dev/ca.pem" --admin-token "$token" --json)

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"${sim[@]}" connect "${common[@]}" --connect-rate 2500 --save-identities "$work/ids.json" > "$work/connect.json"
peak=$(rss_kib VmHWM)
python3 - "$work/connect.json" "$idle" "$peak" "$count" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
idle, peak, n = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
f = report.get("figures", {})
print(f"connect+subscribe over TLS: {n} appliances in {report['elapsedMs'] / 1000:.2f} s; "
      f"connect p50 {report['connectMs']['p50']} ms p99 {report['connectMs']['p99']} ms; "
      f"connect errors {report['counts']['connect_errors']}")
print(f"hub resident memory: idle {idle / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, "
      f"{(peak - idle) / n:.1f} KiB per connected appliance (hub and broker, one process)")
PY
"${sim[@]}" job "${common[@]}" --identities "$work/ids.json" --connect-rate 2500 > "$work/job.json"
python3 - "$work/job.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f = r["figures"]
p = f["jobCreatedToSucceededMs"]
print(f"job to {r['appliances']} appliances: all SUCCEEDED={f['allSucceeded']} in "
      f"{f['timeToAllSucceededMs'] / 1000:.2f} s after creation; per appliance p50 {p['p50']} ms, "
      f"p99 {p['p99']} ms; repeats {r['counts']['retries']}")
PY

if command -v mosquitto > /dev/null; then
  kill "$hub_pid"; wait "$hub_pid" 2>/dev/null || true
  cat > "$work/mosquitto.conf" <<CONF
listener 18484 127.0.0.1
cafile $work/certs/dev/ca.pem
certfile $work/certs/dev/server.pem
keyfile $work/certs/dev/server-key.pem
allow_anonymous true
max_connections -1
persistence false
log_dest none
user root
CONF
  mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
  mosq_pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/18484) 2>/dev/null && break; sleep 0.1; done
  mosq_idle=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$mosq_pid/status")
  "${sim[@]}" connect --count "$count" --mqtt-url mqtts://127.0.0.1:18484 \
      --ca-file "$work/certs/dev/ca.pem" --username peer --password peer \
      --connect-rate 2500 --json > "$work/mosquitto-connect.json"
  mosq_peak=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$mosq_pid/status")
  python3 - "$work/connect.json" "$work/mosquitto-connect.json" "$idle" "$peak" "$mosq_idle" "$mosq_peak" "$count" <<'PY'
import json, sys
hub, peer = (json.load(open(p)) for p in sys.argv[1:3])
idle, peak, m_idle, m_peak, n = (int(x) for x in sys.argv[3:8])
print(f"peer Mosquitto, same run: connect+subscribe {peer['elapsedMs'] / 1000:.2f} s "
      f"(p50 {peer['connectMs']['p50']} ms, p99 {peer['connectMs']['p99']} ms, errors {peer['counts']['connect_errors']}); "
      f"memory {(m_peak - m_idle) / n:.1f} KiB per appliance")
print(f"ratios hub / Mosquitto: connect time {hub['elapsedMs'] / peer['elapsedMs']:.2f}, "
      f"memory per appliance {((peak - idle) / n) / ((m_peak - m_idle) / n):.2f}")
PY
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

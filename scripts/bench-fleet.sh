#!/usr/bin/env bash
# Fleet benchmarks against a real `hub serve` (release build) on this
# machine: N simulated appliances connect over TLS and subscribe (time, and
# the hub's resident memory per appliance), then one job to all of them
# (time from job creation to the last SUCCEEDED committed), with the
# latency of two REST reads (the job summary, the frontend's appliance
# list) idle before the job and while it runs; then a rate-limited job to
# a subset of the same appliances (ROLLOUT_COUNT at ROLLOUT_PER_MINUTE,
# default 3000 at 1000 a minute: three minutes), and how the appliances
# received their tasks per 60 s window.
#
#   scripts/bench-fleet.sh [N]        # default N = 10000
#   ROLLOUT_COUNT=600 ROLLOUT_PER_MINUTE=600 scripts/bench-fleet.sh 2000   # a quick check
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
rollout_count=${ROLLOUT_COUNT:-3000}
rollout_count=$(( rollout_count < count ? rollout_count : count ))
per_minute=${ROLLOUT_PER_MINUTE:-1000}
token=bench-admin-token-0123456789
http=127.0.0.1:18480
mqtts=127.0.0.1:18483

cargo build --release -q -p hub -p device-sim
bin=$(realpath "${CARGO_TARGET_DIR:-target}/release")
work=$(mktemp -d)
mosq_pid=
trap 'kill "$hub_pid" $mosq_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

(cd "$work" && HUB_ADMIN_TOKEN=$token RUST_LOG=warn exec "$bin/hub" serve \
    --http-addr "$http" --mqtts-addr "$mqtts") > "$work/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 100); do
  curl -sf "http://$http/healthz" > /dev/null && break
  sleep 0.1
done
rss_kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$hub_pid/status"; }
idle=$(rss_kib VmRSS)

sim=("$bin/device-sim" bench)
common=(--hub-url "http://$http" --mqtt-url "mqtts://$mqtts"
        --ca-file "$work/certs/dev/ca.pem" --admin-token "$token" --json)

# One customer owns the appliances, so that its frontend list shows them.
curl -sf -H "Authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"name": "bench"}' "http://$http/api/v1/customers" > "$work/customer.json"
customer_id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["customerId"])' "$work/customer.json")
api_key=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["apiKey"])' "$work/customer.json")

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"${sim[@]}" connect "${common[@]}" --count "$count" --connect-rate 2500 --customer-id "$customer_id" \
    --save-identities "$work/ids.json" > "$work/connect.json"
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
FLEETHUB_API_KEY=$api_key "${sim[@]}" job "${common[@]}" --count "$count" \
    --identities "$work/ids.json" --connect-rate 2500 --rest-probe > "$work/job.json"
python3 - "$work/job.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f = r["figures"]
p = f["jobCreatedToSucceededMs"]
print(f"job to {r['appliances']} appliances: all SUCCEEDED={f['allSucceeded']} in "
      f"{f['timeToAllSucceededMs'] / 1000:.2f} s after creation; per appliance p50 {p['p50']} ms, "
      f"p99 {p['p99']} ms; repeats {r['counts']['retries']}")
probe = f["restProbe"]
print(f"REST latency at {probe['ratePerEndpoint']} requests/s per endpoint, idle "
      f"({probe['idle']['durationMs'] / 1000:.1f} s, before the job) vs load "
      f"({probe['load']['durationMs'] / 1000:.1f} s, job creation to the last SUCCEEDED):")
for name, idle in probe["idle"]["endpoints"].items():
    load = probe["load"]["endpoints"][name]
    ms = lambda e, q: f"{e['latencyUs'][q] / 1000:.2f}"
    ratio = probe["p99Ratio"][name]
    print(f"  {name:<13} idle n={idle['latencyUs']['count']} p50 {ms(idle, 'p50')} ms p99 {ms(idle, 'p99')} ms "
          f"max {ms(idle, 'max')} ms errors {idle['errors']} | load n={load['latencyUs']['count']} "
          f"p50 {ms(load, 'p50')} ms p99 {ms(load, 'p99')} ms max {ms(load, 'max')} ms errors {load['errors']} | "
          f"p99 load/idle {ratio if ratio is None else f'{ratio:.2f}'}")
PY

"${sim[@]}" job "${common[@]}" --count "$rollout_count" --identities "$work/ids.json" \
    --connect-rate 2500 --max-per-minute "$per_minute" > "$work/rollout.json"
python3 - "$work/rollout.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f = r["figures"]
pace = f["rollout"]
n = pace["maxPerMinute"]
dev = pace["deviationPercent"]
print(f"rollout of {r['appliances']} at maxPerMinute {n}: all SUCCEEDED={f['allSucceeded']} in "
      f"{f['timeToAllSucceededMs'] / 1000:.1f} s; tasks received per 60 s window from creation "
      f"{pace['perWindow']}; most in any 60 s window {pace['maxInAnyWindow']}, in any "
      f"{(60000 - pace['jitterAllowanceMs']) / 1000:.2f} s window {pace['maxInShortenedWindow']} "
      f"({'within' if pace['maxInShortenedWindow'] <= n else 'OVER'} {n}); complete windows average "
      f"{pace['perMinute']} a minute ({'n/a' if dev is None else f'{dev:+.2f} %'} from {n})")
hub = f["rolloutReleased"]
print(f"  as the hub released them (sentAt, the hub's clock): {hub['received']} per 60 s window from "
      f"creation {hub['perWindow']}; most in any 60 s window {hub['maxInAnyWindow']} "
      f"({'within' if hub['maxInAnyWindow'] <= n else 'OVER'} {n}); complete windows average "
      f"{hub['perMinute']} a minute")
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

#!/usr/bin/env bash
# Idle cost of rivulet's DHT node with a full routing table: `rivulet seed`
# of a small torrent joins a DHT of COUNT nodes on loopback (dht_swarm, one
# process), settles for JOIN_S seconds, then its CPU time and memory are
# read over MEASURE_S seconds of nothing but DHT traffic (no peer comes).
# The same run with --no-dht beside it gives the DHT's share.
#
#   scripts/bench-dht.sh [COUNT] [JOIN_S] [MEASURE_S]   (defaults: 300, 60, 60)
#
# Everything is on 127.21.x.x; rivulet runs in closed-network mode, so its
# DHT knows only the swarm.
set -euo pipefail
export RIVULET_CLOSED_NETWORK=1
count=${1:-300}
join_s=${2:-60}
measure_s=${3:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo build --release -q -p rivulet -p rivulet-testkit --manifest-path "$root/Cargo.toml"
rivulet="$root/target/release/rivulet"
"$root/target/release/dht_swarm" 127.21.0.1 "$count" 6881 > "$work/swarm.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q ready "$work/swarm.log" && break; sleep 0.1; done
grep -q ready "$work/swarm.log" || { echo "dht_swarm did not start" >&2; cat "$work/swarm.log" >&2; exit 1; }

mkdir -p "$work/seed"
head -c $((4 * 1024 * 1024)) /dev/urandom > "$work/seed/data.bin"
"$rivulet" create -q --no-date -o "$work/data.torrent" "$work/seed/data.bin" > /dev/null

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

run() { # name, extra args...
  local name=$1 pid t0 t1
  shift
  "$rivulet" seed -q "$work/data.torrent" -o "$work/seed" --bind 127.21.9.1 --port 6900 --no-lsd "$@" \
    > "$work/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  sleep "$join_s"
  t0=$(ticks "$pid")
  sleep "$measure_s"
  t1=$(ticks "$pid")
  awk -v n="$name" -v d="$((t1 - t0))" -v hz="$hz" -v s="$measure_s" -v rss="$(rss_kib "$pid")" \
    -v hwm="$(hwm_kib "$pid")" 'BEGIN { printf "%-8s %10.2f %12.2f %10.1f %10.1f\n", n, d / hz, 100 * d / hz / s, rss / 1024, hwm / 1024 }'
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

echo "rivulet seed, idle, in a DHT of $count nodes on loopback: ${join_s} s to join, then ${measure_s} s measured"
printf '%-8s %10s %12s %10s %10s\n' run cpu_s cpu_percent rss_MiB peak_MiB
run dht --dht-bootstrap 127.21.0.1:6881
run no-dht --no-dht
tail -1 "$work/swarm.log" | sed "s/^/swarm: /"

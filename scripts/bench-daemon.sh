#!/usr/bin/env bash
# Many small torrents seeding in one `rivulet daemon`: how long adding them
# takes, the daemon's CPU while idle, its memory per torrent, and how long a
# restart takes until every torrent seeds again.
#
#   scripts/bench-daemon.sh [TORRENTS] [IDLE_SECONDS]     (defaults: 1000, 60)
#
# Each torrent is one file of 64 KiB of random data (one piece), created
# with `rivulet create` and already in the download folder, so that adding
# it checks it and seeds it. No tracker, no DHT, no LSD: the idle figure is
# the daemon's own timers (per-torrent rechokes, statistics, the session).
# Memory: VmRSS of the daemon with no torrent, then with all of them; per
# torrent is the difference divided by their number. Idle CPU: user +
# system time from /proc/PID/stat over IDLE_SECONDS, once every torrent
# seeds and 5 s have passed. Everything stays on 127.0.0.1.
set -euo pipefail
export RIVULET_CLOSED_NETWORK=1
n=${1:-1000}
idle=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
dpid=
cleanup() {
  if [ -n "$dpid" ]; then kill "$dpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cargo build --release -q -p rivulet --manifest-path "$root/Cargo.toml"
rivulet="$root/target/release/rivulet"
hz=$(getconf CLK_TCK)

mkdir -p "$work/data" "$work/torrents"
for i in $(seq "$n"); do
  head -c 65536 /dev/urandom > "$work/data/t$i.bin"
done
# Created in batches in parallel: a few seconds for 1,000.
seq "$n" | xargs -P 4 -I{} "$rivulet" create -q --no-date "$work/data/t{}.bin" -o "$work/torrents/t{}.torrent" > /dev/null

api=127.0.0.1:$((20000 + RANDOM % 20000))
start_daemon() {
  "$rivulet" daemon --state-dir "$work/state" --download-dir "$work/data" --api "$api" \
    --port 0 --bind 127.0.0.1 --no-dht --no-lsd > "$work/daemon.log" 2>&1 &
  dpid=$!
  for _ in $(seq 200); do
    grep -q 'API on' "$work/daemon.log" && return 0
    sleep 0.05
  done
  echo "the daemon did not start:" >&2; cat "$work/daemon.log" >&2; exit 1
}
cli() { "$rivulet" "$@" --api "http://$api" --state-dir "$work/state"; }
seeding() { cli list --json | python3 -c 'import json,sys; print(sum(t["state"] == "seeding" for t in json.load(sys.stdin)))'; }
wait_seeding() {
  while [ "$(seeding)" -lt "$n" ]; do sleep 0.2; done
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$dpid/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$dpid/stat"; }

start_daemon
sleep 1
rss0=$(rss_kib)
t0=$(date +%s.%N)
cli add "$work"/torrents/*.torrent > /dev/null
t1=$(date +%s.%N)
wait_seeding
t2=$(date +%s.%N)
sleep 5
rss1=$(rss_kib)
c0=$(cpu_ticks)
sleep "$idle"
c1=$(cpu_ticks)
rss2=$(rss_kib)

kill -TERM "$dpid"
wait "$dpid" || true
dpid=
t3=$(date +%s.%N)
start_daemon
wait_seeding
t4=$(date +%s.%N)
kill -TERM "$dpid"
wait "$dpid" || true
dpid=

echo "daemon: $n torrents of 64 KiB seeding, no tracker/DHT/LSD, $(nproc) cores"
awk -v n="$n" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" -v t4="$t4" \
  -v rss0="$rss0" -v rss1="$rss1" -v rss2="$rss2" -v c0="$c0" -v c1="$c1" -v hz="$hz" -v idle="$idle" 'BEGIN {
  printf "adding (rivulet add, one call):   %.2f s\n", t1 - t0
  printf "until all seed:                   %.2f s after the add\n", t2 - t1
  printf "idle CPU over %d s:               %.2f%% of one core\n", idle, 100 * (c1 - c0) / hz / idle
  printf "RSS: empty %.1f MiB, with %d torrents %.1f MiB (%.1f after idling)\n", rss0 / 1024, n, rss1 / 1024, rss2 / 1024
  printf "memory per torrent:               %.1f KiB\n", (rss1 - rss0) / n
  printf "restart until all seed:           %.2f s\n", t4 - t3
}'

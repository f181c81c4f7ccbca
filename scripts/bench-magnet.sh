#!/usr/bin/env bash
# Starts rivulet, rqbit and a libtorrent leecher from the same magnet link,
# alternating, and prints how long each takes to its first data (the first
# 64 KiB of the file on disk) and to completion: the metadata fetch (BEP 9)
# plus the download, from one libtorrent seeder named by the link's x.pe.
#
#   scripts/bench-magnet.sh [SIZE_MIB] [ROUNDS]      (defaults: 256 MiB, 5)
#
# CLIENTS="rivulet rqbit libtorrent" (the default) picks and orders the
# clients. Each runs once untimed first (a warm-up), then ROUNDS timed
# rounds; `sync` before each run; every copy is checked byte for byte; the
# table shows medians with min and max.
#
# First data is sampled every 2 ms from the file's allocated size (libtorrent
# writes through mmap, so counting write calls would miss it), timed from
# the client's spawn by the sampler that spawns it. Everything is
# on loopback: the seeder on 127.9.0.2, the clients on 127.9.0.3 and up;
# DHT, LSD, UPnP and NAT-PMP are off in every client (rivulet runs in
# closed-network mode).
set -euo pipefail
# Closed network: rivulet runs no DHT or LSD (nothing may leave loopback).
export RIVULET_CLOSED_NETWORK=1
size_mib=${1:-256}
rounds=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rqbit=${RQBIT:-$(command -v rqbit || echo "$HOME/.cargo/bin/rqbit")}
clients=${CLIENTS:-rivulet rqbit libtorrent}
[ -x /usr/bin/python3 ] || { echo "missing /usr/bin/python3 (python3-libtorrent)" >&2; exit 1; }
case " $clients " in *" rqbit "*) [ -x "$rqbit" ] || { echo "missing rqbit" >&2; exit 1; } ;; esac
cargo build --release -q -p rivulet --manifest-path "$root/Cargo.toml"
rivulet="$root/target/release/rivulet"

mkdir -p "$work/seed"
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$work/seed/data.bin"
hash=$("$rivulet" create -q --no-date -o "$work/data.torrent" "$work/seed/data.bin")
/usr/bin/python3 "$root/scripts/lt_peer.py" seed "$work/data.torrent" "$work/seed" 127.9.0.2 9702 \
  > "$work/seeder.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do grep -q ready "$work/seeder.log" && break; sleep 0.1; done
grep -q ready "$work/seeder.log" || { echo "seeder did not start" >&2; cat "$work/seeder.log" >&2; exit 1; }
link="magnet:?xt=urn:btih:$hash&dn=data.bin&x.pe=127.9.0.2:9702"

# Runs COMMAND... and prints "first done cpu maxrss_kib": seconds from its
# start until FILE holds 64 KiB (allocated), until it exits, its CPU time
# and peak RSS. The clock starts when the command is spawned, by this
# sampler itself, so its own start-up does not count.
measure() { # file log command...
  /usr/bin/python3 - "$@" <<'EOF2'
import os, subprocess, sys, time
path, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(log, "w") as out:
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    first = None
    while True:
        if first is None:
            try:
                if os.stat(path).st_blocks * 512 >= 65536:
                    first = time.monotonic() - t0
            except OSError:
                pass
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.002)
    done = time.monotonic() - t0
if first is None:
    first = done
code = os.waitstatus_to_exitcode(status)
print(f"{first:.3f} {done:.3f} {ru.ru_utime + ru.ru_stime:.2f} {ru.ru_maxrss} {code}")
EOF2
}

warm=1
: > "$work/results.txt"
run() { # name, command...
  local name=$1 line
  shift
  rm -rf "$work/out"; mkdir -p "$work/out"; sync
  line=$(measure "$work/out/data.bin" "$work/$name.log" "$@")
  [ "${line##* }" = 0 ] || { echo "$name failed:" >&2; tail -5 "$work/$name.log" >&2; return 1; }
  cmp -s "$work/out/data.bin" "$work/seed/data.bin" || { echo "$name: data differs" >&2; return 1; }
  [ "$warm" = 1 ] && return 0
  echo "$name $line" >> "$work/results.txt"
}

for r in $(seq 0 "$rounds"); do
  if [ "$r" = 0 ]; then warm=1; else warm=0; fi
  for client in $clients; do
    case $client in
      rivulet) run rivulet "$rivulet" download -q --bind 127.9.0.3 --port 9703 -o "$work/out" "$link" ;;
      rqbit) run rqbit "$rqbit" --disable-dht --disable-upnp-port-forward --disable-lsd --listen-port 9704 \
        download --exit-on-finish --initial-peers 127.9.0.2:9702 -o "$work/out" "$link" ;;
      libtorrent) run libtorrent /usr/bin/python3 "$root/scripts/lt_peer.py" leech "$link" "$work/out" 127.9.0.5 9705 ;;
      *) echo "unknown client $client" >&2; exit 1 ;;
    esac
  done
  if [ "$r" = 0 ]; then echo "warm-up done" >&2; else echo "round $r done" >&2; fi
done

echo "magnet link to data: ${size_mib} MiB from one libtorrent seeder (x.pe) over loopback, $(nproc) cores, median of $rounds rounds"
printf '%-11s %9s %15s %9s %15s %8s %9s\n' client first_s first_min-max done_s done_min-max cpu_s rss_MiB
awk -v clients="$clients" '
  { f[$1] = f[$1] " " $2; d[$1] = d[$1] " " $3; c[$1] = c[$1] " " $4; m[$1] = m[$1] " " $5 }
  function sorted(list, a,   n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n
  }
  function median(list,   a, n) { n = sorted(list, a); return a[int((n + 1) / 2)] }
  function lo(list,   a, n) { n = sorted(list, a); return a[1] }
  function hi(list,   a, n) { n = sorted(list, a); return a[n] }
  END {
    n = split(clients, order, " ")
    for (k = 1; k <= n; k++) {
      t = order[k]
      printf "%-11s %9.3f %15s %9.2f %15s %8.2f %9.1f\n", t, median(f[t]), sprintf("%.3f-%.3f", lo(f[t]), hi(f[t])),
        median(d[t]), sprintf("%.2f-%.2f", lo(d[t]), hi(d[t])), median(c[t]), median(m[t]) / 1024
    }
  }' "$work/results.txt"

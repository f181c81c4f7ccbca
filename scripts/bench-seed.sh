#!/usr/bin/env bash
# Serves the same torrent from rivulet, rqbit and a libtorrent seeder in turn
# (one seeder running at a time, alternating) to a fresh libtorrent leecher,
# and prints the transfer time and the seeder's CPU time and peak RSS during
# the transfer (median of the rounds) with ratios to rqbit.
#
#   scripts/bench-seed.sh [SIZE_MIB] [ROUNDS]      (defaults: 1024 MiB, 3)
#
# BASELINE=/path/to/another/rivulet adds that build as the seeder `baseline`
# (on 127.0.0.5), and SEEDERS="rivulet baseline rqbit" runs only the seeders
# named, in that order.
#
# For scripts/perf-report.sh: TSV=FILE appends one row per run (seeder, size,
# round, wall s, transfer s, seeder CPU s, seeder peak RSS KiB, leecher CPU s,
# payload bytes; a header first if FILE is empty). LANE=K moves every address
# to 127.K.0.x and every port up by 1000*K (see bench-download.sh).
#
# Everything stays on loopback, one address per peer: rivulet seeds on
# 127.0.0.2, rqbit on 127.0.0.3, libtorrent on 127.0.0.4, and the leecher
# (127.0.0.10) connects straight to the seeder, no tracker. DHT, LSD, UPnP,
# NAT-PMP and uTP are off everywhere. The data is in the page cache, and each
# seeder has finished checking it (and gone idle) before the leecher starts.
# Seeder CPU is utime+stime from /proc/PID/stat read just before the leecher
# starts and just after it exits; peak RSS is VmHWM after resetting it
# (/proc/PID/clear_refs) just before the leecher starts. So the start-up check
# counts for no seeder. The rivulet seeder is skipped (with a note) while
# `rivulet seed` does not exist. Needs python3-libtorrent, curl, ss and time
# (Debian), and rqbit (`cargo install rqbit --no-default-features --features default-tls`).
set -euo pipefail
# Closed network: rivulet runs no DHT (nothing may leave loopback).
export RIVULET_CLOSED_NETWORK=1
size_mib=${1:-1024}
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
chmod 755 "$work"
spid=
cleanup() { if [ -n "$spid" ]; then kill "$spid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
lane=${LANE:-0}
net=127.$lane # every address is $net.0.x
off=$((1000 * lane)) # added to every port

rqbit=${RQBIT:-$(command -v rqbit || echo "$HOME/.cargo/bin/rqbit")}
seeders=${SEEDERS:-rivulet ${BASELINE:+baseline }rqbit libtorrent}
need="/usr/bin/time /usr/bin/python3 curl ss"
case " $seeders " in *" rqbit "*) need="$need $rqbit" ;; esac
for tool in $need; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
cargo build --release -q -p rivulet --manifest-path "$root/Cargo.toml"
rivulet="$root/target/release/rivulet"
if ! "$rivulet" seed --help >/dev/null 2>&1; then
  echo "note: \`rivulet seed\` is not available yet: skipping the rivulet seeder" >&2
  seeders=${seeders//rivulet/}
fi
tck=$(getconf CLK_TCK)

mkdir -p "$work/seed"
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$work/seed/data.bin"
"$rivulet" create -q --no-date --piece-length 1M -o "$work/data.torrent" "$work/seed/data.bin" >/dev/null
cat "$work/seed/data.bin" > /dev/null # warm: every seeder reads from the page cache

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; } # utime + stime, all threads

start_seeder() { # name: starts it in the background, sets spid, addr
  local name=$1
  case $name in
    rivulet)
      addr=$net.0.2:$((7201 + off))
      "$rivulet" seed "$work/data.torrent" -o "$work/seed" --bind "$net.0.2" --port $((7201 + off)) -q \
        >"$work/seeder.log" 2>&1 & ;;
    baseline)
      addr=$net.0.5:$((7204 + off))
      "$BASELINE" seed "$work/data.torrent" -o "$work/seed" --bind "$net.0.5" --port $((7204 + off)) -q \
        >"$work/seeder.log" 2>&1 & ;;
    rqbit) # --overwrite: without it rqbit refuses to open the existing file
      addr=$net.0.3:$((7202 + off))
      "$rqbit" -v warn --disable-dht --disable-dht-persistence --disable-upnp-port-forward \
        --disable-lsd --disable-trackers --listen-ip "$net.0.3" --listen-port $((7202 + off)) \
        --http-api-listen-addr "$net.0.3:$((7302 + off))" \
        download --overwrite -o "$work/seed" "$work/data.torrent" >"$work/seeder.log" 2>&1 & ;;
    libtorrent)
      addr=$net.0.4:$((7203 + off))
      /usr/bin/python3 "$root/scripts/lt_peer.py" seed "$work/data.torrent" "$work/seed" "$net.0.4" $((7203 + off)) \
        >"$work/seeder.log" 2>&1 & ;;
  esac
  spid=$!
}

seeder_ready() { # name: true once it has checked the data and serves it
  case $1 in
    rivulet|baseline) ss -Hltn "src $addr" | grep -q . ;;
    rqbit) curl -sf "http://$net.0.3:$((7302 + off))/torrents/0/stats/v1" | grep -q '"state":"live".*"finished":true' ;;
    libtorrent) grep -q ready "$work/seeder.log" ;;
  esac
}

wait_seeder() { # name: waits until ready, then until its CPU use settles (<= 2 ticks in 0.5 s)
  local a b
  for _ in $(seq 1200); do
    kill -0 "$spid" 2>/dev/null || { echo "$1 seeder exited:" >&2; tail -5 "$work/seeder.log" >&2; return 1; }
    seeder_ready "$1" && break
    sleep 0.1
  done
  seeder_ready "$1" || { echo "$1 seeder not ready after 120 s" >&2; tail -5 "$work/seeder.log" >&2; return 1; }
  for _ in $(seq 60); do
    a=$(cpu_ticks "$spid"); sleep 0.5; b=$(cpu_ticks "$spid")
    [ $((b - a)) -le 2 ] && return 0
  done
  echo "$1 seeder still busy after 30 s" >&2; return 1
}

stop_seeder() {
  kill -TERM "$spid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  spid=
}

run() { # name: appends "name wall transfer seeder_cpu seeder_hwm_kib leecher_cpu payload"
  local name=$1 c0 c1 hwm
  rm -rf "$work/out"; mkdir -p "$work/out"; sync
  start_seeder "$name"
  wait_seeder "$name" || { stop_seeder; return 1; }
  c0=$(cpu_ticks "$spid")
  echo 5 > "/proc/$spid/clear_refs" # reset VmHWM to the current RSS
  /usr/bin/time -f "%e %U %S" -o "$work/time.txt" timeout 300 /usr/bin/python3 "$root/scripts/lt_peer.py" \
    leech "$work/data.torrent" "$work/out" "$net.0.10" $((7210 + off)) "$addr" >"$work/leech.log" 2>&1 \
    || { echo "leecher from $name failed:" >&2; tail -5 "$work/leech.log" "$work/seeder.log" >&2; stop_seeder; return 1; }
  c1=$(cpu_ticks "$spid")
  hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$spid/status")
  stop_seeder
  cmp -s "$work/out/data.bin" "$work/seed/data.bin" || { echo "$name: data differs" >&2; return 1; }
  rm -rf "$work/out"
  read -r wall lu ls < "$work/time.txt"
  read -r _ _ xfer _ _ _ payload < <(grep '^done ' "$work/leech.log")
  echo "$name $wall $xfer $(awk -v a="$c0" -v b="$c1" -v t="$tck" 'BEGIN { print (b - a) / t }') $hwm" \
    "$(awk -v u="$lu" -v s="$ls" 'BEGIN { print u + s }') $payload" >> "$work/results.txt"
  echo "  $(tail -1 "$work/results.txt")" >&2
  if [ -n "${TSV:-}" ]; then
    [ -s "$TSV" ] || printf 'seeder\tsize_mib\tround\twall_s\ttransfer_s\tseed_cpu_s\tseed_hwm_kib\tleech_cpu_s\tpayload\n' > "$TSV"
    tail -1 "$work/results.txt" | awk -v m="$size_mib" -v r="$round" -v OFS='\t' \
      '{ print $1, m, r, $2, $3, sprintf("%.2f", $4), $5, sprintf("%.2f", $6), $7 }' >> "$TSV"
  fi
}

: > "$work/results.txt"
for round in $(seq "$rounds"); do
  for s in $seeders; do run "$s"; done
  echo "round $round done" >&2
done

echo "seed: ${size_mib} MiB to one libtorrent leecher over loopback, one seeder at a time, $(nproc) cores, median of $rounds rounds"
echo "(wall: leecher process; transfer: leecher's first connection to all pieces checked; CPU and RSS: the seeder's, during the transfer)"
printf '%-11s %7s %10s %7s %10s %13s %11s %10s %10s\n' \
  seeder wall_s transfer_s MiB/s seed_cpu_s seed_rss_MiB leech_cpu_s xfer/rqbit cpu/rqbit
awk -v size="$size_mib" -v seeders="$seeders" '
  { wall[$1] = wall[$1] " " $2; xfer[$1] = xfer[$1] " " $3; cpu[$1] = cpu[$1] " " $4
    rss[$1] = rss[$1] " " $5; lcpu[$1] = lcpu[$1] " " $6 }
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)]
  }
  END {
    bx = ("rqbit" in xfer) ? median(xfer["rqbit"]) : 0; bc = ("rqbit" in cpu) ? median(cpu["rqbit"]) : 0
    n = split(seeders, order, " ")
    for (k = 1; k <= n; k++) {
      t = order[k]
      if (!(t in xfer)) { printf "%-11s (no successful run)\n", t; continue }
      x = median(xfer[t]); c = median(cpu[t])
      printf "%-11s %7.2f %10.2f %7.0f %10.2f %13.1f %11.2f %10s %10s\n", t, median(wall[t]), x, size / x,
        c, median(rss[t]) / 1024, median(lcpu[t]), (bx > 0 ? sprintf("%.2fx", x / bx) : "n/a"),
        (bc > 0 ? sprintf("%.2fx", c / bc) : "n/a")
    }
    if ("rivulet" in xfer) {
      x = median(xfer["rivulet"]); c = median(cpu["rivulet"]); fx = 1e9; lc = 1e9
      for (k = 1; k <= n; k++) if (order[k] != "rivulet" && order[k] in xfer) {
        if (median(xfer[order[k]]) < fx) fx = median(xfer[order[k]])
        if (median(cpu[order[k]]) < lc) lc = median(cpu[order[k]])
      }
      printf "target (transfer <= fastest other, seeder CPU < every other): %s\n", (x <= fx && c < lc) ? "met" : "not met"
    }
  }' "$work/results.txt"

#!/usr/bin/env bash
# Downloads the same torrent from one libtorrent seeder with rivulet, rqbit,
# aria2 and a libtorrent leecher, alternating, and prints wall time, CPU time
# and peak RSS (median of the rounds) with ratios to rqbit.
#
#   scripts/bench-download.sh [SIZE_MIB] [ROUNDS]      (defaults: 1024 MiB, 5)
#
# BASELINE=/path/to/another/rivulet adds that build as the client `baseline`
# (say, the last release, to show a change's effect in the same run), and
# CLIENTS="rivulet baseline rqbit" runs only the clients named, in that order.
# PIECE=16M sets the piece length (default 1M). SEEDS=8 starts that many
# libtorrent seeders, each on its own address (127.0.1.1, 127.0.1.2, ...),
# all announced to the tracker. Each client first runs once untimed (a
# warm-up; WARMUP=0 skips it), then ROUNDS timed rounds; the table shows the
# median of each figure, and the fastest and slowest wall time.
#
# Everything stays on loopback: opentracker on 127.0.0.1:6969, the seeder on
# 127.0.0.2; DHT, LSD, UPnP and NAT-PMP are off in every client. Needs
# opentracker, aria2, python3-libtorrent and time (Debian), and rqbit
# (`cargo install rqbit --no-default-features --features default-tls`).
set -euo pipefail
size_mib=${1:-1024}
rounds=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

rqbit=${RQBIT:-$(command -v rqbit || echo "$HOME/.cargo/bin/rqbit")}
clients=${CLIENTS:-rivulet ${BASELINE:+baseline }rqbit aria2 libtorrent}
need="opentracker /usr/bin/time"
case " $clients " in *" rqbit "*) need="$need $rqbit" ;; esac
case " $clients " in *" aria2 "*) need="$need aria2c" ;; esac
for tool in $need; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
cargo build --release -q -p rivulet --manifest-path "$root/Cargo.toml"
rivulet="$root/target/release/rivulet"

mkdir -p "$work/seed" "$work/tracker"
chmod 755 "$work/tracker"
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$work/seed/data.bin"
hash=$("$rivulet" create -q --no-date --piece-length "${PIECE:-1M}" -t http://127.0.0.1:6969/announce \
  -o "$work/data.torrent" "$work/seed/data.bin")
echo "$hash" > "$work/tracker/whitelist"
chmod 644 "$work/tracker/whitelist"
opentracker -i 127.0.0.1 -p 6969 -P 6969 -w "$work/tracker/whitelist" >/dev/null 2>&1 &
pids+=($!)
seeds=${SEEDS:-1}
for i in $(seq "$seeds"); do
  /usr/bin/python3 "$root/scripts/lt_peer.py" seed "$work/data.torrent" "$work/seed" "127.0.1.$i" $((7000 + i)) \
    > "$work/seed$i.log" 2>&1 &
  pids+=($!)
done
for i in $(seq "$seeds"); do
  for _ in $(seq 600); do grep -q ready "$work/seed$i.log" && break; sleep 0.1; done
  grep -q ready "$work/seed$i.log" || { echo "seeder $i did not start" >&2; cat "$work/seed$i.log" >&2; exit 1; }
done

warm=0
run() { # name, command...: appends "name wall cpu maxrss_kib" after checking the data
  local name=$1; shift
  rm -rf "$work/out"; mkdir -p "$work/out"; sync
  /usr/bin/time -f "$name %e %U %S %M" -o "$work/time.txt" "$@" >"$work/$name.log" 2>&1 \
    || { echo "$name failed:" >&2; tail -5 "$work/$name.log" >&2; return 1; }
  cmp -s "$work/out/data.bin" "$work/seed/data.bin" || { echo "$name: data differs" >&2; return 1; }
  [ "$warm" = 1 ] && return 0 # a warm-up run counts for nothing
  awk '{ print $1, $2, $3 + $4, $5 }' "$work/time.txt" >> "$work/results.txt"
}

: > "$work/results.txt"
first=1
[ "${WARMUP:-1}" = 0 ] && first=2
for r in $(seq "$first" "$((rounds + 1))"); do
  if [ "$r" = 1 ]; then warm=1; else warm=0; fi
  for client in $clients; do
    case $client in
      rivulet) run rivulet "$rivulet" download -q --port 7101 -o "$work/out" "$work/data.torrent" ;;
      baseline) run baseline "$BASELINE" download -q --port 7105 -o "$work/out" "$work/data.torrent" ;;
      rqbit) run rqbit "$rqbit" --disable-dht --disable-upnp-port-forward --disable-lsd --listen-port 7102 \
        download --exit-on-finish -o "$work/out" "$work/data.torrent" ;;
      aria2) run aria2 aria2c -q --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
        --enable-peer-exchange=false --seed-time=0 --listen-port=7103 --file-allocation=none \
        -d "$work/out" "$work/data.torrent" ;;
      libtorrent) run libtorrent /usr/bin/python3 "$root/scripts/lt_peer.py" leech "$work/data.torrent" "$work/out" 127.0.0.3 7104 ;;
      *) echo "unknown client $client" >&2; exit 1 ;;
    esac
  done
  if [ "$warm" = 1 ]; then echo "warm-up done" >&2; else echo "round $((r - 1)) done" >&2; fi
done

echo "download: ${size_mib} MiB (pieces of ${PIECE:-1M}) from $seeds libtorrent seeder(s) over loopback, $(nproc) cores, median of $rounds rounds"
printf '%-11s %8s %13s %8s %9s %10s %10s\n' client wall_s wall_min-max cpu_s rss_MiB wall/rqbit cpu/rqbit
awk -v clients="$clients" '
  { wall[$1] = wall[$1] " " $2; cpu[$1] = cpu[$1] " " $3; rss[$1] = rss[$1] " " $4 }
  function lo(list,   a, n, i, m) {
    n = split(list, a, " "); m = a[1]
    for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]
    return m
  }
  function hi(list,   a, n, i, m) {
    n = split(list, a, " "); m = a[1]
    for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]
    return m
  }
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)]
  }
  END {
    bw = ("rqbit" in wall) ? median(wall["rqbit"]) : 0; bc = ("rqbit" in cpu) ? median(cpu["rqbit"]) : 0
    n = split(clients, order, " ")
    for (k = 1; k <= n; k++) {
      t = order[k]; w = median(wall[t]); c = median(cpu[t])
      printf "%-11s %8.2f %13s %8.2f %9.1f %10s %10s\n", t, w, sprintf("%.2f-%.2f", lo(wall[t]), hi(wall[t])), c, median(rss[t]) / 1024,
        (bw > 0 ? sprintf("%.2fx", w / bw) : "n/a"), (bc > 0 ? sprintf("%.2fx", c / bc) : "n/a")
    }
  }' "$work/results.txt"

#!/usr/bin/env bash
# Scale benchmark (issue #11): many small pieces, and many peers.
#
#   scripts/bench-scale.sh [ROUNDS]        (default 3)
#
# Part `pieces`: torrents of 10,000, 50,000 and 100,000 pieces of 16 KiB
# (156 MiB, 781 MiB, 1.53 GiB), each downloaded from one seeder by rivulet
# and rqbit, alternating; the table gives wall time, CPU time (user + system)
# and peak RSS, and the wall, CPU and user-space CPU microseconds per piece,
# so that a cost per piece that grows with the piece count shows (user time
# apart: the kernel's share, page cache and writeback, grows with the file
# once it outgrows the dirty-page limits, whatever the client does). PIECES="10000 100000"
# picks the sizes; SEEDER=swarm serves them from swarm_seed (below) instead
# of a libtorrent seeder (scripts/lt_peer.py, the default).
#
# Part `peers`: one torrent (PEERS_MIB, default 1024 MiB, in pieces of
# PEERS_PIECE, default 1M) downloaded from PEERS (default 200) seeders at
# once, each on its own address (127.0.2.1, 127.0.2.2, ...), all in one
# process: swarm_seed (crates/testkit/src/bin/swarm_seed.rs), which serves
# the data without hashing it and counts the handshaken connections open at
# once. Every client is given every seeder (rivulet: --peer per seeder and
# --max-peers PEERS; rqbit: --initial-peers and --peer-limit PEERS); the
# table gives the most peers each had connected at once (counted by the
# seeders, not taken from the client), how many of them sent it at least one
# block, wall, CPU, peak RSS, and the data the seeders sent over the
# torrent's size (above 1: blocks fetched more than once).
#
# PARTS="pieces" or PARTS="peers" runs one part; CLIENTS="rivulet" leaves
# rqbit out. Each client first runs once untimed (a warm-up; WARMUP=0 skips
# it), then ROUNDS timed rounds; `sync` runs before each run, and every copy
# is compared with the original byte for byte. The tables show medians, and
# the fastest and slowest wall time.
#
# Everything stays on loopback and no tracker is involved (the peers are
# given on the command line); DHT, LSD, UPnP and NAT-PMP are off in every
# client. Needs python3-libtorrent (for SEEDER=libtorrent) and time
# (Debian), and rqbit (`cargo install rqbit`).
set -euo pipefail
# Closed network: rivulet runs no DHT (nothing may leave loopback).
export RIVULET_CLOSED_NETWORK=1
rounds=${1:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

rqbit=${RQBIT:-$(command -v rqbit || echo "$HOME/.cargo/bin/rqbit")}
clients=${CLIENTS:-rivulet rqbit}
parts=${PARTS:-pieces peers}
seeder=${SEEDER:-libtorrent}
need="/usr/bin/time"
case " $clients " in *" rqbit "*) need="$need $rqbit" ;; esac
for tool in $need; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
cargo build --release -q -p rivulet -p rivulet-testkit --bin rivulet --bin swarm_seed \
  --manifest-path "$root/Cargo.toml"
rivulet="$root/target/release/rivulet"
swarm_seed="$root/target/release/swarm_seed"
rqbit_flags=(--disable-dht --disable-upnp-port-forward --disable-lsd)

# Waits until FILE has a line matching PATTERN (polling: readiness only).
wait_for() { # file, pattern, what
  for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "$3 did not happen" >&2; cat "$1" >&2; exit 1
}

# A fresh data file of BYTES and its torrent (no tracker) in pieces of PIECE.
make_torrent() { # bytes, piece
  rm -rf "$work/seed" "$work/data.torrent"; mkdir -p "$work/seed"
  head -c "$1" /dev/urandom > "$work/seed/data.bin"
  "$rivulet" create -q --no-date --piece-length "$2" -o "$work/data.torrent" "$work/seed/data.bin" >/dev/null
}

warm=0
run() { # label, name, command...: appends "label name wall cpu maxrss_kib user" after checking the data
  local label=$1 name=$2; shift 2
  rm -rf "$work/out"; mkdir -p "$work/out"; sync
  /usr/bin/time -f "$name %e %U %S %M" -o "$work/time.txt" "$@" >"$work/$name.log" 2>&1 \
    || { echo "$name failed:" >&2; tail -5 "$work/$name.log" >&2; return 1; }
  cmp -s "$work/out/data.bin" "$work/seed/data.bin" || { echo "$name: data differs" >&2; return 1; }
  rm -rf "$work/out"
  [ "$warm" = 1 ] && return 0 # a warm-up run counts for nothing
  awk -v label="$label" '{ print label, $1, $2, $3 + $4, $5, $3 }' "$work/time.txt" >> "$work/results.txt"
}

# The warm-up (unless WARMUP=0), then ROUNDS rounds of every client, each
# run by `one_run LABEL CLIENT`.
rounds_of() { # label
  local first=1 r
  [ "${WARMUP:-1}" = 0 ] && first=2
  for r in $(seq "$first" "$((rounds + 1))"); do
    if [ "$r" = 1 ]; then warm=1; else warm=0; fi
    for client in $clients; do one_run "$1" "$client"; done
    if [ "$warm" = 1 ]; then echo "$1: warm-up done" >&2; else echo "$1: round $((r - 1)) done" >&2; fi
  done
}

# awk functions over space-separated lists of numbers.
awk_lib='
  function lo(list,   a, n, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
  function hi(list,   a, n, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)]
  }'

: > "$work/results.txt"

# ---- Part 1: many pieces, one seeder ---------------------------------------
if [[ " $parts " == *" pieces "* ]]; then
  seed_ip=127.0.3.1 seed_port=7311
  for n in ${PIECES:-10000 50000 100000}; do
    make_torrent $((n * 16384)) 16K
    : > "$work/seed.log"
    case $seeder in
      libtorrent) /usr/bin/python3 "$root/scripts/lt_peer.py" seed "$work/data.torrent" "$work/seed" $seed_ip $seed_port \
        > "$work/seed.log" 2>&1 & ;;
      swarm) "$swarm_seed" "$work/data.torrent" "$work/seed/data.bin" $seed_ip 1 $seed_port > "$work/seed.log" 2>&1 & ;;
      *) echo "unknown seeder $seeder" >&2; exit 1 ;;
    esac
    seed_pid=$!
    pids+=($seed_pid)
    wait_for "$work/seed.log" ready "the seeder's start"
    one_run() { # label, client
      case $2 in
        rivulet) run "$1" rivulet "$rivulet" download -q --port 7312 --peer $seed_ip:$seed_port \
          -o "$work/out" "$work/data.torrent" ;;
        rqbit) run "$1" rqbit "$rqbit" "${rqbit_flags[@]}" --listen-port 7313 download --exit-on-finish \
          --disable-http-api --initial-peers $seed_ip:$seed_port -o "$work/out" "$work/data.torrent" ;;
        *) echo "unknown client $2" >&2; exit 1 ;;
      esac
    }
    rounds_of "$n"
    kill "$seed_pid"; wait "$seed_pid" 2>/dev/null || true
  done
  echo
  echo "pieces: torrents of 16 KiB pieces from one $seeder seeder over loopback, $(nproc) cores, median of $rounds rounds"
  printf '%-8s %-8s %8s %13s %8s %8s %10s %10s %10s\n' pieces client wall_s wall_min-max cpu_s rss_MiB wall_us/pc cpu_us/pc user_us/pc
  awk -v clients="$clients" -v sizes="${PIECES:-10000 50000 100000}" "$awk_lib"'
    $1 ~ /^[0-9]+$/ { k = $1 " " $2; wall[k] = wall[k] " " $3; cpu[k] = cpu[k] " " $4; rss[k] = rss[k] " " $5; usr[k] = usr[k] " " $6 }
    END {
      ns = split(sizes, size, " "); nc = split(clients, order, " ")
      for (s = 1; s <= ns; s++) for (c = 1; c <= nc; c++) {
        k = size[s] " " order[c]; w = median(wall[k]); u = median(cpu[k])
        printf "%-8s %-8s %8.2f %13s %8.2f %8.1f %10.1f %10.1f %10.1f\n", size[s], order[c], w,
          sprintf("%.2f-%.2f", lo(wall[k]), hi(wall[k])), u, median(rss[k]) / 1024, w * 1e6 / size[s], u * 1e6 / size[s],
          median(usr[k]) * 1e6 / size[s]
      }
    }' "$work/results.txt"
fi

# ---- Part 2: many peers, one torrent ----------------------------------------
if [[ " $parts " == *" peers "* ]]; then
  peers=${PEERS:-200} mib=${PEERS_MIB:-1024} piece=${PEERS_PIECE:-1M} port=7320
  make_torrent $((mib * 1024 * 1024)) "$piece"
  : > "$work/swarm.log"
  "$swarm_seed" "$work/data.torrent" "$work/seed/data.bin" 127.0.2.1 "$peers" $port > "$work/swarm.log" 2>&1 &
  pids+=($!)
  wait_for "$work/swarm.log" ready "the seeders' start"
  rivulet_peers=() rqbit_peers=""
  for i in $(seq 0 $((peers - 1))); do
    a=$((2 * 256 + 1 + i)) # consecutive addresses from 127.0.2.1, as swarm_seed listens
    ip="127.0.$((a / 256)).$((a % 256))"
    rivulet_peers+=(--peer "$ip:$port"); rqbit_peers="$rqbit_peers${rqbit_peers:+,}$ip:$port"
  done
  one_run() { # label, client; then the seeders' count of the session
    local sessions
    sessions=$(grep -c '^session' "$work/swarm.log" || true)
    case $2 in
      rivulet) run "$1" rivulet "$rivulet" download -q --port 7321 --max-peers "$peers" "${rivulet_peers[@]}" \
        -o "$work/out" "$work/data.torrent" ;;
      rqbit) run "$1" rqbit "$rqbit" "${rqbit_flags[@]}" --listen-port 7322 --peer-limit "$peers" download \
        --exit-on-finish --disable-http-api --initial-peers "$rqbit_peers" -o "$work/out" "$work/data.torrent" ;;
      *) echo "unknown client $2" >&2; exit 1 ;;
    esac
    # The seeders report the session once the client's last connection closed.
    for _ in $(seq 100); do
      [ "$(grep -c '^session' "$work/swarm.log" || true)" -gt "$sessions" ] && break; sleep 0.1
    done
    [ "$warm" = 1 ] && return 0
    grep '^session' "$work/swarm.log" | tail -1 |
      awk -v name="$2" '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print "session", name, v["peak_peers"], v["active"], v["bytes"] }' >> "$work/results.txt"
  }
  rounds_of peers
  echo
  echo "peers: ${mib} MiB (pieces of $piece) from $peers seeders (swarm_seed, one process) over loopback, $(nproc) cores, median of $rounds rounds"
  printf '%-8s %14s %7s %8s %13s %8s %8s %12s\n' client peak_peers active wall_s wall_min-max cpu_s rss_MiB served/size
  awk -v clients="$clients" -v size=$((mib * 1024 * 1024)) "$awk_lib"'
    $1 == "peers" { wall[$2] = wall[$2] " " $3; cpu[$2] = cpu[$2] " " $4; rss[$2] = rss[$2] " " $5 }
    $1 == "session" { peak[$2] = peak[$2] " " $3; active[$2] = active[$2] " " $4; served[$2] = served[$2] " " $5 }
    END {
      nc = split(clients, order, " ")
      for (c = 1; c <= nc; c++) {
        t = order[c]
        printf "%-8s %14s %7d %8.2f %13s %8.2f %8.1f %12.2f\n", t, sprintf("%d (%d-%d)", median(peak[t]), lo(peak[t]), hi(peak[t])),
          median(active[t]), median(wall[t]), sprintf("%.2f-%.2f", lo(wall[t]), hi(wall[t])), median(cpu[t]), median(rss[t]) / 1024, median(served[t]) / size
      }
    }' "$work/results.txt"
fi

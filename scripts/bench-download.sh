#!/usr/bin/env bash
# Downloads the same torrent from libtorrent seeders with rivulet, rqbit,
# aria2, a libtorrent leecher and Transmission, alternating, and prints wall
# time, CPU time and peak RSS (median of the rounds) with ratios to rqbit.
#
#   scripts/bench-download.sh [SIZE_MIB] [ROUNDS]      (defaults: 1024 MiB, 5)
#
# BASELINE=/path/to/another/rivulet adds that build as the client `baseline`
# (say, the last release, to show a change's effect in the same run), and
# CLIENTS="rivulet baseline rqbit" runs only the clients named, in that order
# (all: rivulet baseline rqbit aria2 libtorrent transmission; transmission is
# transmission-cli 3.00, left out by default to keep earlier tables comparable).
# For the cost of encryption: rivulet-plain is rivulet with --encryption off,
# rivulet-rc4 with --encryption require (RC4 both ways; the seeders take
# either), libtorrent-rc4 a libtorrent leecher that allows RC4 only; plain
# `rivulet` uses its default (the MSE handshake, then plaintext as the
# libtorrent seeders choose). For uTP: UTP=1 turns uTP on in the seeders
# (beside TCP), rivulet-utp is rivulet with --utp-first (so over uTP),
# rivulet-tcp rivulet with --no-utp (so that seeders connecting back over
# uTP do not mix in) and libtorrent-utp a libtorrent leecher with TCP off;
# the other clients stay on TCP.
# PIECE=16M sets the piece length (default 1M). SEEDS=8 starts that many
# libtorrent seeders, each on its own address (127.0.1.1, 127.0.1.2, ...),
# all announced to the tracker. Each client first runs once untimed (a
# warm-up; WARMUP=0 skips it), then ROUNDS timed rounds; the table shows the
# median of each figure, and the fastest and slowest wall time.
# peers_cpu_s is the CPU time the seeders used during the run (all their
# threads): what the client costs its peers. The seeders share the client's
# cores, so from a few seeders up the wall time is about (the client's CPU +
# the peers' CPU) / cores.
#
# For scripts/perf-report.sh: TSV=FILE appends one row per timed run
# (client, seeders, size, piece length, round, wall s, CPU s, peak RSS KiB;
# a header first if FILE is empty), and TRACE=DIR writes DIR/CLIENT-N.tsv
# for timed round N: the bytes the client has written so far, every 100 ms
# (scripts/io_trace.py). LANE=K moves every address to 127.K.x.x and every
# port up by 1000*K, so that two copies of the script on one machine do not
# meet (their figures still disturb each other).
#
# Everything stays on loopback: opentracker on 127.0.0.1:6969, the seeders on
# 127.0.1.x; DHT, LSD, UPnP, NAT-PMP (and PEX, uTP where there is a switch)
# are off in every client. Needs opentracker, aria2, python3-libtorrent,
# transmission-cli (if listed) and time (Debian), and rqbit
# (`cargo install rqbit --no-default-features --features default-tls`).
set -euo pipefail
# Closed network: rivulet runs no DHT (nothing may leave loopback).
export RIVULET_CLOSED_NETWORK=1
size_mib=${1:-1024}
rounds=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
chmod 755 "$work"
pids=() # tracker and seeders
seeder_pids=()
tpid= # /usr/bin/time around the client running
cleanup() {
  if [ -n "$tpid" ]; then pkill -P "$tpid" 2>/dev/null || true; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
lane=${LANE:-0}
net=127.$lane # every address is $net.x.y
off=$((1000 * lane)) # added to every port

rqbit=${RQBIT:-$(command -v rqbit || echo "$HOME/.cargo/bin/rqbit")}
clients=${CLIENTS:-rivulet ${BASELINE:+baseline }rqbit aria2 libtorrent}
need="opentracker /usr/bin/time"
case " $clients " in *" rqbit "*) need="$need $rqbit" ;; esac
case " $clients " in *" aria2 "*) need="$need aria2c" ;; esac
case " $clients " in *" transmission "*) need="$need transmission-cli" ;; esac
for tool in $need; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
cargo build --release -q -p rivulet --manifest-path "$root/Cargo.toml"
rivulet="$root/target/release/rivulet"

mkdir -p "$work/seed" "$work/tracker"
chmod 755 "$work/tracker"
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$work/seed/data.bin"
hash=$("$rivulet" create -q --no-date --piece-length "${PIECE:-1M}" -t "http://$net.0.1:$((6969 + off))/announce" \
  -o "$work/data.torrent" "$work/seed/data.bin")
echo "$hash" > "$work/tracker/whitelist"
chmod 644 "$work/tracker/whitelist"
opentracker -i "$net.0.1" -p $((6969 + off)) -P $((6969 + off)) -w "$work/tracker/whitelist" >/dev/null 2>&1 &
pids+=($!)
seeds=${SEEDS:-1}
for i in $(seq "$seeds"); do
  LT_UTP=${UTP:-0} /usr/bin/python3 "$root/scripts/lt_peer.py" seed "$work/data.torrent" "$work/seed" "$net.1.$i" $((7000 + off + i)) \
    > "$work/seed$i.log" 2>&1 &
  pids+=($!)
  seeder_pids+=($!)
done
for i in $(seq "$seeds"); do
  for _ in $(seq 600); do grep -q ready "$work/seed$i.log" && break; sleep 0.1; done
  grep -q ready "$work/seed$i.log" || { echo "seeder $i did not start" >&2; cat "$work/seed$i.log" >&2; exit 1; }
done

# Transmission has no command-line switches for most of this: a fresh
# settings.json (and no resume files) for every run. The ratio limit of 0
# stops the torrent once complete, and transmission-cli exits when its
# torrent stops; encryption "tolerated" (0) prefers plain connections, like
# the other clients. Transmission 3.00 drops every 127.x.x.x peer a tracker
# gives it (a "martian" address), so it finds no seeder on loopback by
# itself: when it first announces, the seeders are told to connect to it
# (lt_peer.py: SIGUSR1 and DATA.torrent.connect). The log at debug level is
# the only sign of that announce. Its port changes every run: a seeder that
# knew the last one's port would wait 60 s before connecting to it again.
tr_runs=0
transmission_config() {
  rm -rf "$work/tr"; mkdir -p "$work/tr"
  tr_runs=$((tr_runs + 1))
  cat > "$work/tr/settings.json" <<EOF
{
  "bind-address-ipv4": "$net.0.6", "bind-address-ipv6": "::1", "peer-port": $((7600 + off + tr_runs)),
  "dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
  "port-forwarding-enabled": false, "rpc-enabled": false, "blocklist-enabled": false,
  "encryption": 0, "preallocation": 0, "rename-partial-files": false, "incomplete-dir-enabled": false,
  "download-dir": "$work/out", "speed-limit-down-enabled": false, "speed-limit-up-enabled": false,
  "ratio-limit-enabled": true, "ratio-limit": 0, "message-level": 3
}
EOF
  echo "$net.0.6:$((7600 + off + tr_runs))" > "$work/data.torrent.connect"
}
call_seeders() { # once transmission has announced, the seeders connect to it
  local i
  for i in $(seq 300); do
    grep -q 'Announcing to tracker' "$work/transmission.log" 2>/dev/null && break
    sleep 0.05
  done
  kill -USR1 "${seeder_pids[@]}"
}

# CPU ticks (user + system) the seeders have used so far: what a client
# costs its peers (their sending, and the loopback's TCP work done on their
# side) shows in the peers_cpu_s column.
seeders_ticks() {
  local p t=0 stat
  for p in "${seeder_pids[@]}"; do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    stat=${stat##*) } # the fields after the command's name
    set -- $stat
    t=$((t + ${12} + ${13}))
  done
  echo "$t"
}
ticks_per_s=$(getconf CLK_TCK)

warm=0
round=0
run() { # name, command...: appends "name wall cpu maxrss_kib" after checking the data
  local name=$1 trace='' spid='' last
  shift
  rm -rf "$work/out"; mkdir -p "$work/out"; sync
  local ticks0
  ticks0=$(seeders_ticks)
  [ -n "${TRACE:-}" ] && [ "$warm" = 0 ] && trace="$TRACE/$name-$round.tsv"
  /usr/bin/time -f "$name %e %U %S %M" -o "$work/time.txt" "$@" >"$work/$name.log" 2>&1 &
  tpid=$!
  if [ -n "$trace" ]; then
    /usr/bin/python3 "$root/scripts/io_trace.py" "$tpid" "$trace" &
    spid=$!
  fi
  [ "$name" = transmission ] && call_seeders
  wait "$tpid" || { echo "$name failed:" >&2; tail -5 "$work/$name.log" >&2; tpid=; return 1; }
  tpid=
  local peers_cpu
  peers_cpu=$(awk -v a="$ticks0" -v b="$(seeders_ticks)" -v hz="$ticks_per_s" 'BEGIN { printf "%.2f", (b - a) / hz }')
  if [ -n "$spid" ]; then
    wait "$spid"
    # the last 100 ms: at the exit (wall time), all the data was written
    last=$(awk -v size="$(stat -c %s "$work/out/data.bin")" '{ w = $2 } END { print (w > size ? w : size) }' "$trace")
    awk -v last="$last" '{ print $2, last }' "$work/time.txt" >> "$trace"
  fi
  cmp -s "$work/out/data.bin" "$work/seed/data.bin" || { echo "$name: data differs" >&2; return 1; }
  [ "$warm" = 1 ] && return 0 # a warm-up run counts for nothing
  awk -v peers="$peers_cpu" '{ print $1, $2, $3 + $4, $5, peers }' "$work/time.txt" >> "$work/results.txt"
  if [ -n "${TSV:-}" ]; then
    [ -s "$TSV" ] || printf 'client\tseeds\tsize_mib\tpiece\tround\twall_s\tcpu_s\tmaxrss_kib\n' > "$TSV"
    awk -v s="$seeds" -v m="$size_mib" -v p="${PIECE:-1M}" -v r="$round" \
      '{ printf "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\n", $1, s, m, p, r, $2, $3 + $4, $5 }' "$work/time.txt" >> "$TSV"
  fi
}

: > "$work/results.txt"
first=1
[ "${WARMUP:-1}" = 0 ] && first=2
for r in $(seq "$first" "$((rounds + 1))"); do
  if [ "$r" = 1 ]; then warm=1; else warm=0; fi
  round=$((r - 1))
  for client in $clients; do
    case $client in
      rivulet) run rivulet "$rivulet" download -q --port $((7101 + off)) -o "$work/out" "$work/data.torrent" ;;
      baseline) run baseline "$BASELINE" download -q --port $((7105 + off)) -o "$work/out" "$work/data.torrent" ;;
      rivulet-plain) run rivulet-plain "$rivulet" download -q --encryption off --port $((7106 + off)) -o "$work/out" \
        "$work/data.torrent" ;;
      rivulet-rc4) run rivulet-rc4 "$rivulet" download -q --encryption require --port $((7107 + off)) -o "$work/out" \
        "$work/data.torrent" ;;
      rivulet-tcp) run rivulet-tcp "$rivulet" download -q --no-utp --port $((7111 + off)) -o "$work/out" \
        "$work/data.torrent" ;;
      rivulet-utp) run rivulet-utp "$rivulet" download -q --utp-first --port $((7109 + off)) -o "$work/out" \
        "$work/data.torrent" ;;
      libtorrent-utp) LT_UTP=1 LT_TCP=0 run libtorrent-utp /usr/bin/python3 "$root/scripts/lt_peer.py" leech \
        "$work/data.torrent" "$work/out" "$net.0.5" $((7110 + off)) ;;
      libtorrent-rc4) LT_ENC=forced run libtorrent-rc4 /usr/bin/python3 "$root/scripts/lt_peer.py" leech \
        "$work/data.torrent" "$work/out" "$net.0.4" $((7108 + off)) ;;
      rqbit) run rqbit "$rqbit" --disable-dht --disable-upnp-port-forward --disable-lsd --listen-port $((7102 + off)) \
        download --exit-on-finish -o "$work/out" "$work/data.torrent" ;;
      aria2) run aria2 aria2c -q --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
        --enable-peer-exchange=false --seed-time=0 --listen-port=$((7103 + off)) --file-allocation=none \
        -d "$work/out" "$work/data.torrent" ;;
      libtorrent) run libtorrent /usr/bin/python3 "$root/scripts/lt_peer.py" leech "$work/data.torrent" "$work/out" \
        "$net.0.3" $((7104 + off)) ;;
      transmission) transmission_config
        run transmission transmission-cli -g "$work/tr" -w "$work/out" "$work/data.torrent" ;;
      *) echo "unknown client $client" >&2; exit 1 ;;
    esac
  done
  if [ "$warm" = 1 ]; then echo "warm-up done" >&2; else echo "round $((r - 1)) done" >&2; fi
done

echo "download: ${size_mib} MiB (pieces of ${PIECE:-1M}) from $seeds libtorrent seeder(s) over loopback, $(nproc) cores, median of $rounds rounds"
printf '%-14s %8s %13s %8s %9s %10s %10s %12s\n' client wall_s wall_min-max cpu_s rss_MiB wall/rqbit cpu/rqbit peers_cpu_s
awk -v clients="$clients" '
  { wall[$1] = wall[$1] " " $2; cpu[$1] = cpu[$1] " " $3; rss[$1] = rss[$1] " " $4; peers[$1] = peers[$1] " " $5 }
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
      printf "%-14s %8.2f %13s %8.2f %9.1f %10s %10s %12.2f\n", t, w, sprintf("%.2f-%.2f", lo(wall[t]), hi(wall[t])), c, median(rss[t]) / 1024,
        (bw > 0 ? sprintf("%.2fx", w / bw) : "n/a"), (bc > 0 ? sprintf("%.2fx", c / bc) : "n/a"), median(peers[t])
    }
  }' "$work/results.txt"

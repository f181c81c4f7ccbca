#!/usr/bin/env bash
# Times `rivulet create` beside mktorrent and transmission-create on the same
# file, in one run, and prints wall time, CPU time, hashing rate, the share of
# the machine's SHA-1 limit that rate reaches, and peak RSS.
#
#   scripts/bench-create.sh [SIZE_MIB] [ROUNDS]     (defaults: 1024 MiB, 5 rounds)
#
# The SHA-1 limit is what `openssl speed -multi $(nproc) -evp sha1` hashes on
# all cores from a 1 MiB buffer: no tool that reads the file can beat it. It is
# measured once per round, between the tools, since a busy machine lowers it
# as much as it lowers them; the table shows the median.
#
# The file is read before every round, and `sync` runs before every timed
# command, so that each tool hashes from the page cache with no write-back
# going on: the figures measure hashing, not the disk. Runs are alternated
# between tools; the table shows the median round of each.
#
# BASELINE=/path/to/old/rivulet adds an older build as the tool `baseline`,
# alternated with the others, to see what a change does.
set -euo pipefail
size_mib=${1:-1024}
rounds=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for tool in mktorrent transmission-create openssl /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y mktorrent transmission-cli openssl time)" >&2; exit 1; }
done
cargo build --release -q -p rivulet --manifest-path "$root/Cargo.toml"
rivulet="$root/target/release/rivulet"

head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$work/data.bin"
cores=$(nproc)

run() { # name, command...: appends "name wall user sys maxrss_kib"
  local name=$1; shift
  rm -f "$work/out.torrent"
  sync
  /usr/bin/time -f "$name %e %U %S %M" -o "$work/time.txt" "$@" >/dev/null 2>&1
  cat "$work/time.txt" >> "$work/results.txt"
}

sha1_rate() { # openssl speed arguments...: prints bytes per second
  openssl speed -seconds 2 "$@" -evp sha1 -bytes 1048576 2>/dev/null |
    awk '$1 == "sha1" { sub(/k$/, "", $NF); print $NF * 1000 }'
}

: > "$work/results.txt"
: > "$work/limits.txt"
for _ in $(seq "$rounds"); do
  cat "$work/data.bin" > /dev/null
  run rivulet "$rivulet" create -q --no-date --piece-length 1M -o "$work/out.torrent" "$work/data.bin"
  if [ -n "${BASELINE:-}" ]; then
    run baseline "$BASELINE" create -q --no-date --piece-length 1M -o "$work/out.torrent" "$work/data.bin"
  fi
  echo "one $(sha1_rate)" >> "$work/limits.txt"
  run mktorrent mktorrent -l 20 -t "$cores" -o "$work/out.torrent" "$work/data.bin"
  echo "all $(sha1_rate -multi "$cores")" >> "$work/limits.txt"
  run transmission-create transmission-create -s 1024 -o "$work/out.torrent" "$work/data.bin"
done

echo "create: ${size_mib} MiB file, 1 MiB pieces, $cores cores, median of $rounds rounds"
awk -v size="$size_mib" -v cores="$cores" '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)]
  }
  FILENAME ~ /limits/ { limit[$1] = limit[$1] " " $2; next }
  { wall[$1] = wall[$1] " " $2; cpu[$1] = cpu[$1] " " ($3 + $4); rss[$1] = rss[$1] " " $5 }
  END {
    one = median(limit["one"]) / 1048576; all = median(limit["all"]) / 1048576
    printf "SHA-1 limit (openssl speed -evp sha1, 1 MiB buffers): %.0f MiB/s on one core, %.0f MiB/s on %d (%.2f s for the file)\n", one, all, cores, size / all
    printf "%-20s %8s %8s %10s %9s %10s %10s\n", "tool", "wall_s", "cpu_s", "MiB/s", "of_limit", "rss_MiB", "vs_rivulet"
    base = median(wall["rivulet"])
    n = split("rivulet baseline mktorrent transmission-create", order, " ")
    for (k = 1; k <= n; k++) {
      t = order[k]; if (!(t in wall)) continue
      w = median(wall[t])
      printf "%-20s %8.2f %8.2f %10.0f %8.0f%% %10.1f %9.2fx\n", t, w, median(cpu[t]), size / w, 100 * size / w / all, median(rss[t]) / 1024, w / base
    }
  }' "$work/limits.txt" "$work/results.txt"

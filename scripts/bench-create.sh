#!/usr/bin/env bash
# Times `rivulet create` beside mktorrent and transmission-create on the same
# file, in one run, and prints wall time, CPU time, hashing rate and peak RSS.
#
#   scripts/bench-create.sh [SIZE_MIB] [ROUNDS]     (defaults: 1024 MiB, 3 rounds)
#
# The file is read once before timing so that every tool hashes from the page
# cache: the figures measure hashing, not the disk. Runs are alternated between
# tools; the table shows the median round of each.
set -euo pipefail
size_mib=${1:-1024}
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for tool in mktorrent transmission-create /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y mktorrent transmission-cli time)" >&2; exit 1; }
done
cargo build --release -q -p rivulet --manifest-path "$root/Cargo.toml"
rivulet="$root/target/release/rivulet"

head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$work/data.bin"
cat "$work/data.bin" > /dev/null
cores=$(nproc)

run() { # name, command...: prints "name wall user sys maxrss_kib"
  local name=$1; shift
  rm -f "$work/out.torrent"
  /usr/bin/time -f "$name %e %U %S %M" -o "$work/time.txt" "$@" >/dev/null 2>&1
  cat "$work/time.txt"
}

: > "$work/results.txt"
for _ in $(seq "$rounds"); do
  run rivulet "$rivulet" create -q --no-date --piece-length 1M -o "$work/out.torrent" "$work/data.bin" >> "$work/results.txt"
  run mktorrent mktorrent -l 20 -t "$cores" -o "$work/out.torrent" "$work/data.bin" >> "$work/results.txt"
  run transmission-create transmission-create -s 1024 -o "$work/out.torrent" "$work/data.bin" >> "$work/results.txt"
done

echo "create: ${size_mib} MiB file, 1 MiB pieces, $cores cores, median of $rounds rounds"
printf '%-20s %8s %8s %10s %10s %10s\n' tool wall_s cpu_s MiB/s rss_MiB vs_rivulet
awk -v size="$size_mib" '
  { wall[$1] = wall[$1] " " $2; cpu[$1] = cpu[$1] " " ($3 + $4); rss[$1] = rss[$1] " " $5 }
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)]
  }
  END {
    base = median(wall["rivulet"])
    split("rivulet mktorrent transmission-create", order, " ")
    for (k = 1; k <= 3; k++) {
      t = order[k]; w = median(wall[t])
      printf "%-20s %8.2f %8.2f %10.0f %10.1f %9.2fx\n", t, w, median(cpu[t]), size / w, median(rss[t]) / 1024, w / base
    }
  }' "$work/results.txt"

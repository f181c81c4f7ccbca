#!/usr/bin/env bash
# The whole performance report in one command: builds rivulet (release), runs
# the download benchmark from 1, 2, 4, 8 and 16 seeders for every client, the
# seed benchmark, and one traced download per client for the speed over time;
# writes the data and the plots to docs/perf/ and prints the tables in
# markdown (also written to docs/perf/tables.md) for docs/performance.md.
#
#   scripts/perf-report.sh
#
# Settings (environment):
#   SIZE_MIB=1024         torrent size (one file, 1 MiB pieces)
#   ROUNDS=5              timed rounds of each benchmark (after one warm-up run
#                         of each download client)
#   SEEDS_LIST="1 2 4 8 16"   numbers of libtorrent seeders to download from
#   CLIENTS="rivulet rqbit aria2 libtorrent transmission"   downloaders
#   SEEDERS="rivulet rqbit libtorrent"                     seeders
#   TRACE_SEEDS=8, TRACE_CLIENTS="rivulet rqbit"   the speed-over-time run
#   CPU_SEEDS="1 8"       download runs shown in the CPU-per-GiB chart
#   OUT=docs/perf         where the data and plots go
#   LANE=0                addresses 127.LANE.x.x, ports +1000*LANE (see
#                         bench-download.sh), to keep out of another run's way
# A quick try: SIZE_MIB=64 ROUNDS=1 scripts/perf-report.sh
#
# Everything runs on loopback with DHT, LSD, UPnP and NAT-PMP off; see
# bench-download.sh and bench-seed.sh for how each figure is taken. Needs
# gnuplot (Debian gnuplot-nox) besides what those two scripts need.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
size=${SIZE_MIB:-1024}
rounds=${ROUNDS:-5}
seeds_list=${SEEDS_LIST:-1 2 4 8 16}
clients=${CLIENTS:-rivulet rqbit aria2 libtorrent transmission}
seeders=${SEEDERS:-rivulet rqbit libtorrent}
trace_seeds=${TRACE_SEEDS:-8}
trace_clients=${TRACE_CLIENTS:-rivulet rqbit}
cpu_seeds=${CPU_SEEDS:-1 8}
out=${OUT:-$root/docs/perf}
export LANE=${LANE:-0}
command -v gnuplot >/dev/null || { echo "missing gnuplot (apt-get install gnuplot-nox)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT # each benchmark script stops what it started
trap 'exit 130' INT TERM
start=$(date +%s)

cargo build --release -q -p rivulet --manifest-path "$root/Cargo.toml"
rivulet="$root/target/release/rivulet"
rqbit=${RQBIT:-$(command -v rqbit || echo "$HOME/.cargo/bin/rqbit")}
mkdir -p "$out" "$work/trace"

# --- the machine and the versions ---
{
  echo "date: $(date -u +%Y-%m-%d)"
  echo "rivulet: $("$rivulet" --version | awk '{ print $2 }') ($(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo ', uncommitted changes'))"
  echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores$(grep -qw sha_ni /proc/cpuinfo && echo ', SHA extensions')"
  echo "memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "kernel: $(uname -sr)"
  echo "filesystem: $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $2 }') (${TMPDIR:-/tmp})"
  echo "settings: SIZE_MIB=$size ROUNDS=$rounds SEEDS_LIST=\"$seeds_list\" TRACE_SEEDS=$trace_seeds"
  echo "rqbit: $("$rqbit" --version 2>/dev/null | awk '{ print $2 }')"
  echo "aria2: $(aria2c --version 2>/dev/null | awk 'NR == 1 { print $3 }')"
  echo "libtorrent: $(/usr/bin/python3 -c 'import libtorrent; print(libtorrent.__version__)') (python3-libtorrent)"
  echo "transmission: $(transmission-cli --version 2>&1 | awk 'NR == 1 { print $2 }') (transmission-cli)"
  echo "opentracker: $(dpkg-query -W -f '${Version}' opentracker 2>/dev/null || echo unknown)"
} > "$work/machine.txt"
cat "$work/machine.txt" >&2

# --- the runs ---
for s in $seeds_list; do
  echo "== download from $s seeder(s)" >&2
  SEEDS=$s CLIENTS=$clients TSV="$work/raw-download.tsv" "$root/scripts/bench-download.sh" "$size" "$rounds" \
    | tee "$work/download-$s.txt" >&2
done
echo "== seed" >&2
SEEDERS=$seeders TSV="$work/raw-seed.tsv" "$root/scripts/bench-seed.sh" "$size" "$rounds" | tee "$work/seed.txt" >&2
echo "== speed over time ($trace_seeds seeders)" >&2
SEEDS=$trace_seeds CLIENTS=$trace_clients TRACE="$work/trace" "$root/scripts/bench-download.sh" "$size" 1 >&2

# --- the data behind the plots ---
# awk: median, lowest and highest of a space-separated list
stats='
  function sort(list, a,   n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n
  }
  function med(list,   a, n) { n = sort(list, a); return a[int((n + 1) / 2)] }
  function lo(list,   a) { sort(list, a); return a[1] }
  function hi(list,   a, n) { n = sort(list, a); return a[n] }
'
cp "$work/raw-download.tsv" "$work/raw-seed.tsv" "$work/machine.txt" "$out/"
# medians with min and max, per client and number of seeders; MiB/s is size / wall time
awk -F'\t' -v OFS='\t' -v clients="$clients" "$stats"'
  NR == 1 { next }
  { k = $1 SUBSEP $2; wall[k] = wall[k] " " $6; cpu[k] = cpu[k] " " $7; rss[k] = rss[k] " " $8; size[k] = $3; n[k]++
    if (!($2 in seen)) { seen[$2] = 1; seeds[++ns] = $2 } }
  END {
    print "client", "seeders", "runs", "wall_s", "wall_min", "wall_max", "MiB_s", "MiB_s_min", "MiB_s_max", "cpu_s", "cpu_s_per_GiB", "rss_MiB"
    nc = split(clients, order, " ")
    for (c = 1; c <= nc; c++) for (i = 1; i <= ns; i++) {
      k = order[c] SUBSEP seeds[i]; if (!(k in n)) continue
      w = med(wall[k]); m = size[k]
      printf "%s\t%s\t%d\t%.2f\t%.2f\t%.2f\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%.1f\n", order[c], seeds[i], n[k], w, lo(wall[k]), hi(wall[k]),
        m / w, m / hi(wall[k]), m / lo(wall[k]), med(cpu[k]), med(cpu[k]) * 1024 / m, med(rss[k]) / 1024
    }
  }' "$work/raw-download.tsv" > "$out/download.tsv"
awk -F'\t' -v OFS='\t' -v seeders="$seeders" "$stats"'
  NR == 1 { next }
  { x[$1] = x[$1] " " $5; cpu[$1] = cpu[$1] " " $6; rss[$1] = rss[$1] " " $7; lcpu[$1] = lcpu[$1] " " $8; size[$1] = $2; n[$1]++ }
  END {
    print "seeder", "runs", "transfer_s", "transfer_min", "transfer_max", "MiB_s", "seed_cpu_s", "seed_cpu_s_per_GiB", "seed_rss_MiB", "leech_cpu_s"
    nc = split(seeders, order, " ")
    for (c = 1; c <= nc; c++) {
      t = order[c]; if (!(t in n)) continue
      printf "%s\t%d\t%.2f\t%.2f\t%.2f\t%.1f\t%.2f\t%.2f\t%.1f\t%.2f\n", t, n[t], med(x[t]), lo(x[t]), hi(x[t]), size[t] / med(x[t]),
        med(cpu[t]), med(cpu[t]) * 1024 / size[t], med(rss[t]) / 1024, med(lcpu[t])
    }
  }' "$work/raw-seed.tsv" > "$out/seed.tsv"
# CPU seconds per GiB: one row per client, one column per download case, then seeding ("-": not measured)
cpu_cols=""
for s in $cpu_seeds; do case " $seeds_list " in *" $s "*) cpu_cols="$cpu_cols $s" ;; esac; done
awk -F'\t' -v OFS='\t' -v clients="$clients $seeders" -v cols="$cpu_cols" '
  FNR == 1 { next }
  FILENAME ~ /download.tsv$/ { dl[$1, $2] = $11; next }
  { sd[$1] = $8 }
  END {
    nk = split(cols, col, " "); h = "client"
    for (j = 1; j <= nk; j++) h = h "\tdownload, " col[j] " seeder" (col[j] == 1 ? "" : "s")
    print h "\tseed"
    nc = split(clients, order, " ")
    for (c = 1; c <= nc; c++) {
      t = order[c]; if (t in done) continue; done[t] = 1; line = t
      for (j = 1; j <= nk; j++) line = line "\t" (((t, col[j]) in dl) ? dl[t, col[j]] : "-")
      print line "\t" ((t in sd) ? sd[t] : "-")
    }
  }' "$out/download.tsv" "$out/seed.tsv" > "$out/cpu.tsv"
# speed over time: MiB/s over the last 0.5 s, every 100 ms
rm -f "$out"/speed-over-time-*.tsv
for c in $trace_clients; do
  f="$work/trace/$c-1.tsv"
  [ -s "$f" ] || { echo "no trace for $c" >&2; continue; }
  awk -v OFS='\t' 'BEGIN { print "seconds", "MiB", "MiB_s" }
    n > 0 && $1 <= t[n] { next }
    { t[++n] = $1; w[n] = $2
      j = n; while (j > 1 && t[j - 1] > $1 - 0.5 - 1e-9) j--; if (j > 1) j--
      printf "%.2f\t%.1f\t%s\n", $1, $2 / 1048576, (n > 1) ? sprintf("%.1f", ($2 - w[j]) / ($1 - t[j]) / 1048576) : "0" }' \
    "$f" > "$out/speed-over-time-$c.tsv"
done

# --- the plots ---
common='set terminal pngcairo noenhanced size 900,540 font "DejaVu Sans,11"; set grid; set key outside right top; set border 3; set tics nomirror'
gnuplot <<EOF
$common
set output "$out/download-vs-seeders.png"
set title "Download, ${size} MiB over loopback: median of $rounds (bars: min-max)"
set xlabel "libtorrent seeders"; set ylabel "MiB/s (size / wall time)"
set logscale x 2; set xtics ($(echo "$seeds_list" | sed 's/\([0-9][0-9]*\)/"\1" \1/g; s/ "/, "/g'))
set xrange [0.8:$(echo "$seeds_list" | tr ' ' '\n' | sort -n | tail -1).0 * 1.25]; set yrange [0:*]
set datafile separator "\t"
plot for [c in "$clients"] "< awk -F'\t' -v c=" . c . " '\$1 == c' $out/download.tsv" using 2:7:8:9 with yerrorlines lw 2 pt 7 title c
EOF
gnuplot <<EOF
$common
set output "$out/speed-over-time.png"
set title "One ${size} MiB download from $trace_seeds seeders (bytes written, 0.5 s window)"
set xlabel "seconds since start"; set ylabel "MiB/s"; set yrange [0:*]; set xrange [0:*]
set datafile separator "\t"
plot for [c in "$trace_clients"] "$out/speed-over-time-" . c . ".tsv" using 1:3 every ::1 with lines lw 2 title c
EOF
gnuplot <<EOF
$common
set output "$out/cpu-per-gib.png"
set title "CPU seconds (user + system) per GiB, median of $rounds"
set ylabel "CPU s per GiB"; set yrange [0:*]
set style data histograms; set style histogram clustered gap 1; set style fill solid 0.85 border -1; set boxwidth 0.9
set datafile separator "\t"; set datafile missing "-"
plot for [i=2:$(($(echo "$cpu_cols" | wc -w) + 2))] "$out/cpu.tsv" using i:xtic(1) title columnhead(i)
EOF

# --- the tables, in markdown ---
{
  echo "Download: ${size} MiB, MiB/s (size / wall time), median of $rounds (min-max)"
  echo
  printf '| client |'; for s in $seeds_list; do printf ' %s seeder%s |' "$s" "$([ "$s" = 1 ] || echo s)"; done; echo
  printf '| --- |'; for _ in $seeds_list; do printf ' --- |'; done; echo
  for c in $clients; do
    printf '| %s |' "$c"
    for s in $seeds_list; do
      awk -F'\t' -v c="$c" -v s="$s" '$1 == c && $2 == s { printf " %d (%d-%d) |", $7, $8, $9; f = 1 } END { if (!f) printf " - |" }' "$out/download.tsv"
    done
    echo
  done
  for s in $cpu_cols; do
    echo
    echo "Download from $s seeder$([ "$s" = 1 ] || echo s): medians of $rounds"
    echo
    echo "| client | wall s (min-max) | CPU s | CPU s per GiB | peak RSS MiB | wall vs rqbit | CPU vs rqbit |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    awk -F'\t' -v s="$s" '$2 == s && $1 == "rqbit" { bw = $4; bc = $10 } $2 == s { r[++n] = $0 }
      END { for (i = 1; i <= n; i++) { split(r[i], f, "\t")
        printf "| %s | %.2f (%.2f-%.2f) | %.2f | %.2f | %.1f | %s | %s |\n", f[1], f[4], f[5], f[6], f[10], f[11], f[12],
          bw ? sprintf("%.2fx", f[4] / bw) : "-", bc ? sprintf("%.2fx", f[10] / bc) : "-" } }' "$out/download.tsv"
  done
  echo
  echo "Seeding ${size} MiB to one libtorrent leecher: medians of $rounds"
  echo
  echo "| seeder | transfer s (min-max) | MiB/s | seeder CPU s | CPU s per GiB | seeder peak RSS MiB | transfer vs rqbit | CPU vs rqbit |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  awk -F'\t' 'NR > 1 { r[++n] = $0 } $1 == "rqbit" { bx = $3; bc = $7 }
    END { for (i = 1; i <= n; i++) { split(r[i], f, "\t")
      printf "| %s | %.2f (%.2f-%.2f) | %.0f | %.2f | %.2f | %.1f | %s | %s |\n", f[1], f[3], f[4], f[5], f[6], f[7], f[8], f[9],
        bx ? sprintf("%.2fx", f[3] / bx) : "-", bc ? sprintf("%.2fx", f[7] / bc) : "-" } }' "$out/seed.tsv"
  echo
  echo "CPU seconds per GiB (medians)"
  echo
  awk -F'\t' 'NR == 1 { n = NF; gsub(/_/, " "); gsub(/\t/, " | "); print "| " $0 " |"; s = "|"; for (i = 1; i <= n; i++) s = s " --- |"; print s; next }
    { gsub(/\t/, " | "); print "| " $0 " |" }' "$out/cpu.tsv"
  echo
  echo "Machine and versions"
  echo
  echo '```'
  cat "$work/machine.txt"
  echo '```'
} > "$out/tables.md"
cat "$out/tables.md"
echo "report written to $out in $(( $(date +%s) - start )) s" >&2

#!/usr/bin/python3
"""Samples how many bytes a process has written, every 100 ms, for the
speed-over-time plot of scripts/perf-report.sh.

  io_trace.py PARENT_PID OUT [INTERVAL_S]

PARENT_PID is the /usr/bin/time wrapping the client: the client is its one
child. Writes lines "seconds bytes" to OUT, seconds counted from the
client's start (/proc/PID/stat, to 10 ms), bytes from `wchar` in /proc/CLIENT/io (every byte the
process has written with write, pwrite, writev, ... over all its threads,
living or exited). Preallocation and sparse files do not matter to it;
storage written through mmap would not be counted (neither rivulet nor
rqbit does that). Stops when the client exits.
"""
import os
import sys
import time

parent, out = int(sys.argv[1]), sys.argv[2]
interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1


def child_of(pid):
    try:
        with open(f'/proc/{pid}/task/{pid}/children') as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except OSError:
        return None


def wchar(pid):
    try:
        with open(f'/proc/{pid}/io') as f:
            for line in f:
                if line.startswith('wchar:'):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def exited(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] in 'ZX'
    except OSError:
        return True


pid = None
deadline = time.monotonic() + 10
while pid is None and time.monotonic() < deadline:
    pid = child_of(parent)
    if pid is None:
        time.sleep(0.005)
if pid is None:
    sys.exit(f'io_trace: no child of {parent}')
# seconds from the client's start (its exec, to 10 ms), not from ours
with open(f'/proc/{pid}/stat') as f:
    started = int(f.read().rsplit(')', 1)[1].split()[19]) / os.sysconf('SC_CLK_TCK')
t0 = time.monotonic() - (time.clock_gettime(time.CLOCK_BOOTTIME) - started)
tick = time.monotonic()
with open(out, 'w') as f:
    while True:
        w = wchar(pid)
        now = time.monotonic()
        if w is None or exited(pid):
            break
        f.write(f'{now - t0:.3f} {w}\n')
        tick += interval
        time.sleep(max(0.0, tick - time.monotonic()))

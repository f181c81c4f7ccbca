#!/usr/bin/python3
"""Reach into a network namespace for rivulet's interop test harness
(crates/cli/tests/support/netns.rs).

  netns_agent.py NAME

The test process lives in the host's network namespace and cannot enter the
namespace NAME (made by `ip netns add NAME`) itself. This agent starts in the
host's namespace and does it for the test, one thread at a time: setns(2)
changes the network namespace of the calling thread only, so the main thread
stays outside while worker threads enter /run/netns/NAME.

Driven with JSON lines over stdin and stdout, one answer per command:
  {"cmd": "probe", "addr": "IP:PORT"}
      -> {"ok": true, "listening": BOOL}: whether a TCP connection to IP:PORT
         inside the namespace succeeds.
  {"cmd": "forward", "addr": "IP:PORT"}
      -> {"ok": true, "port": P}: from now on, every connection to
         127.0.0.1:P in the host's namespace is relayed to IP:PORT inside
         the namespace (for RPC, tracker and HTTP clients of the test).
End of input makes it exit, so it never outlives its driver.
"""

import ctypes
import json
import os
import select
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)


def split_addr(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


class Agent:
    def __init__(self, name):
        self.ns_fd = os.open(os.path.join("/run/netns", name), os.O_RDONLY)

    def enter(self):
        """Moves the calling thread into the namespace."""
        if LIBC.setns(self.ns_fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns: " + os.strerror(err))

    def in_namespace(self, fn):
        """Runs fn() in a fresh thread inside the namespace; returns its value."""
        result = {}

        def run():
            try:
                self.enter()
                result["value"] = fn()
            except Exception as e:  # reported to the caller
                result["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join()
        if "error" in result:
            raise result["error"]
        return result["value"]

    def probe(self, addr):
        def connect():
            try:
                socket.create_connection(split_addr(addr), timeout=0.5).close()
                return True
            except OSError:
                return False

        return self.in_namespace(connect)

    def forward(self, addr):
        target = split_addr(addr)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)

        def relay(client):
            try:
                self.enter()
                upstream = socket.create_connection(target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                return
            pump(client, upstream)

        def accept_loop():
            while True:
                client, _ = listener.accept()
                threading.Thread(target=relay, args=(client,), daemon=True).start()

        threading.Thread(target=accept_loop, daemon=True).start()
        return listener.getsockname()[1]


def pump(a, b):
    """Copies bytes both ways between sockets a and b until both sides end."""
    socks = [a, b]
    other = {a: b, b: a}
    open_reads = {a, b}
    try:
        while open_reads:
            readable, _, _ = select.select(list(open_reads), [], [], 60)
            if not readable:
                continue
            for s in readable:
                data = s.recv(65536)
                if data:
                    other[s].sendall(data)
                else:
                    open_reads.discard(s)
                    try:
                        other[s].shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv):
    if len(argv) != 1:
        sys.stderr.write(__doc__)
        return 2
    agent = Agent(argv[0])
    reply({"event": "ready"})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            cmd = json.loads(line)
            name = cmd.get("cmd")
            if name == "probe":
                reply({"ok": True, "listening": agent.probe(cmd["addr"])})
            elif name == "forward":
                reply({"ok": True, "port": agent.forward(cmd["addr"])})
            else:
                reply({"ok": False, "error": f"unknown command {name!r}"})
        except Exception as e:  # report, keep serving
            reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

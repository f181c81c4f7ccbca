#!/usr/bin/python3
"""Checks rivulet-utp against Transmission 3.00 (libutp) on loopback.

Starts transmission-daemon seeding a generated file (uTP on, DHT, LPD and
PEX off, bound to 127.0.0.10), then runs the `interop` example's
`download` against it: uTP handshake, BitTorrent handshake, download of
the whole file compared byte for byte, FIN.

Usage (from the workspace root, after
`cargo build -p rivulet-utp --example interop`):

    /usr/bin/python3 crates/utp/examples/transmission_interop.py TARGET_DIR [SIZE_MIB]
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import libtorrent as lt

target = sys.argv[1] if len(sys.argv) > 1 else "target"
size_mib = int(sys.argv[2]) if len(sys.argv) > 2 else 4
exe = os.path.join(target, os.environ.get("INTEROP_PROFILE", "debug"), "examples", "interop")

d = tempfile.mkdtemp(prefix="utp-tr-")
os.chmod(d, 0o755)
path = os.path.join(d, "file.bin")
data = bytes((i * 31 + (i >> 8)) & 0xFF for i in range(size_mib << 20))
with open(path, "wb") as f:
    f.write(data)
fs = lt.file_storage()
lt.add_files(fs, path)
piece_len = 256 * 1024
ct = lt.create_torrent(fs, piece_len, flags=lt.create_torrent.v1_only)
lt.set_piece_hashes(ct, d)
torrent = os.path.join(d, "file.torrent")
with open(torrent, "wb") as f:
    f.write(lt.bencode(ct.generate()))
info_hash = str(lt.torrent_info(torrent).info_hashes().v1)

conf = os.path.join(d, "conf")
os.makedirs(conf)
peer_port, rpc_port = 51413, 19091
with open(os.path.join(conf, "settings.json"), "w") as f:
    json.dump({
        "bind-address-ipv4": "127.0.0.10",
        "bind-address-ipv6": "::1",
        "rpc-bind-address": "127.0.0.1",
        "rpc-port": rpc_port,
        "rpc-whitelist": "127.0.0.1",
        "rpc-authentication-required": False,
        "peer-port": peer_port,
        "utp-enabled": True,
        "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
        "port-forwarding-enabled": False,
        "encryption": 1,
        "download-dir": d,
    }, f)
tr = subprocess.Popen(["transmission-daemon", "-f", "-g", conf, "-O", "-Y", "-M",
                       "-P", str(peer_port), "-p", str(rpc_port), "-w", d],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ok = False
try:
    remote = ["transmission-remote", "127.0.0.1:%d" % rpc_port]
    for _ in range(100):
        if subprocess.run(remote + ["-l"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    subprocess.run(remote + ["-a", torrent, "-w", d], check=True, capture_output=True)
    for _ in range(300):
        out = subprocess.run(remote + ["-t", "1", "-i"], capture_output=True, text=True).stdout
        if "Percent Done: 100%" in out and "State: Seeding" in out or "State: Idle" in out and "100%" in out:
            break
        time.sleep(0.1)
    print("transmission seeding", info_hash, "on 127.0.0.10:%d" % peer_port)
    r = subprocess.run([exe, "download", "127.0.0.11:0", "127.0.0.10:%d" % peer_port, info_hash, path,
                        str(piece_len)], capture_output=True, text=True, timeout=120)
    print(r.stdout + r.stderr[-3000:])
    ok = "OK download" in r.stdout
finally:
    tr.terminate()
    tr.wait(timeout=10)
print("TRANSMISSION INTEROP", "PASSED" if ok else "FAILED")
sys.exit(0 if ok else 1)

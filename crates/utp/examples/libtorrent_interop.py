#!/usr/bin/python3
"""Checks rivulet-utp against libtorrent on loopback.

Starts a libtorrent session that seeds a generated file over uTP only
(TCP, DHT, LSD, UPnP and NAT-PMP off, listening on 127.0.0.5), then runs
the `interop` example:

1. `download`: rivulet connects over uTP, handshakes, downloads the whole
   file and compares it byte for byte, then closes with a FIN.
2. `refuse`: libtorrent connects to rivulet over uTP; rivulet reads the
   BitTorrent handshake and resets the connection, as the engine does for
   a torrent it does not have; libtorrent must see the connection fail at
   once (not after a timeout).

Usage (from the workspace root, after
`cargo build -p rivulet-utp --example interop`):

    /usr/bin/python3 crates/utp/examples/libtorrent_interop.py TARGET_DIR [SIZE_MIB] [MAX_PAYLOAD]

Nothing talks to an address outside 127.0.0.0/8.
"""
import os
import subprocess
import sys
import tempfile
import time

import libtorrent as lt

target = sys.argv[1] if len(sys.argv) > 1 else "target"
size_mib = int(sys.argv[2]) if len(sys.argv) > 2 else 4
max_payload = sys.argv[3] if len(sys.argv) > 3 else "1380"
exe = os.path.join(target, os.environ.get("INTEROP_PROFILE", "debug"), "examples", "interop")
if not os.path.exists(exe):
    exe = os.path.join(target, "release", "examples", "interop")

d = tempfile.mkdtemp(prefix="utp-interop-")
path = os.path.join(d, "file.bin")
data = bytes((i * 31 + (i >> 8)) & 0xFF for i in range(size_mib << 20))
with open(path, "wb") as f:
    f.write(data)
fs = lt.file_storage()
lt.add_files(fs, path)
piece_len = 256 * 1024
ct = lt.create_torrent(fs, piece_len, flags=lt.create_torrent.v1_only)
lt.set_piece_hashes(ct, d)
ti = lt.torrent_info(ct.generate())
info_hash = str(ti.info_hashes().v1)

ses = lt.session({
    "listen_interfaces": "127.0.0.5:26881",
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "enable_outgoing_tcp": False, "enable_incoming_tcp": False,
    "enable_outgoing_utp": True, "enable_incoming_utp": True,
    # Plaintext, so that rivulet can read the handshake it refuses.
    "out_enc_policy": 2, "in_enc_policy": 1,
    "alert_mask": lt.alert.category_t.all_categories,
})
h = ses.add_torrent({"ti": ti, "save_path": d})
for _ in range(200):
    if h.status().is_seeding:
        break
    time.sleep(0.05)
assert h.status().is_seeding, "libtorrent is not seeding"
print("libtorrent seeding", info_hash, "on 127.0.0.5:26881")

def alerts():
    out = []
    for a in ses.pop_alerts():
        out.append(a)
    return out

ok = True
print("--- download (rivulet connects to libtorrent)")
r = subprocess.run([exe, "download", "127.0.0.6:0", "127.0.0.5:26881", info_hash, path,
                    str(piece_len), max_payload], capture_output=True, text=True, timeout=120)
print(r.stdout + r.stderr)
ok &= "OK download" in r.stdout
time.sleep(0.5)
for a in alerts():
    if isinstance(a, (lt.peer_disconnected_alert, lt.peer_error_alert)):
        print("libtorrent:", a.message())

print("--- refuse (libtorrent connects to rivulet, which resets)")
p = subprocess.Popen([exe, "refuse", "127.0.0.7:27001", info_hash],
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
time.sleep(0.3)
alerts()
t0 = time.time()
h.connect_peer(("127.0.0.7", 27001))
disconnected = None
while time.time() - t0 < 20 and disconnected is None:
    for a in alerts():
        if isinstance(a, (lt.peer_disconnected_alert, lt.peer_error_alert)) and "127.0.0.7" in a.message():
            disconnected = (time.time() - t0, a.message())
    time.sleep(0.01)
out, _ = p.communicate(timeout=60)
print(out)
print("libtorrent saw:", disconnected)
ok &= "OK refuse" in out and disconnected is not None and disconnected[0] < 2.0
def disconnect_of(ip, since, limit=10):
    """Waits for libtorrent to drop a peer at `ip`; returns (seconds, message)."""
    while time.time() - since < limit:
        for a in alerts():
            if isinstance(a, (lt.peer_disconnected_alert, lt.peer_error_alert)) and ip in a.message():
                return (round(time.time() - since, 3), a.message())
        time.sleep(0.01)
    return None

print("--- deaf (rivulet does not listen: libtorrent's SYN is refused with a RESET)")
p = subprocess.Popen([exe, "deaf", "127.0.0.12:27003"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
time.sleep(0.3)
alerts()
t0 = time.time()
h.connect_peer(("127.0.0.12", 27003))
seen = disconnect_of("127.0.0.12", t0)
print(p.communicate(timeout=30)[0].strip())
print("libtorrent saw:", seen)
ok &= seen is not None and seen[0] < 1.0

print("--- forget (rivulet restarts mid-connection: libtorrent's packets get RESETs)")
alerts()
t0 = time.time()
p = subprocess.Popen([exe, "forget", "127.0.0.13:27004", "127.0.0.5:26881", info_hash],
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
seen = disconnect_of("127.0.0.13", t0)
print(p.communicate(timeout=30)[0].strip())
print("libtorrent saw:", seen)
ok &= seen is not None and seen[0] < 2.0 and "reset" in seen[1]

print("--- serve (libtorrent downloads from rivulet)")
d2 = tempfile.mkdtemp(prefix="utp-interop-leech-")
ses2 = lt.session({
    "listen_interfaces": "127.0.0.8:26882",
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "enable_outgoing_tcp": False, "enable_incoming_tcp": False,
    "enable_outgoing_utp": True, "enable_incoming_utp": True,
    "out_enc_policy": 2, "in_enc_policy": 1,
})
p = subprocess.Popen([exe, "serve", "127.0.0.9:27002", info_hash, path, str(piece_len), max_payload],
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
time.sleep(0.3)
h2 = ses2.add_torrent({"ti": lt.torrent_info(ct.generate()), "save_path": d2})
t0 = time.time()
h2.connect_peer(("127.0.0.9", 27002))
while time.time() - t0 < 60 and not h2.status().is_seeding:
    time.sleep(0.01)
took = time.time() - t0
seeding = h2.status().is_seeding
print("libtorrent complete:", seeding, "in %.2f s (%.1f MB/s)" % (took, len(data) / took / 1e6))
same = seeding and open(os.path.join(d2, "file.bin"), "rb").read() == data
print("libtorrent's copy is byte-exact:", same)
ses2.remove_torrent(h2)
try:
    out, _ = p.communicate(timeout=30)
except subprocess.TimeoutExpired:
    p.kill()
    out, _ = p.communicate()
print(out)
ok &= bool(same)
print("INTEROP", "PASSED" if ok else "FAILED")
sys.exit(0 if ok else 1)

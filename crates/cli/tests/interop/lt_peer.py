#!/usr/bin/python3
"""libtorrent peer for rivulet's interop test harness (crates/cli/tests/support).

Run with the Debian python (/usr/bin/python3), which has python3-libtorrent.

  lt_peer.py make SOURCE OUT.torrent PIECE_LENGTH [--hybrid] [--private]
                  [--tracker URL]...
      Make a torrent of SOURCE (a file or a folder), v1-only unless --hybrid,
      hash it from SOURCE's parent folder and write it to OUT.torrent. Each
      --tracker URL is a tier of its own. Prints one JSON object: the v1
      info-hash, piece length, file list and the largest number of files
      (padding excluded, empty files excluded) that one piece touches.

  lt_peer.py peer CONFIG_JSON
      Run one libtorrent session with one torrent, driven over stdin/stdout
      with JSON lines. CONFIG_JSON is an object:
        torrent            path of the .torrent file (this or magnet required)
        magnet             a magnet link to start from instead (metadata from peers)
        save_path          folder of the data (required)
        listen             "IP:PORT" to listen on (PORT 0: any free port)
        utp                use uTP as well as TCP (default false)
        upload_rate_limit, download_rate_limit   bytes/s, 0 = unlimited;
                           when given, every address is put in the global
                           peer class so that loopback peers are throttled
        connect            list of "IP:PORT" to connect to once started
        seed_mode          trust the data without checking it (default false)
        dht                run libtorrent's DHT (default false), set up to work on
                           loopback (no default routers, no per-IP restrictions)
        dht_nodes          list of "IP:PORT" DHT nodes to add (with dht)
        lsd                local service discovery (default false; only inside a
                           test's network namespace)
        encryption         "forced": RC4 only, both ways (pe_forced, allowed level
                           RC4); "enabled" (libtorrent's default); "disabled"
        tcp                use TCP (default true; false leaves uTP only)
      Once listening, prints {"event": "ready", "listen_port": P, ...}.
      Then reads one command per line and answers each with one line:
        {"cmd": "status"}                       -> {"ok": true, "status": {...}}
        {"cmd": "connect", "addr": "IP:PORT"}   -> {"ok": true}
        {"cmd": "set_limits", "upload": N, "download": N} -> {"ok": true}
        {"cmd": "dht_announce"}                 -> {"ok": true} (force_dht_announce)
        {"cmd": "quit"}                         -> {"ok": true}, then exits
      End of input also makes it exit, so it never outlives its driver.

UPnP and NAT-PMP are always off; local peer discovery is off unless asked for
(inside a network namespace); the DHT is off unless asked for, and then it
knows only the nodes given (never the public routers).
"""

import json
import os
import select
import sys
import time

import libtorrent as lt


def file_list(fs):
    out = []
    for i in range(fs.num_files()):
        out.append(
            {
                "path": fs.file_path(i).replace(os.sep, "/"),
                "size": fs.file_size(i),
                "offset": fs.file_offset(i),
                "padding": bool(fs.file_flags(i) & lt.file_storage.flag_pad_file),
            }
        )
    return out


def max_files_per_piece(files, piece_length, total):
    """The largest number of real, non-empty files one piece overlaps."""
    best = 0
    num_pieces = (total + piece_length - 1) // piece_length
    real = [f for f in files if not f["padding"] and f["size"] > 0]
    for p in range(num_pieces):
        start, end = p * piece_length, min((p + 1) * piece_length, total)
        n = sum(1 for f in real if f["offset"] < end and f["offset"] + f["size"] > start)
        best = max(best, n)
    return best


def make(argv):
    if len(argv) < 3:
        raise SystemExit("usage: lt_peer.py make SOURCE OUT.torrent PIECE_LENGTH [...]")
    source = os.path.abspath(argv[0])
    out = argv[1]
    piece_length = int(argv[2])
    hybrid = False
    private = False
    trackers = []
    rest = argv[3:]
    i = 0
    while i < len(rest):
        if rest[i] == "--hybrid":
            hybrid = True
        elif rest[i] == "--private":
            private = True
        elif rest[i] == "--tracker" and i + 1 < len(rest):
            i += 1
            trackers.append(rest[i])
        else:
            raise SystemExit(f"unknown argument {rest[i]!r}")
        i += 1

    fs = lt.file_storage()
    lt.add_files(fs, source)
    if fs.num_files() == 0:
        raise SystemExit(f"no files in {source}")
    flags = 0 if hybrid else lt.create_torrent.v1_only
    ct = lt.create_torrent(fs, piece_length, flags=flags)
    ct.set_creator("libtorrent " + lt.__version__)
    for tier, url in enumerate(trackers):
        ct.add_tracker(url, tier)
    if private:
        ct.set_priv(True)
    lt.set_piece_hashes(ct, os.path.dirname(source))
    data = lt.bencode(ct.generate())
    with open(out, "wb") as f:
        f.write(data)
    ti = lt.torrent_info(out)
    files = file_list(ti.files())
    print(
        json.dumps(
            {
                "info_hash_v1": str(ti.info_hashes().v1),
                "has_v2": ti.info_hashes().has_v2(),
                "name": ti.name(),
                "total_size": ti.total_size(),
                "piece_length": ti.piece_length(),
                "num_pieces": ti.num_pieces(),
                "files": files,
                "max_files_per_piece": max_files_per_piece(
                    files, ti.piece_length(), ti.total_size()
                ),
            }
        )
    )


def split_addr(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def enum_name(v):
    return str(v).rsplit(".", 1)[-1]


class Peer:
    def __init__(self, cfg):
        self.cfg = cfg
        listen = cfg.get("listen", "127.0.0.1:0")
        ip, _ = split_addr(listen)
        utp = bool(cfg.get("utp", False))
        dht = bool(cfg.get("dht", False))
        settings = {
            "listen_interfaces": listen,
            "outgoing_interfaces": ip,
            "enable_dht": dht,
            # Never the public routers; nodes come from dht_nodes only.
            "dht_bootstrap_nodes": "",
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_block_ratelimit": 100000,
            "enable_lsd": bool(cfg.get("lsd", False)),
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": utp,
            "enable_incoming_utp": utp,
            "enable_outgoing_tcp": bool(cfg.get("tcp", True)),
            "enable_incoming_tcp": bool(cfg.get("tcp", True)),
            "allow_multiple_connections_per_ip": True,
            "announce_to_all_trackers": True,
            "announce_to_all_tiers": True,
            "alert_mask": lt.alert.category_t.status_notification
            | lt.alert.category_t.error_notification
            | lt.alert.category_t.storage_notification
            | lt.alert.category_t.tracker_notification,
        }
        enc = cfg.get("encryption", "enabled")
        policy = {
            "forced": lt.enc_policy.pe_forced,
            "enabled": lt.enc_policy.pe_enabled,
            "disabled": lt.enc_policy.pe_disabled,
        }[enc]
        settings["out_enc_policy"] = int(policy)
        settings["in_enc_policy"] = int(policy)
        if enc == "forced":
            settings["allowed_enc_level"] = int(lt.enc_level.rc4)
            settings["prefer_rc4"] = True
        self.ses = lt.session(settings)
        self.announces = []
        self.tracker_errors = []
        self.errors = []
        self.hash_failures = 0
        self.checked = False
        self.finished = False
        self.listen_port = None

        self.wait_listening()
        for node in cfg.get("dht_nodes", []):
            self.ses.add_dht_node(split_addr(node))
        up = int(cfg.get("upload_rate_limit", 0) or 0)
        down = int(cfg.get("download_rate_limit", 0) or 0)
        if up or down:
            self.set_limits(up, down)

        if cfg.get("magnet"):
            params = lt.parse_magnet_uri(cfg["magnet"])
            params.save_path = cfg["save_path"]
            self.handle = self.ses.add_torrent(params)
            self.info_hash_v1 = str(params.info_hashes.v1)
        else:
            ti = lt.torrent_info(cfg["torrent"])
            params = {"ti": ti, "save_path": cfg["save_path"]}
            if cfg.get("seed_mode"):
                params["flags"] = lt.torrent_flags.seed_mode | lt.torrent_flags.auto_managed
            self.handle = self.ses.add_torrent(params)
            self.info_hash_v1 = str(ti.info_hashes().v1)
        for addr in cfg.get("connect", []):
            self.connect(addr)

    def wait_listening(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.ses.wait_for_alert(100)
            for a in self.ses.pop_alerts():
                if isinstance(a, lt.listen_failed_alert):
                    raise SystemExit("listen failed: " + a.message())
                if isinstance(a, lt.listen_succeeded_alert):
                    if enum_name(a.socket_type).lower().startswith("tcp"):
                        self.listen_port = a.port
                        return
        raise SystemExit("libtorrent did not start listening within 30 s")

    def set_limits(self, up, down):
        self.ses.apply_settings(
            {"upload_rate_limit": int(up), "download_rate_limit": int(down)}
        )
        # Loopback peers are in the "local" peer class, which ignores rate
        # limits: put every address in the global class instead.
        f = lt.ip_filter()
        global_class = 1 << lt.session.global_peer_class_id
        f.add_rule("0.0.0.0", "255.255.255.255", global_class)
        f.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", global_class)
        self.ses.set_peer_class_filter(f)

    def connect(self, addr):
        self.handle.connect_peer(split_addr(addr))

    def drain(self):
        for a in self.ses.pop_alerts():
            if isinstance(a, lt.tracker_reply_alert):
                self.announces.append({"url": a.tracker_url(), "num_peers": a.num_peers})
            elif isinstance(a, lt.tracker_error_alert):
                self.tracker_errors.append({"url": a.tracker_url(), "message": a.message()})
            elif isinstance(a, lt.torrent_checked_alert):
                self.checked = True
            elif isinstance(a, lt.torrent_finished_alert):
                self.finished = True
            elif isinstance(a, lt.hash_failed_alert):
                self.hash_failures += 1
            elif isinstance(
                a, (lt.torrent_error_alert, lt.file_error_alert, lt.listen_failed_alert)
            ):
                self.errors.append(a.message())

    def status(self):
        self.drain()
        st = self.handle.status()
        peers = []
        for p in self.handle.get_peer_info():
            client = p.client
            if isinstance(client, bytes):
                client = client.decode("utf-8", "replace")
            peers.append(
                {
                    "ip": p.ip[0],
                    "port": p.ip[1],
                    "client": client,
                    "up": p.total_upload,
                    "down": p.total_download,
                    "seed": bool(p.flags & lt.peer_info.seed),
                    "outgoing": bool(p.flags & lt.peer_info.local_connection),
                    "rc4": bool(p.flags & lt.peer_info.rc4_encrypted),
                    "obfuscated": bool(p.flags & lt.peer_info.plaintext_encrypted),
                }
            )
        errors = list(self.errors)
        if st.errc.value() != 0:
            errors.append(st.errc.message())
        return {
            "state": enum_name(st.state),
            "progress": st.progress,
            "is_seeding": bool(st.is_seeding),
            "has_metadata": bool(st.has_metadata),
            "dht_nodes": self.ses.status().dht_nodes,
            "is_finished": bool(st.is_finished),
            "checked": self.checked,
            "finished_alert": self.finished,
            "num_peers": st.num_peers,
            "num_seeds": st.num_seeds,
            "total_done": st.total_done,
            "total_wanted": st.total_wanted,
            "total_upload": st.total_upload,
            "total_download": st.total_download,
            "total_payload_upload": st.total_payload_upload,
            "total_payload_download": st.total_payload_download,
            "hash_failures": self.hash_failures,
            "announces": self.announces,
            "tracker_errors": self.tracker_errors,
            "errors": errors,
            "peers": peers,
        }


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def run_peer(cfg):
    peer = Peer(cfg)
    reply(
        {
            "event": "ready",
            "listen_port": peer.listen_port,
            "info_hash_v1": peer.info_hash_v1,
            "lt_version": lt.__version__,
        }
    )
    fd = sys.stdin.fileno()
    buf = b""
    while True:
        readable, _, _ = select.select([fd], [], [], 0.2)
        peer.drain()
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return  # our driver is gone
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                cmd = json.loads(line)
                name = cmd.get("cmd")
                if name == "status":
                    reply({"ok": True, "status": peer.status()})
                elif name == "connect":
                    peer.connect(cmd["addr"])
                    reply({"ok": True})
                elif name == "dht_announce":
                    peer.handle.force_dht_announce()
                    reply({"ok": True})
                elif name == "set_limits":
                    peer.set_limits(cmd.get("upload", 0), cmd.get("download", 0))
                    reply({"ok": True})
                elif name == "quit":
                    reply({"ok": True})
                    return
                else:
                    reply({"ok": False, "error": f"unknown command {name!r}"})
            except Exception as e:  # report, keep serving
                reply({"ok": False, "error": f"{type(e).__name__}: {e}"})


def main(argv):
    if len(argv) >= 1 and argv[0] == "make":
        make(argv[1:])
    elif len(argv) == 2 and argv[0] == "peer":
        run_peer(json.loads(argv[1]))
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/python3
"""libtorrent side of rivulet's interop tests (crates/cli/tests/interop_create.rs).

Run with the Debian python (/usr/bin/python3), which has python3-libtorrent.

  lt_helper.py inspect TORRENT SAVE_PATH [TIMEOUT_SECS]
      Load TORRENT with lt.torrent_info and print what libtorrent reads from it,
      then add it to a session whose save_path is SAVE_PATH, wait until the
      initial check of the data on disk is over (or TIMEOUT_SECS, default 60,
      pass), and print the final torrent status. One JSON object on stdout.

  lt_helper.py make-hybrid SOURCE OUT.torrent [PIECE_LENGTH]
      Make a torrent of SOURCE with libtorrent's default flags (a hybrid v1+v2
      torrent, whose v1 part has padding files), hash it from SOURCE's parent
      folder and write it to OUT.torrent. Prints a JSON object with the v1
      info-hash and the file list.

Exit status 0 on success; anything else (with a message on stderr) on error.
"""

import json
import os
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
                "padding": bool(fs.file_flags(i) & lt.file_storage.flag_pad_file),
            }
        )
    return out


def describe(ti):
    tiers = {}
    for t in ti.trackers():
        tiers.setdefault(t.tier, []).append(t.url)
    return {
        "lt_version": lt.__version__,
        "info_hash_v1": str(ti.info_hashes().v1),
        "has_v2": ti.info_hashes().has_v2(),
        "name": ti.name(),
        "total_size": ti.total_size(),
        "num_pieces": ti.num_pieces(),
        "piece_length": ti.piece_length(),
        "private": bool(ti.priv()),
        "creation_date": ti.creation_date(),
        "comment": ti.comment(),
        "creator": ti.creator(),
        "trackers": [tiers[k] for k in sorted(tiers)],
        "web_seeds": [w["url"] for w in ti.web_seeds()],
        "files": file_list(ti.files()),
    }


def inspect(torrent, save_path, timeout):
    ti = lt.torrent_info(torrent)
    result = describe(ti)

    settings = {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": lt.alert.category_t.status_notification
        | lt.alert.category_t.error_notification
        | lt.alert.category_t.storage_notification,
    }
    ses = lt.session(settings)
    h = ses.add_torrent({"ti": ti, "save_path": save_path})

    # Wait for libtorrent's own "check of the files on disk is over" signal
    # (torrent_checked_alert), or an error, with a deadline.
    deadline = time.monotonic() + timeout
    checked = False
    errors = []
    while not checked and time.monotonic() < deadline:
        ses.wait_for_alert(100)
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_checked_alert):
                checked = True
            elif isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                errors.append(a.message())
        if errors:
            break

    st = h.status()
    result["status"] = {
        "state": str(st.state).rsplit(".", 1)[-1],
        "is_seeding": bool(st.is_seeding),
        "progress": st.progress,
        "num_pieces": st.num_pieces,
        "total_done": st.total_done,
        "checked": checked,
        "errors": errors + ([st.errc.message()] if st.errc.value() != 0 else []),
    }
    ses.remove_torrent(h)
    print(json.dumps(result))


def make_hybrid(source, out, piece_length):
    source = os.path.abspath(source)
    fs = lt.file_storage()
    lt.add_files(fs, source)
    if fs.num_files() == 0:
        raise SystemExit(f"no files in {source}")
    ct = lt.create_torrent(fs, piece_length)  # default flags: v1+v2 hybrid
    ct.set_creator("libtorrent " + lt.__version__)
    lt.set_piece_hashes(ct, os.path.dirname(source))
    data = lt.bencode(ct.generate())
    with open(out, "wb") as f:
        f.write(data)
    ti = lt.torrent_info(out)
    print(json.dumps(describe(ti)))


def main(argv):
    if len(argv) >= 3 and argv[0] == "inspect":
        timeout = float(argv[3]) if len(argv) > 3 else 60.0
        inspect(argv[1], argv[2], timeout)
    elif len(argv) >= 3 and argv[0] == "make-hybrid":
        piece_length = int(argv[3]) if len(argv) > 3 else 0
        make_hybrid(argv[1], argv[2], piece_length)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

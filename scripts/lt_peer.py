#!/usr/bin/python3
"""A libtorrent peer for benchmarks: seed or leech one torrent on a loopback
address, with DHT, LSD, UPnP, NAT-PMP and uTP off.

  lt_peer.py seed  TORRENT SAVE_PATH IP PORT   # prints "ready" once announced, runs until killed
  lt_peer.py leech TORRENT SAVE_PATH IP PORT   # exits 0 once the download is complete
"""
import sys
import time

import libtorrent as lt

mode, torrent, save, ip, port = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
settings = {
    'listen_interfaces': f'{ip}:{port}',
    'outgoing_interfaces': ip,
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'allow_multiple_connections_per_ip': True,
    # TCP only, like the other clients measured: libtorrent would otherwise
    # prefer uTP between two libtorrent peers, which is far slower on loopback.
    'enable_outgoing_utp': False, 'enable_incoming_utp': False,
    'alert_mask': lt.alert.category_t.status_notification | lt.alert.category_t.tracker_notification
                  | lt.alert.category_t.error_notification,
}
s = lt.session(settings)
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
deadline = time.time() + 600
announced = False
while time.time() < deadline:
    for a in s.pop_alerts():
        if isinstance(a, lt.tracker_reply_alert):
            announced = True
    st = h.status()
    if mode == 'seed' and st.is_seeding and announced:
        print('ready', flush=True)
        while True:
            time.sleep(3600)
    if mode == 'leech' and st.is_seeding:
        sys.exit(0)
    s.wait_for_alert(100)
sys.exit(1)

#!/usr/bin/python3
"""A libtorrent peer for benchmarks: seed or leech one torrent on a loopback
address, with DHT, LSD, UPnP, NAT-PMP and uTP off.

  lt_peer.py seed  TORRENT SAVE_PATH IP PORT          # prints "ready" once seeding (and announced,
                                                      # if the torrent has trackers); runs until killed
  lt_peer.py leech TORRENT SAVE_PATH IP PORT [PEER]   # exits 0 once the download is complete
                                                      # (TORRENT may be a magnet link)

With PEER (IP:PORT) the leecher connects to that peer directly (no tracker
needed) and, when done, prints one line
  "done connect_to_done S add_to_done S payload BYTES"
where connect_to_done runs from its first outgoing connection to the peer
until all pieces are downloaded and checked.

A seeder connects to every IP:PORT listed in the file TORRENT.connect (one a
line) when it receives SIGUSR1: for a client that takes no loopback peers
from a tracker (Transmission), the seeders go to it instead.

Encryption is libtorrent's default (MSE accepted and offered, plaintext
preferred once the handshake is through); with LT_ENC=forced in the
environment the peer makes and accepts RC4-encrypted connections only.
LT_UTP=1 turns uTP on (both ways; libtorrent then tries it first), and
LT_TCP=0 turns TCP off.
"""
import os
import signal
import sys
import time

import libtorrent as lt

mode, torrent, save, ip, port = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
peer = None
if len(sys.argv) > 6:
    peer_ip, peer_port = sys.argv[6].rsplit(':', 1)
    peer = (peer_ip, int(peer_port))
settings = {
    'listen_interfaces': f'{ip}:{port}',
    'outgoing_interfaces': ip,
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'allow_multiple_connections_per_ip': True,
    # TCP only, like the other clients measured: libtorrent would otherwise
    # prefer uTP between two libtorrent peers, which is far slower on loopback.
    'enable_outgoing_utp': False, 'enable_incoming_utp': False,
    'alert_mask': lt.alert.category_t.status_notification | lt.alert.category_t.tracker_notification
                  | lt.alert.category_t.error_notification | lt.alert.category_t.connect_notification,
}
if os.environ.get('LT_UTP') == '1':
    settings.update({'enable_outgoing_utp': True, 'enable_incoming_utp': True})
if os.environ.get('LT_TCP') == '0':
    settings.update({'enable_outgoing_tcp': False, 'enable_incoming_tcp': False})
if os.environ.get('LT_ENC') == 'forced':
    settings.update({
        'out_enc_policy': int(lt.enc_policy.pe_forced),
        'in_enc_policy': int(lt.enc_policy.pe_forced),
        'allowed_enc_level': int(lt.enc_level.rc4),
        'prefer_rc4': True,
    })
s = lt.session(settings)
if torrent.startswith('magnet:'):
    # A magnet link (leech only): the metadata comes from peers, such as
    # the link's x.pe.
    params = lt.parse_magnet_uri(torrent)
    params.save_path = save
    if peer:
        params.peers = [peer]
    trackers = list(params.trackers)
else:
    info = lt.torrent_info(torrent)
    params = {'ti': info, 'save_path': save}
    if peer:
        params['peers'] = [peer]
    trackers = list(info.trackers())
added = time.monotonic()
h = s.add_torrent(params)
deadline = time.time() + 600
announced = not trackers  # nothing to announce to: ready once seeding
connected = None
finished = False
while time.time() < deadline:
    for a in s.pop_alerts():
        if isinstance(a, lt.tracker_reply_alert):
            announced = True
        elif isinstance(a, lt.peer_connect_alert) and connected is None:
            connected = time.monotonic()
        elif isinstance(a, lt.torrent_finished_alert):
            finished = True
    st = h.status()
    if mode == 'seed' and st.is_seeding and announced:
        def connect(*_):
            with open(torrent + '.connect') as f:
                for line in f:
                    if line.strip():
                        addr, p = line.strip().rsplit(':', 1)
                        h.connect_peer((addr, int(p)), 1, 0)  # from a tracker; TCP
        signal.signal(signal.SIGUSR1, connect)
        print('ready', flush=True)
        while True:
            time.sleep(3600)
    if mode == 'leech' and (finished or st.is_seeding):
        if peer:
            now = time.monotonic()
            print(f'done connect_to_done {now - (connected or added):.3f} add_to_done {now - added:.3f}'
                  f' payload {st.total_payload_download}', flush=True)
        sys.exit(0)
    s.wait_for_alert(100)
sys.exit(1)

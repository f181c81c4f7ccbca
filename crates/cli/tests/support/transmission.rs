//! transmission-daemon 3.00, driven with `transmission-remote` and its RPC.
//!
//! Transmission 3.00 accepts incoming connections from 127.0.0.x but never
//! connects out to peers on 127.0.0.0/8 (it treats them as martian), so on
//! loopback it can only seed: its leechers must connect to it
//! ([`TransmissionDaemon::peer_addr`]), or find it through a tracker.
//! It also unchokes a new peer only at its next rechoke, up to about 10 s
//! after the peer connects.
//!
//! As a leecher it runs in a network namespace ([`TransmissionDaemon::start_in`]),
//! where the seeder and tracker have addresses outside 127.0.0.0/8; its RPC
//! port is then reached through the namespace's relay.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::http;
use super::netns::Netns;
use super::{free_port, is_listening, poll_until, require_program, Proc};

/// Transmission's torrent status codes (RPC `status`).
pub mod status {
    /// Stopped (paused).
    pub const STOPPED: i64 = 0;
    /// Queued to check its data.
    pub const CHECK_WAIT: i64 = 1;
    /// Checking its data.
    pub const CHECK: i64 = 2;
    /// Queued to download.
    pub const DOWNLOAD_WAIT: i64 = 3;
    /// Downloading.
    pub const DOWNLOAD: i64 = 4;
    /// Queued to seed.
    pub const SEED_WAIT: i64 = 5;
    /// Seeding.
    pub const SEED: i64 = 6;
}

/// One torrent, as the RPC `torrent-get` reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrTorrent {
    /// Transmission's id of the torrent.
    pub id: i64,
    /// Name.
    pub name: String,
    /// v1 info-hash, hex.
    pub hash_string: String,
    /// See [`status`].
    pub status: i64,
    /// 0.0 to 1.0, of the wanted data.
    pub percent_done: f64,
    /// Verified bytes.
    pub have_valid: u64,
    /// Total size.
    pub total_size: u64,
    /// Bytes still wanted.
    pub left_until_done: u64,
    /// Error code (0: none).
    pub error: i64,
    /// Error text.
    pub error_string: String,
    /// Connected peers.
    pub peers_connected: i64,
    /// Bytes uploaded, all time.
    pub uploaded_ever: u64,
    /// Bytes downloaded, all time.
    pub downloaded_ever: u64,
    /// Per-tracker announce state (raw RPC objects).
    pub tracker_stats: Vec<Value>,
    /// Connected peers (raw RPC objects: `address`, `port`, `clientName`,
    /// `progress`, ...).
    pub peers: Vec<Value>,
}

impl TrTorrent {
    /// Seeding with all the data verified.
    pub fn is_seeding_complete(&self) -> bool {
        self.status == status::SEED && self.have_valid == self.total_size && self.error == 0
    }

    /// Every byte downloaded and verified (a leecher that is done).
    pub fn is_complete(&self) -> bool {
        self.left_until_done == 0 && self.have_valid == self.total_size && self.error == 0
    }

    /// Whether a tracker has answered an announce.
    pub fn announced(&self) -> bool {
        self.tracker_stats
            .iter()
            .any(|t| t["lastAnnounceSucceeded"] == Value::Bool(true))
    }
}

/// A running `transmission-daemon` with its own config folder, bound to one
/// address (peers) and 127.0.0.1 (RPC). Killed on drop.
pub struct TransmissionDaemon {
    proc: Proc,
    ip: Ipv4Addr,
    peer_port: u16,
    rpc_port: u16,
    /// Where the test reaches the RPC: 127.0.0.1:rpc_port, or a relay to it
    /// when the daemon runs in a network namespace.
    rpc_addr: SocketAddr,
    download_dir: PathBuf,
    session_id: String,
    // Dropped after `proc`.
    conf: tempfile::TempDir,
    netns: Option<Arc<Netns>>,
}

impl TransmissionDaemon {
    /// Starts transmission-daemon with peers on `ip` (a free port) and data
    /// in `download_dir`; returns once both its RPC and peer ports answer.
    pub fn start(ip: Ipv4Addr, download_dir: &Path) -> TransmissionDaemon {
        TransmissionDaemon::start_with(ip, download_dir, None, json!({}))
    }

    /// Starts transmission-daemon inside `netns`, with peers on `ip` (an
    /// address of the namespace) and its RPC on the namespace's 127.0.0.1,
    /// reached through a relay. There it can leech: its seeders are not on
    /// 127.0.0.0/8, which it refuses to connect to.
    pub fn start_in(netns: &Arc<Netns>, ip: Ipv4Addr, download_dir: &Path) -> TransmissionDaemon {
        TransmissionDaemon::start_with(ip, download_dir, Some(Arc::clone(netns)), json!({}))
    }

    /// As [`TransmissionDaemon::start`] or [`TransmissionDaemon::start_in`],
    /// with `extra` merged into settings.json (e.g. `{"encryption": 2}`:
    /// encrypted peers only).
    pub fn start_with(
        ip: Ipv4Addr,
        download_dir: &Path,
        netns: Option<Arc<Netns>>,
        extra: Value,
    ) -> TransmissionDaemon {
        require_program("transmission-daemon", "transmission-daemon");
        require_program("transmission-remote", "transmission-cli");
        let conf = tempfile::Builder::new()
            .prefix("rivulet-transmission-")
            .tempdir()
            .unwrap();
        let (peer_port, rpc_port) = match &netns {
            Some(ns) => (ns.next_port(), ns.next_port()),
            None => (free_port(ip), free_port(Ipv4Addr::LOCALHOST)),
        };
        let settings = json!({
            "bind-address-ipv4": ip.to_string(),
            "bind-address-ipv6": "::1",
            "peer-port": peer_port,
            "peer-port-random-on-start": false,
            "rpc-enabled": true,
            "rpc-bind-address": "127.0.0.1",
            "rpc-port": rpc_port,
            "rpc-whitelist": "127.0.0.1",
            "rpc-whitelist-enabled": true,
            "rpc-host-whitelist-enabled": false,
            "rpc-authentication-required": false,
            "dht-enabled": false,
            "lpd-enabled": false,
            "utp-enabled": false,
            "pex-enabled": false,
            "port-forwarding-enabled": false,
            "blocklist-enabled": false,
            "download-dir": download_dir,
            "incomplete-dir-enabled": false,
            "watch-dir-enabled": false,
            "rename-partial-files": false,
            "start-added-torrents": true,
            "download-queue-enabled": false,
            "seed-queue-enabled": false,
            "queue-stalled-enabled": false,
            "ratio-limit-enabled": false,
            "idle-seeding-limit-enabled": false,
            "speed-limit-up-enabled": false,
            "speed-limit-down-enabled": false,
            "alt-speed-enabled": false,
            "message-level": 2,
        });
        let mut settings = settings;
        if let (Some(s), Some(e)) = (settings.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let utp = settings["utp-enabled"].as_bool().unwrap_or(false);
        fs::write(
            conf.path().join("settings.json"),
            serde_json::to_string_pretty(&settings).unwrap(),
        )
        .unwrap();
        let mut cmd = match &netns {
            Some(ns) => ns.command("transmission-daemon"),
            None => Command::new("transmission-daemon"),
        };
        cmd.arg("-f")
            .arg("-g")
            .arg(conf.path())
            .args(["-O", "-Y", "-M", "-T"])
            .arg(if utp { "--utp" } else { "--no-utp" })
            .arg("-P")
            .arg(peer_port.to_string())
            .arg("-p")
            .arg(rpc_port.to_string())
            .arg("-w")
            .arg(download_dir)
            .arg("-i")
            .arg(ip.to_string())
            .arg("-r")
            .arg("127.0.0.1")
            .arg("-a")
            .arg("127.0.0.1");
        let mut proc = Proc::spawn(&format!("transmission-daemon@{ip}:{peer_port}"), &mut cmd);
        let rpc = SocketAddr::from((Ipv4Addr::LOCALHOST, rpc_port));
        let peer = SocketAddr::from((ip, peer_port));
        let rpc_addr = match &netns {
            Some(ns) => ns.forward(rpc),
            None => rpc,
        };
        poll_until(
            &format!("{} to listen", proc.name()),
            Duration::from_secs(15),
            || {
                proc.assert_running();
                let up = match &netns {
                    // Any HTTP answer (409 asks for a session id) through
                    // the relay means the RPC port is up.
                    Some(ns) => {
                        http::get(rpc_addr, "/transmission/rpc").is_ok_and(|r| r.status > 0)
                            && ns.is_listening(peer)
                    }
                    None => is_listening(rpc) && is_listening(peer),
                };
                if up {
                    Ok(())
                } else {
                    Err(proc.output())
                }
            },
        );
        TransmissionDaemon {
            proc,
            ip,
            peer_port,
            rpc_port,
            rpc_addr,
            download_dir: download_dir.to_path_buf(),
            session_id: String::new(),
            conf,
            netns,
        }
    }

    /// Where it accepts peers.
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.peer_port))
    }

    /// Its RPC port on 127.0.0.1.
    pub fn rpc_port(&self) -> u16 {
        self.rpc_port
    }

    /// The running process (output, command line).
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Where the test reaches its RPC (127.0.0.1:RPCPORT, or the relay to it
    /// when it runs in a network namespace).
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    /// Runs `transmission-remote RPCADDR ARGS...` and returns its stdout;
    /// fails the test if it fails.
    pub fn remote(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("transmission-remote");
        cmd.arg(self.rpc_addr.to_string()).args(args);
        let o = cmd.output().expect("run transmission-remote");
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success() && !stdout.contains("Error"),
            "`{}` failed ({}):\n{stdout}{}",
            super::command_line(&cmd),
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        stdout
    }

    /// Adds `torrent` (`transmission-remote -a`); its data is looked for in
    /// the download folder. Returns the torrent's v1 info-hash (hex) as
    /// Transmission reads it.
    pub fn add_torrent(&mut self, torrent: &Path) -> String {
        let before: Vec<i64> = self.torrents().iter().map(|t| t.id).collect();
        let out = self.remote(&["-a", &torrent.to_string_lossy()]);
        assert!(out.contains("success"), "transmission-remote -a: {out}");
        let added = self
            .torrents()
            .into_iter()
            .find(|t| !before.contains(&t.id))
            .expect("the added torrent is listed");
        added.hash_string
    }

    /// Calls the RPC `method` with `arguments`, handling the session-id
    /// handshake; returns the answer's `arguments`.
    pub fn rpc(&mut self, method: &str, arguments: Value) -> Value {
        let body = json!({"method": method, "arguments": arguments}).to_string();
        let addr = self.rpc_addr;
        for _ in 0..3 {
            let r = http::request(
                addr,
                "POST",
                "/transmission/rpc",
                &[("X-Transmission-Session-Id", &self.session_id)],
                body.as_bytes(),
            )
            .unwrap_or_else(|e| panic!("transmission RPC {method}: {e}"));
            if r.status == 409 {
                self.session_id = r
                    .header("x-transmission-session-id")
                    .expect("409 carries a session id")
                    .to_owned();
                continue;
            }
            let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
                panic!(
                    "transmission RPC {method}: HTTP {} {e}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                )
            });
            assert_eq!(v["result"], "success", "transmission RPC {method}: {v}");
            return v["arguments"].clone();
        }
        panic!("transmission RPC {method}: no session id accepted");
    }

    /// Every torrent's state.
    pub fn torrents(&mut self) -> Vec<TrTorrent> {
        let fields = [
            "id",
            "name",
            "hashString",
            "status",
            "percentDone",
            "haveValid",
            "totalSize",
            "leftUntilDone",
            "error",
            "errorString",
            "peersConnected",
            "uploadedEver",
            "downloadedEver",
            "trackerStats",
            "peers",
        ];
        let args = self.rpc("torrent-get", json!({ "fields": fields }));
        serde_json::from_value(args["torrents"].clone())
            .unwrap_or_else(|e| panic!("torrent-get: {e}: {args}"))
    }

    /// The torrent with v1 info-hash `info_hash_hex`.
    pub fn torrent(&mut self, info_hash_hex: &str) -> TrTorrent {
        let want = info_hash_hex.to_ascii_lowercase();
        self.torrents()
            .into_iter()
            .find(|t| t.hash_string.to_ascii_lowercase() == want)
            .unwrap_or_else(|| panic!("transmission has no torrent {want}"))
    }

    /// Polls the torrent `info_hash_hex` until `pred` holds. Fails the test
    /// after `timeout` or if Transmission reports an error for it.
    pub fn wait_until(
        &mut self,
        info_hash_hex: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&TrTorrent) -> bool,
    ) -> TrTorrent {
        let name = self.proc.name().to_owned();
        poll_until(&format!("{name}: {what}"), timeout, || {
            self.proc.assert_running();
            let t = self.torrent(info_hash_hex);
            assert!(t.error == 0, "{name}: torrent error: {t:#?}");
            if pred(&t) {
                Ok(t)
            } else {
                Err(format!("{t:#?}"))
            }
        })
    }

    /// Waits until the torrent has checked all its data and is seeding.
    /// If Transmission did not check the data by itself on adding, asks it
    /// to (`torrent-verify`) once.
    pub fn wait_seeding(&mut self, info_hash_hex: &str, timeout: Duration) -> TrTorrent {
        let t = self.torrent(info_hash_hex);
        if t.status != status::CHECK && t.status != status::CHECK_WAIT && t.have_valid == 0 {
            self.rpc("torrent-verify", json!({ "ids": [t.id] }));
        }
        self.wait_until(
            info_hash_hex,
            "seeding",
            timeout,
            TrTorrent::is_seeding_complete,
        )
    }

    /// Waits until a tracker has answered one of its announces.
    pub fn wait_announced(&mut self, info_hash_hex: &str, timeout: Duration) -> TrTorrent {
        self.wait_until(
            info_hash_hex,
            "a tracker reply",
            timeout,
            TrTorrent::announced,
        )
    }

    /// Limits its overall download and upload speeds (KB/s, as Transmission
    /// counts them: 1000 bytes; `None`: no limit).
    pub fn set_speed_limits(&mut self, down_kbps: Option<u64>, up_kbps: Option<u64>) {
        self.rpc(
            "session-set",
            json!({
                "speed-limit-down": down_kbps.unwrap_or(0),
                "speed-limit-down-enabled": down_kbps.is_some(),
                "speed-limit-up": up_kbps.unwrap_or(0),
                "speed-limit-up-enabled": up_kbps.is_some(),
            }),
        );
    }

    /// Waits until the torrent has downloaded and verified every byte.
    pub fn wait_complete(&mut self, info_hash_hex: &str, timeout: Duration) -> TrTorrent {
        self.wait_until(info_hash_hex, "complete", timeout, TrTorrent::is_complete)
    }

    /// Adds `torrent`, whose data is in the download folder, and waits
    /// until it seeds. Returns its info-hash.
    pub fn seed(&mut self, torrent: &Path, timeout: Duration) -> String {
        let hash = self.add_torrent(torrent);
        self.wait_seeding(&hash, timeout);
        hash
    }
}

//! A libtorrent 2.0 peer: `tests/interop/lt_peer.py peer` run by
//! `/usr/bin/python3`, driven with JSON lines over its stdin and stdout.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, ChildStdin, Command};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::netns::Netns;
use super::{interop_dir, poll_until, require_libtorrent, spawn_line_child, LineChild, PYTHON};

/// How long a command may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start an [`LtPeer`].
#[derive(Debug, Clone)]
pub struct LtConfig {
    /// Address to listen on and to connect from.
    pub ip: Ipv4Addr,
    /// Port to listen on; 0 lets libtorrent pick one (see [`LtPeer::addr`]).
    pub port: u16,
    /// Upload limit in bytes/s, 0 = none. Any limit puts every address,
    /// loopback included, in libtorrent's global peer class.
    pub upload_rate_limit: u64,
    /// Download limit in bytes/s, 0 = none.
    pub download_rate_limit: u64,
    /// Peers to connect to once started.
    pub connect: Vec<SocketAddr>,
    /// Use uTP as well as TCP (default: TCP only).
    pub utp: bool,
    /// Trust the data on disk without checking it.
    pub seed_mode: bool,
    /// Run libtorrent's DHT, knowing only `dht_nodes` (never the public
    /// routers).
    pub dht: bool,
    /// DHT nodes to add at start.
    pub dht_nodes: Vec<SocketAddr>,
    /// Local service discovery (only inside a network namespace).
    pub lsd: bool,
    /// Run inside this network namespace (`ip` is then one of its
    /// addresses); default: the host's.
    pub netns: Option<Arc<Netns>>,
    /// libtorrent's encryption policy: `enabled` (its default), `forced`
    /// (RC4 only, both ways) or `disabled`.
    pub encryption: &'static str,
    /// Use TCP (false: uTP only).
    pub tcp: bool,
}

impl LtConfig {
    /// Listen on `ip`, any port, TCP only, no limits.
    pub fn new(ip: Ipv4Addr) -> LtConfig {
        LtConfig {
            ip,
            port: 0,
            upload_rate_limit: 0,
            download_rate_limit: 0,
            connect: Vec::new(),
            utp: false,
            seed_mode: false,
            dht: false,
            dht_nodes: Vec::new(),
            lsd: false,
            netns: None,
            encryption: "enabled",
            tcp: true,
        }
    }

    /// Accept and make RC4-encrypted connections only (`pe_forced`).
    pub fn encryption_forced(mut self) -> LtConfig {
        self.encryption = "forced";
        self
    }

    /// Runs local service discovery; only inside `netns` (multicast must not
    /// leave the test's own network).
    pub fn lsd_in(mut self, netns: &Arc<Netns>) -> LtConfig {
        self.lsd = true;
        self.netns(netns)
    }

    /// Runs the DHT, knowing the nodes `nodes` at start.
    pub fn dht(mut self, nodes: &[SocketAddr]) -> LtConfig {
        self.dht = true;
        self.dht_nodes = nodes.to_vec();
        self
    }

    /// Runs inside `netns` (`ip` must be one of its addresses).
    pub fn netns(mut self, netns: &Arc<Netns>) -> LtConfig {
        self.netns = Some(Arc::clone(netns));
        self
    }

    /// Listen on `port`.
    pub fn port(mut self, port: u16) -> LtConfig {
        self.port = port;
        self
    }

    /// Limit upload and download to these rates (bytes/s, 0 = none).
    pub fn rate_limit(mut self, upload: u64, download: u64) -> LtConfig {
        self.upload_rate_limit = upload;
        self.download_rate_limit = download;
        self
    }

    /// Connect to `peer` once started.
    pub fn connect(mut self, peer: SocketAddr) -> LtConfig {
        self.connect.push(peer);
        self
    }
}

/// A tracker answer seen by libtorrent (`tracker_reply_alert`).
#[derive(Debug, Clone, Deserialize)]
pub struct LtAnnounce {
    /// The tracker's URL.
    pub url: String,
    /// Peers it returned.
    pub num_peers: i64,
}

/// A tracker error seen by libtorrent (`tracker_error_alert`).
#[derive(Debug, Clone, Deserialize)]
pub struct LtTrackerError {
    /// The tracker's URL.
    pub url: String,
    /// libtorrent's message.
    pub message: String,
}

/// One connected peer.
#[derive(Debug, Clone, Deserialize)]
pub struct LtPeerInfo {
    /// Its IP address.
    pub ip: String,
    /// Its port.
    pub port: u16,
    /// Its client, as libtorrent names it.
    pub client: String,
    /// Bytes sent to it.
    pub up: u64,
    /// Bytes received from it.
    pub down: u64,
    /// It has every piece.
    pub seed: bool,
    /// We connected to it.
    pub outgoing: bool,
    /// The connection is RC4-encrypted.
    #[serde(default)]
    pub rc4: bool,
    /// The connection went through the MSE handshake, then plaintext.
    #[serde(default)]
    pub obfuscated: bool,
}

/// The state of an [`LtPeer`]'s torrent.
#[derive(Debug, Clone, Deserialize)]
pub struct LtStatus {
    /// libtorrent's state name: `checking_files`, `downloading`, `finished`,
    /// `seeding`, ...
    pub state: String,
    /// 0.0 to 1.0.
    pub progress: f64,
    /// Has every piece.
    pub is_seeding: bool,
    /// Has every wanted piece.
    pub is_finished: bool,
    /// Has the torrent's metadata (false while a magnet link's is fetched).
    pub has_metadata: bool,
    /// Nodes in the DHT routing table (0 without DHT).
    pub dht_nodes: i64,
    /// The initial check of the data on disk is over.
    pub checked: bool,
    /// Connected peers.
    pub num_peers: i64,
    /// Connected seeds.
    pub num_seeds: i64,
    /// Verified bytes.
    pub total_done: u64,
    /// Bytes wanted.
    pub total_wanted: u64,
    /// Bytes sent this session (protocol overhead included).
    pub total_upload: u64,
    /// Bytes received this session (protocol overhead included).
    pub total_download: u64,
    /// Payload bytes sent.
    pub total_payload_upload: u64,
    /// Payload bytes received.
    pub total_payload_download: u64,
    /// Pieces that failed their hash check.
    pub hash_failures: u64,
    /// Tracker answers, oldest first.
    pub announces: Vec<LtAnnounce>,
    /// Tracker errors, oldest first.
    pub tracker_errors: Vec<LtTrackerError>,
    /// Torrent, file and listen errors.
    pub errors: Vec<String>,
    /// Connected peers.
    pub peers: Vec<LtPeerInfo>,
}

impl LtStatus {
    /// Whether a tracker has answered an announce.
    pub fn announced(&self) -> bool {
        !self.announces.is_empty()
    }
}

/// A libtorrent session with one torrent, in a python process. Killed on
/// drop; it also exits by itself if the test process goes away.
pub struct LtPeer {
    name: String,
    addr: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    // Keeps the namespace (if any) until the process is gone.
    netns: Option<Arc<Netns>>,
}

impl LtPeer {
    /// Starts a seeder of `torrent` whose data is in `save_path`, and waits
    /// until libtorrent has checked the data and is seeding.
    pub fn seeder(torrent: &Path, save_path: &Path, ip: Ipv4Addr) -> LtPeer {
        let mut p = LtPeer::start(torrent, save_path, LtConfig::new(ip));
        p.wait_seeding(Duration::from_secs(30));
        p
    }

    /// Starts a leecher of `torrent` saving into `save_path`.
    pub fn leecher(torrent: &Path, save_path: &Path, ip: Ipv4Addr) -> LtPeer {
        LtPeer::start(torrent, save_path, LtConfig::new(ip))
    }

    /// Starts libtorrent from a magnet link (`uri`: its metadata comes from
    /// peers) saving into `save_path`, as `cfg` says; returns once it listens.
    pub fn from_magnet(uri: &str, save_path: &Path, cfg: LtConfig) -> LtPeer {
        LtPeer::launch(json!({ "magnet": uri }), save_path, cfg)
    }

    /// Starts libtorrent with `torrent` and `save_path` as `cfg` says, and
    /// returns once it listens. Seeder or leecher depends only on what is in
    /// `save_path`.
    pub fn start(torrent: &Path, save_path: &Path, cfg: LtConfig) -> LtPeer {
        LtPeer::launch(json!({ "torrent": torrent }), save_path, cfg)
    }

    fn launch(source: Value, save_path: &Path, cfg: LtConfig) -> LtPeer {
        require_libtorrent();
        let mut config = json!({
            "save_path": save_path,
            "listen": format!("{}:{}", cfg.ip, cfg.port),
            "utp": cfg.utp,
            "upload_rate_limit": cfg.upload_rate_limit,
            "download_rate_limit": cfg.download_rate_limit,
            "connect": cfg.connect.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "seed_mode": cfg.seed_mode,
            "dht": cfg.dht,
            "lsd": cfg.lsd,
            "encryption": cfg.encryption,
            "tcp": cfg.tcp,
            "dht_nodes": cfg.dht_nodes.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        });
        if let (Some(c), Some(src)) = (config.as_object_mut(), source.as_object()) {
            c.extend(src.clone());
        }
        let mut cmd = match &cfg.netns {
            Some(ns) => ns.command(PYTHON),
            None => Command::new(PYTHON),
        };
        cmd.arg(interop_dir().join("lt_peer.py"))
            .arg("peer")
            .arg(config.to_string());
        let LineChild {
            child,
            stdin,
            lines,
            stderr,
        } = spawn_line_child(&mut cmd);
        let mut peer = LtPeer {
            name: format!("libtorrent@{}", cfg.ip),
            addr: SocketAddr::from((cfg.ip, cfg.port)),
            child,
            stdin,
            lines,
            stderr,
            netns: cfg.netns.clone(),
        };
        let ready = peer.read_answer(Duration::from_secs(30));
        assert_eq!(
            ready.get("event").and_then(Value::as_str),
            Some("ready"),
            "{}: unexpected first line {ready}",
            peer.name
        );
        let port = ready["listen_port"].as_u64().expect("listen_port") as u16;
        peer.addr = SocketAddr::from((cfg.ip, port));
        peer.name = format!("libtorrent@{}", peer.addr);
        peer
    }

    /// Where it listens for peers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What python printed on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn read_answer(&mut self, timeout: Duration) -> Value {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: bad answer {line:?}: {e}", self.name)),
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "{}: no answer within {timeout:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                // Give the stderr reader a moment to finish.
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "{}: python exited ({status:?}); stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            }
        }
    }

    fn command(&mut self, cmd: Value) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin open");
        if let Err(e) = writeln!(stdin, "{cmd}").and_then(|_| stdin.flush()) {
            panic!(
                "{}: cannot send {cmd}: {e}; stderr:\n{}",
                self.name,
                self.stderr()
            );
        }
        let answer = self.read_answer(ANSWER_TIMEOUT);
        if answer.get("ok") != Some(&Value::Bool(true)) {
            panic!("{}: {cmd} failed: {answer}", self.name);
        }
        answer
    }

    /// Announces the torrent on the DHT now.
    pub fn dht_announce(&mut self) {
        self.command(json!({"cmd": "dht_announce"}));
    }

    /// The torrent's state now.
    pub fn status(&mut self) -> LtStatus {
        let mut answer = self.command(json!({"cmd": "status"}));
        serde_json::from_value(answer["status"].take())
            .unwrap_or_else(|e| panic!("{}: bad status: {e}", self.name))
    }

    /// Asks libtorrent to connect to `peer`.
    pub fn connect_peer(&mut self, peer: SocketAddr) {
        self.command(json!({"cmd": "connect", "addr": peer.to_string()}));
    }

    /// Sets upload and download limits (bytes/s, 0 = none); loopback peers
    /// are throttled too.
    pub fn set_rate_limits(&mut self, upload: u64, download: u64) {
        self.command(json!({"cmd": "set_limits", "upload": upload, "download": download}));
    }

    /// Polls [`LtPeer::status`] until `pred` holds, and returns that status.
    /// Fails the test after `timeout`, or at once if libtorrent reports a
    /// torrent or file error.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&LtStatus) -> bool,
    ) -> LtStatus {
        let name = self.name.clone();
        poll_until(&format!("{name}: {what}"), timeout, || {
            let st = self.status();
            assert!(
                st.errors.is_empty(),
                "{name}: errors while waiting for {what}: {st:#?}"
            );
            if pred(&st) {
                Ok(st)
            } else {
                Err(format!("{st:#?}"))
            }
        })
    }

    /// Waits until it has every piece and is seeding.
    pub fn wait_seeding(&mut self, timeout: Duration) -> LtStatus {
        self.wait_until("seeding", timeout, |s| s.is_seeding && s.state == "seeding")
    }

    /// Waits until progress is at least `progress` (0.0 to 1.0).
    pub fn wait_progress(&mut self, progress: f64, timeout: Duration) -> LtStatus {
        self.wait_until(&format!("progress >= {progress}"), timeout, |s| {
            s.progress >= progress
        })
    }

    /// Waits until a tracker has answered an announce.
    pub fn wait_announced(&mut self, timeout: Duration) -> LtStatus {
        self.wait_until("a tracker reply", timeout, LtStatus::announced)
    }

    /// Waits until at least `n` peers are connected.
    pub fn wait_peers(&mut self, n: i64, timeout: Duration) -> LtStatus {
        self.wait_until(&format!("{n} connected peer(s)"), timeout, |s| {
            s.num_peers >= n
        })
    }

    /// Asks libtorrent to quit and waits (up to 10 s) for it to exit;
    /// kills it after that.
    pub fn quit(mut self) {
        self.command(json!({"cmd": "quit"}));
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Drop kills it.
    }
}

impl Drop for LtPeer {
    fn drop(&mut self) {
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

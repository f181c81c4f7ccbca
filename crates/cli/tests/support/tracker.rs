//! opentracker on loopback, and HTTP announce/scrape helpers.
//!
//! The Debian build of opentracker serves only whitelisted info-hashes, runs
//! as user `nobody` and chroots to its `-d` folder (default: its working
//! folder). It reads the whitelist once before the chroot and again inside it
//! on every SIGHUP, so the whitelist is given as a path relative to the
//! folder it chroots to, which is its working folder: a temporary folder of
//! its own, mode 755, with the file mode 644. The file is never empty: an
//! empty whitelist fails to load and opentracker then serves every hash.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bencode::{self, Read as _, Value};
use super::http::{self, percent_encode};
use super::netns::Netns;
use super::{free_port, hex_to_bytes, is_listening, poll_until, require_program, Proc};

const WHITELIST: &str = "whitelist.txt";

/// The first line of every whitelist: an info-hash no test uses.
const PLACEHOLDER: &str = "0123456789abcdef0123456789abcdef01234567";

/// Seeders, leechers and completed downloads of one torrent, from a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeCounts {
    /// Seeders (`complete`).
    pub complete: i64,
    /// Leechers (`incomplete`).
    pub incomplete: i64,
    /// Completed downloads (`downloaded`).
    pub downloaded: i64,
}

/// A running `/usr/bin/opentracker`: HTTP and UDP on one port. Killed on drop.
pub struct OpenTracker {
    proc: Proc,
    ip: Ipv4Addr,
    port: u16,
    /// Where the test sends its HTTP requests: `ip:port`, or a relay to it
    /// when the tracker runs in a network namespace.
    control: SocketAddr,
    whitelist: PathBuf,
    // Dropped after `proc` (fields drop in order): the folder outlives it.
    dir: tempfile::TempDir,
    netns: Option<Arc<Netns>>,
}

impl OpenTracker {
    /// Starts opentracker on `ip:port` (TCP and UDP). Port 0 picks a free
    /// port, retrying with another if something else takes it first.
    /// Returns once it answers HTTP announces.
    pub fn start(ip: Ipv4Addr, port: u16) -> OpenTracker {
        OpenTracker::start_with(ip, port, None)
    }

    /// Starts opentracker inside `netns` on `ip:port` (an address of the
    /// namespace; port 0 picks one). The test reaches it through a relay
    /// ([`OpenTracker::control_addr`]); peers inside use
    /// [`OpenTracker::http_announce_url`] as usual.
    pub fn start_in(netns: &Arc<Netns>, ip: Ipv4Addr, port: u16) -> OpenTracker {
        OpenTracker::start_with(ip, port, Some(Arc::clone(netns)))
    }

    fn start_with(ip: Ipv4Addr, port: u16, netns: Option<Arc<Netns>>) -> OpenTracker {
        require_program("opentracker", "opentracker");
        let dir = tempfile::Builder::new()
            .prefix("rivulet-opentracker-")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let whitelist = dir.path().join(WHITELIST);
        // Never empty: opentracker cannot map an empty file, and then lets
        // every info-hash through.
        fs::write(&whitelist, format!("{PLACEHOLDER}\n")).unwrap();
        fs::set_permissions(&whitelist, fs::Permissions::from_mode(0o644)).unwrap();

        let attempts = if port == 0 { 5 } else { 1 };
        let mut failures = Vec::new();
        for _ in 0..attempts {
            let p = match (port, &netns) {
                (0, Some(ns)) => ns.next_port(),
                (0, None) => free_port(ip),
                _ => port,
            };
            let mut cmd = match &netns {
                Some(ns) => ns.command("/usr/bin/opentracker"),
                None => Command::new("/usr/bin/opentracker"),
            };
            cmd.current_dir(dir.path())
                .arg("-i")
                .arg(ip.to_string())
                .arg("-p")
                .arg(p.to_string())
                .arg("-P")
                .arg(p.to_string())
                .arg("-d")
                .arg(dir.path())
                .arg("-w")
                .arg(WHITELIST);
            let mut proc = Proc::spawn(&format!("opentracker@{ip}:{p}"), &mut cmd);
            let addr = SocketAddr::from((ip, p));
            let control = match &netns {
                Some(ns) => ns.forward(addr),
                None => addr,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let ready = loop {
                if proc.try_wait().is_some() {
                    break false;
                }
                // Through a relay, a refused connection shows as an HTTP
                // error: the probe announce alone tells.
                if (netns.is_some() || is_listening(addr)) && answers_as_opentracker(control) {
                    break true;
                }
                if Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if ready {
                return OpenTracker {
                    proc,
                    ip,
                    port: p,
                    control,
                    whitelist,
                    dir,
                    netns,
                };
            }
            proc.kill();
            let _ = proc.wait_timeout(Duration::from_secs(1));
            failures.push(format!("`{}`:\n{}", proc.command_line(), proc.output()));
        }
        panic!("opentracker did not start:\n{}", failures.join("\n"));
    }

    /// Its address (TCP and UDP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
    }

    /// Its port (TCP and UDP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the test reaches its HTTP side: [`OpenTracker::addr`], or a
    /// relay on the host's 127.0.0.1 if it runs in a network namespace.
    pub fn control_addr(&self) -> SocketAddr {
        self.control
    }

    /// `http://IP:PORT/announce`.
    pub fn http_announce_url(&self) -> String {
        format!("http://{}/announce", self.addr())
    }

    /// `udp://IP:PORT/announce`.
    pub fn udp_announce_url(&self) -> String {
        format!("udp://{}/announce", self.addr())
    }

    /// The whitelist file (inside opentracker's own folder).
    pub fn whitelist_path(&self) -> &Path {
        &self.whitelist
    }

    /// The running process, e.g. for its output.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Adds `info_hash_hex` (v1, 40 hex digits) to the whitelist, makes
    /// opentracker reload it (SIGHUP), and returns once an announce for it
    /// is accepted. The probing announce is withdrawn (`event=stopped`), so
    /// the swarm is left empty; a scrape then shows an entry of zeros.
    pub fn whitelist(&mut self, info_hash_hex: &str) {
        let hash = info_hash_hex.to_ascii_lowercase();
        assert_eq!(hash.len(), 40, "not a v1 info-hash: {info_hash_hex:?}");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&self.whitelist)
            .unwrap();
        writeln!(f, "{hash}").unwrap();
        drop(f);
        self.proc.assert_running();
        self.proc.signal("HUP");
        let addr = self.control;
        let mut resent = Instant::now();
        poll_until(
            &format!("opentracker to accept {hash} after SIGHUP"),
            Duration::from_secs(10),
            || {
                let answer = probe_announce(addr, &hash, None)?;
                if answer.get(b"failure reason").is_none() {
                    // Accepted, and the probe is now a seeder: remove it.
                    let bye = probe_announce(addr, &hash, Some("stopped"))?;
                    return match bye.get(b"complete").and_then(Value::int) {
                        Some(0) => Ok(()),
                        _ => Err(format!("the probe peer was not removed: {bye:?}")),
                    };
                }
                // A SIGHUP that arrived while the last reload was running
                // may have been merged with it: send another now and then.
                if resent.elapsed() > Duration::from_secs(1) {
                    self.proc.signal("HUP");
                    resent = Instant::now();
                }
                Err(format!("{answer:?}"))
            },
        );
    }

    /// Scrapes `info_hash_hex` over HTTP; `None` if the tracker has no
    /// entry for it (it has one, maybe of zeros, once anyone announced).
    pub fn scrape(&self, info_hash_hex: &str) -> Option<ScrapeCounts> {
        scrape_http(self.control, info_hash_hex).unwrap_or_else(|e| panic!("scrape: {e}"))
    }

    /// Waits until a scrape of `info_hash_hex` shows `seeders` seeders, and
    /// returns the counts.
    pub fn wait_for_seeders(
        &self,
        info_hash_hex: &str,
        seeders: i64,
        timeout: Duration,
    ) -> ScrapeCounts {
        poll_until(
            &format!("{seeders} seeder(s) of {info_hash_hex} at the tracker"),
            timeout,
            || match self.scrape(info_hash_hex) {
                Some(c) if c.complete == seeders => Ok(c),
                other => Err(format!("{other:?}")),
            },
        )
    }
}

/// Whether `addr` answers an announce of an unknown hash the way the Debian
/// opentracker does (not authorized), so that we know it is ours.
fn answers_as_opentracker(addr: SocketAddr) -> bool {
    match probe_announce(addr, &"00".repeat(20), None) {
        Ok(v) => v
            .get(b"failure reason")
            .and_then(Value::bytes)
            .is_some_and(|r| String::from_utf8_lossy(r).contains("not authorized")),
        Err(_) => false,
    }
}

/// An HTTP announce of `info_hash_hex` by a made-up peer (127.0.0.1:1, a
/// seeder), with `event` if given; returns the decoded answer.
///
/// opentracker checks the whitelist only when it adds a peer: an announce
/// with `event=stopped` is answered for any hash.
fn probe_announce(
    addr: SocketAddr,
    info_hash_hex: &str,
    event: Option<&str>,
) -> Result<Value, String> {
    let mut path = format!(
        "/announce?info_hash={}&peer_id=-RVPROBE-01234567890&port=1&uploaded=0&downloaded=0&left=0&compact=1",
        percent_encode(&hex_to_bytes(info_hash_hex))
    );
    if let Some(event) = event {
        path.push_str("&event=");
        path.push_str(event);
    }
    let r = http::get(addr, &path).map_err(|e| e.to_string())?;
    bencode::decode(&r.body)
        .ok_or_else(|| format!("not bencode: {:?}", String::from_utf8_lossy(&r.body)))
}

/// Scrapes `info_hash_hex` from the HTTP tracker at `addr` (`GET /scrape`).
/// `Ok(None)` if the tracker has no entry for it.
pub fn scrape_http(addr: SocketAddr, info_hash_hex: &str) -> Result<Option<ScrapeCounts>, String> {
    let hash = hex_to_bytes(info_hash_hex);
    let path = format!("/scrape?info_hash={}", percent_encode(&hash));
    let r = http::get(addr, &path).map_err(|e| e.to_string())?;
    let v = bencode::decode(&r.body).ok_or_else(|| {
        format!(
            "scrape answer is not bencode: {:?}",
            String::from_utf8_lossy(&r.body)
        )
    })?;
    let Some(entry) = v.get(b"files").and_then(|f| f.get(&hash)) else {
        return Ok(None);
    };
    let n = |k: &[u8]| entry.get(k).and_then(Value::int).unwrap_or(0);
    Ok(Some(ScrapeCounts {
        complete: n(b"complete"),
        incomplete: n(b"incomplete"),
        downloaded: n(b"downloaded"),
    }))
}

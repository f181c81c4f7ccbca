//! aria2 (`aria2c`) as a leecher or a seeder.
//!
//! `--interface=IP` binds aria2's BitTorrent socket (and its tracker and
//! peer connections) to `IP`. A seeder has its JSON-RPC interface on, on
//! 127.0.0.1 only (aria2 binds RPC to loopback whatever `--interface`
//! says), so that tests can see it seeding with [`Aria2::status`]. A leecher
//! has it off by default: with RPC on, aria2 does not exit when its
//! downloads are done.
//!
//! With DHT off (always, here), aria2 cannot announce to UDP trackers ("udp
//! is not supported yet"): give its torrents HTTP trackers.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::http;
use super::netns::Netns;
use super::{free_port, is_listening, poll_until, require_program, Proc};

const RPC_SECRET: &str = "rivulet-test";

/// How to start [`Aria2`].
#[derive(Debug, Clone)]
pub struct Aria2Config {
    /// Address to bind to (listen and connect).
    pub ip: Ipv4Addr,
    /// Peer port; 0 picks a free one.
    pub port: u16,
    /// Seed existing data (check it, then seed until killed) instead of
    /// downloading and exiting once done.
    pub seed: bool,
    /// Overall upload limit in bytes/s, 0 = none.
    pub max_upload: u64,
    /// Overall download limit in bytes/s, 0 = none.
    pub max_download: u64,
    /// Turn on JSON-RPC (on 127.0.0.1) for [`Aria2::status`]. Default: on
    /// for seeders, off for leechers (which then keep running when done).
    pub rpc: bool,
    /// More arguments, put before the torrent.
    pub extra_args: Vec<String>,
    /// Run inside this network namespace (`ip` is then one of its
    /// addresses; RPC is reached through a relay); default: the host's.
    pub netns: Option<Arc<Netns>>,
}

impl Aria2Config {
    /// A leecher on `ip`, any port, no limits.
    pub fn leecher(ip: Ipv4Addr) -> Aria2Config {
        Aria2Config {
            ip,
            port: 0,
            seed: false,
            max_upload: 0,
            max_download: 0,
            rpc: false,
            extra_args: Vec::new(),
            netns: None,
        }
    }

    /// Runs aria2's DHT on UDP port `port`, joining it through `entry` only
    /// (never the public routers), its table kept in `state`.
    pub fn dht(mut self, entry: SocketAddr, port: u16, state: &Path) -> Aria2Config {
        self.extra_args.extend([
            "--enable-dht=true".to_owned(),
            format!("--dht-entry-point={entry}"),
            format!("--dht-listen-port={port}"),
            format!("--dht-file-path={}", state.display()),
        ]);
        self
    }

    /// Runs inside `netns` (`ip` must be one of its addresses).
    pub fn netns(mut self, netns: &Arc<Netns>) -> Aria2Config {
        self.netns = Some(Arc::clone(netns));
        self
    }

    /// A seeder on `ip`, any port, no limits.
    pub fn seeder(ip: Ipv4Addr) -> Aria2Config {
        Aria2Config {
            seed: true,
            rpc: true,
            ..Aria2Config::leecher(ip)
        }
    }
}

/// How an [`Aria2`] run ended.
#[derive(Debug)]
pub struct Aria2Exit {
    /// Its exit status (0: every download complete and verified).
    pub status: ExitStatus,
    /// Its stdout and stderr.
    pub output: String,
}

/// A running `aria2c`. Killed on drop; it also stops by itself once the test
/// process is gone (`--stop-with-process`).
pub struct Aria2 {
    proc: Proc,
    addr: SocketAddr,
    rpc: Option<SocketAddr>,
    // Keeps the namespace (if any) until the process is gone.
    netns: Option<Arc<Netns>>,
}

impl Aria2 {
    /// Downloads `torrent` into `dir`, binding to `ip`; exits once the data
    /// is complete and verified (`--seed-time=0`). See [`Aria2::wait`].
    pub fn leecher(torrent: &Path, dir: &Path, ip: Ipv4Addr) -> Aria2 {
        Aria2::start(torrent, dir, Aria2Config::leecher(ip))
    }

    /// Seeds `torrent` from the data in `dir`, binding to `ip`, after
    /// checking it; waits until it is seeding.
    pub fn seeder(torrent: &Path, dir: &Path, ip: Ipv4Addr) -> Aria2 {
        let mut a = Aria2::start(torrent, dir, Aria2Config::seeder(ip));
        a.wait_seeding(Duration::from_secs(30));
        a
    }

    /// Starts aria2 as `cfg` says, and returns once it listens for peers
    /// (and its RPC interface answers, if on) or, for a leecher, has exited.
    pub fn start(torrent: &Path, dir: &Path, cfg: Aria2Config) -> Aria2 {
        require_program("aria2c", "aria2");
        let netns = cfg.netns.clone();
        let port = match (cfg.port, &netns) {
            (0, Some(ns)) => ns.next_port(),
            (0, None) => free_port(cfg.ip),
            (p, _) => p,
        };
        let mut cmd = match &netns {
            Some(ns) => ns.command("aria2c"),
            None => Command::new("aria2c"),
        };
        cmd.args([
            "--no-conf=true",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--disable-ipv6=true",
            "--enable-color=false",
            "--summary-interval=0",
            "--console-log-level=notice",
            "--file-allocation=none",
            "--auto-file-renaming=false",
            "--allow-overwrite=true",
        ])
        .arg(format!("--interface={}", cfg.ip))
        .arg(format!("--listen-port={port}"))
        .arg(format!("--stop-with-process={}", std::process::id()))
        .arg(format!("--max-overall-upload-limit={}", cfg.max_upload))
        .arg(format!("--max-overall-download-limit={}", cfg.max_download));
        if cfg.seed {
            cmd.args([
                "--seed-ratio=0.0",
                "--check-integrity=true",
                "--bt-seed-unverified=false",
            ]);
        } else {
            cmd.arg("--seed-time=0");
        }
        let rpc = cfg.rpc.then(|| {
            let rpc_port = match &netns {
                Some(ns) => ns.next_port(),
                None => free_port(Ipv4Addr::LOCALHOST),
            };
            cmd.args(["--enable-rpc=true", "--rpc-listen-all=false"])
                .arg(format!("--rpc-secret={RPC_SECRET}"))
                .arg(format!("--rpc-listen-port={rpc_port}"));
            let rpc = SocketAddr::from((Ipv4Addr::LOCALHOST, rpc_port));
            match &netns {
                Some(ns) => ns.forward(rpc),
                None => rpc,
            }
        });
        cmd.args(&cfg.extra_args).arg("-d").arg(dir).arg(torrent);
        let role = if cfg.seed { "seeder" } else { "leecher" };
        let addr = SocketAddr::from((cfg.ip, port));
        let mut proc = Proc::spawn(&format!("aria2 {role}@{addr}"), &mut cmd);
        poll_until(
            &format!("{} to listen", proc.name()),
            Duration::from_secs(15),
            || {
                if cfg.seed {
                    proc.assert_running();
                } else if proc.try_wait().is_some() {
                    return Ok(()); // a leecher may finish very fast
                }
                let up = match &netns {
                    // Through the relay, an RPC call that answers tells.
                    Some(ns) => {
                        ns.is_listening(addr)
                            && rpc.is_none_or(|r| {
                                http::get(r, "/jsonrpc").is_ok_and(|a| a.status > 0)
                            })
                    }
                    None => is_listening(addr) && rpc.is_none_or(is_listening),
                };
                if up {
                    Ok(())
                } else {
                    Err(proc.output())
                }
            },
        );
        Aria2 {
            proc,
            addr,
            rpc,
            netns,
        }
    }

    /// Its peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The running process (output, command line).
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        self.proc.output()
    }

    /// Calls the JSON-RPC method `method` (e.g. `aria2.tellActive`).
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let mut p = vec![json!(format!("token:{RPC_SECRET}"))];
        if let Value::Array(more) = params {
            p.extend(more);
        }
        let body = json!({"jsonrpc": "2.0", "id": "t", "method": method, "params": p});
        let rpc = self.rpc.ok_or("aria2 runs without RPC")?;
        let r = http::request(
            rpc,
            "POST",
            "/jsonrpc",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
        match v.get("result") {
            Some(res) => Ok(res.clone()),
            None => Err(format!("{method}: {v}")),
        }
    }

    /// The active download, as `aria2.tellActive` reports it (`status`,
    /// `completedLength`, `totalLength`, `seeder`, `connections`,
    /// `uploadLength`, ... — numbers are strings); `None` once there is
    /// none (or aria2 has exited, or runs without RPC).
    pub fn status(&self) -> Option<Value> {
        self.rpc("aria2.tellActive", json!([]))
            .ok()
            .and_then(|v| v.as_array().and_then(|a| a.first().cloned()))
    }

    /// Waits until the download is complete and aria2 seeds it.
    pub fn wait_seeding(&mut self, timeout: Duration) -> Value {
        let name = self.proc.name().to_owned();
        poll_until(&format!("{name} to seed"), timeout, || {
            self.proc.assert_running();
            match self.status() {
                Some(s) if s["seeder"] == "true" && s["completedLength"] == s["totalLength"] => {
                    Ok(s)
                }
                other => Err(format!("{other:?}")),
            }
        })
    }

    /// Waits up to `timeout` for aria2 to exit, and returns how it ended.
    /// Fails the test (with aria2's output) if it is still running then.
    pub fn wait(&mut self, timeout: Duration) -> Aria2Exit {
        match self.proc.wait_timeout(timeout) {
            Some(status) => Aria2Exit {
                status,
                output: self.proc.output(),
            },
            None => panic!(
                "{} still running after {timeout:?}; status {:?}\ncommand: {}\noutput:\n{}",
                self.proc.name(),
                self.status(),
                self.proc.command_line(),
                self.proc.output()
            ),
        }
    }

    /// Waits up to `timeout` for aria2 to exit and fails the test unless it
    /// exited with status 0.
    pub fn wait_success(&mut self, timeout: Duration) -> Aria2Exit {
        let exit = self.wait(timeout);
        assert!(
            exit.status.success(),
            "{} failed ({})\ncommand: {}\noutput:\n{}",
            self.proc.name(),
            exit.status,
            self.proc.command_line(),
            exit.output
        );
        exit
    }
}

//! rivulet itself (`CARGO_BIN_EXE_rivulet`) as a seeder or a downloader
//! among the other programs: `rivulet seed` and `rivulet download` runs that
//! the test drives (started, polled, interrupted), with their output shown
//! whenever a test fails while one is alive.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::{is_listening, poll_until, Proc};

/// The rivulet binary built for these tests.
/// `rivulet create DATA -o OUT` with 64 KiB pieces and no tracker; returns
/// OUT.
pub fn create_torrent(data: &Path, out: &Path) -> PathBuf {
    let o = command()
        .arg("create")
        .arg(data)
        .arg("-o")
        .arg(out)
        .args(["--piece-length", "65536", "--no-date", "--quiet"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.to_path_buf()
}

pub fn rivulet_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rivulet"))
}

/// The variable that puts rivulet in closed-network mode: no DHT unless
/// `--dht-bootstrap` names nodes, and those must be loopback or private
/// addresses (anything else is refused), so that no test can reach the
/// public DHT routers; no local discovery (multicast) unless the value is
/// `netns` (a test's own network namespace).
pub const CLOSED_NETWORK: &str = "RIVULET_CLOSED_NETWORK";

/// `rivulet` as every test runs it: in closed-network mode.
pub fn command() -> Command {
    let mut c = Command::new(rivulet_bin());
    c.env(CLOSED_NETWORK, "1");
    c
}

/// Makes each argument before `--` a read-only bind mount of itself, then
/// runs the command after `--`.
const READ_ONLY_SCRIPT: &str = r#"
while [ "$1" != -- ]; do
    mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" || exit 97
    shift
done
shift
exec "$@"
"#;

/// Whether [`RivuletCmd::read_only`] works here (root, `unshare` and
/// `mount`): `Err` says why not.
pub fn can_mount_read_only() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let probe = dir.path().join("probe");
    let o = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            READ_ONLY_SCRIPT,
            "sh",
        ])
        .arg(dir.path())
        .args(["--", "touch"])
        .arg(&probe)
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    match o.status.code() {
        // touch failed: the mount was read-only.
        Some(1) if !probe.exists() => Ok(()),
        _ => Err(format!(
            "a read-only bind mount in a private mount namespace failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
    }
}

/// A `rivulet seed` or `rivulet download` command line, to spawn.
#[derive(Debug, Clone)]
pub struct RivuletCmd {
    subcommand: &'static str,
    torrent: PathBuf,
    dir: PathBuf,
    bind: Option<IpAddr>,
    port: Option<u16>,
    peers: Vec<SocketAddr>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    netns: Option<Arc<Netns>>,
    read_only: Vec<PathBuf>,
}

impl RivuletCmd {
    /// `rivulet seed TORRENT -o DIR`.
    pub fn seed(torrent: &Path, dir: &Path) -> RivuletCmd {
        RivuletCmd::new("seed", torrent, dir)
    }

    /// `rivulet download TORRENT -o DIR`.
    pub fn download(torrent: &Path, dir: &Path) -> RivuletCmd {
        RivuletCmd::new("download", torrent, dir)
    }

    fn new(subcommand: &'static str, torrent: &Path, dir: &Path) -> RivuletCmd {
        RivuletCmd {
            subcommand,
            torrent: torrent.to_path_buf(),
            dir: dir.to_path_buf(),
            bind: None,
            port: None,
            peers: Vec::new(),
            args: Vec::new(),
            envs: Vec::new(),
            netns: None,
            read_only: Vec::new(),
        }
    }

    /// `--bind IP`.
    pub fn bind(mut self, ip: impl Into<IpAddr>) -> RivuletCmd {
        self.bind = Some(ip.into());
        self
    }

    /// `--port N`.
    pub fn port(mut self, port: u16) -> RivuletCmd {
        self.port = Some(port);
        self
    }

    /// `--peer IP:PORT` (repeatable).
    pub fn peer(mut self, peer: SocketAddr) -> RivuletCmd {
        self.peers.push(peer);
        self
    }

    /// Any other argument, e.g. `--seed`, `--max-peers=4`.
    pub fn arg(mut self, arg: impl Into<String>) -> RivuletCmd {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable for it, e.g. `RUST_LOG`.
    pub fn env(mut self, key: &str, value: &str) -> RivuletCmd {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs it inside `netns` (`ip netns exec`).
    pub fn netns(mut self, netns: &Arc<Netns>) -> RivuletCmd {
        self.netns = Some(Arc::clone(netns));
        self
    }

    /// Runs it where `dir` is a read-only mount: in a mount namespace of its
    /// own (`unshare --mount`), `dir` bound onto itself and remounted
    /// read-only, so nothing outlives the process and the test's view of
    /// `dir` stays writable. Needs root: check [`can_mount_read_only`].
    pub fn read_only(mut self, dir: &Path) -> RivuletCmd {
        self.read_only.push(dir.to_path_buf());
        self
    }

    /// Where it will accept peers: `--bind` and `--port`, or 127.0.0.1 if
    /// it binds every address. `None` without `--port`.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        let ip = self.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        self.port.map(|p| SocketAddr::new(ip, p))
    }

    fn command(&self) -> Command {
        assert!(
            self.netns.is_none() || self.read_only.is_empty(),
            "read-only mounts inside a network namespace are not supported"
        );
        let mut cmd = match (&self.netns, self.read_only.is_empty()) {
            (Some(ns), _) => ns.command(rivulet_bin()),
            (None, true) => command(),
            (None, false) => {
                // sh -c SCRIPT sh DIR... -- RIVULET ARGS...
                let mut c = Command::new("unshare");
                c.args([
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    READ_ONLY_SCRIPT,
                    "sh",
                ])
                .args(&self.read_only)
                .arg("--")
                .arg(rivulet_bin());
                c
            }
        };
        cmd.arg(self.subcommand)
            .arg(&self.torrent)
            .arg("-o")
            .arg(&self.dir);
        if let Some(ip) = self.bind {
            cmd.arg("--bind").arg(ip.to_string());
        }
        if let Some(port) = self.port {
            cmd.arg("--port").arg(port.to_string());
        }
        for p in &self.peers {
            cmd.arg("--peer").arg(p.to_string());
        }
        cmd.args(&self.args);
        // Inside a test's namespace the network is the test's own: local
        // discovery (multicast) may run there, and only there.
        cmd.env(
            CLOSED_NETWORK,
            if self.netns.is_some() { "netns" } else { "1" },
        );
        // Logs only if asked: `RIVULET_TEST_LOG=rivulet_engine=debug cargo
        // test ...` gives every rivulet that filter (shown on failure).
        cmd.env_remove("RUST_LOG");
        if let Ok(filter) = std::env::var("RIVULET_TEST_LOG") {
            cmd.env("RUST_LOG", filter);
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts it; see [`Rivulet::wait_listening`].
    pub fn spawn(self) -> Rivulet {
        let who = match (self.bind, self.port) {
            (Some(ip), Some(p)) => format!("@{}", SocketAddr::new(ip, p)),
            (None, Some(p)) => format!("@*:{p}"),
            (Some(ip), None) => format!("@{ip}"),
            (None, None) => String::new(),
        };
        let name = format!("rivulet {}{who}", self.subcommand);
        let proc = Proc::spawn(&name, &mut self.command());
        Rivulet { proc, cmd: self }
    }

    /// Starts it and waits up to `timeout` for it to exit by itself (a
    /// download without `--seed`); fails the test, with its output, if it
    /// is still running then.
    pub fn run(self, timeout: Duration) -> RivuletExit {
        let mut r = self.spawn();
        r.wait_exit(timeout)
    }
}

/// A running rivulet. Killed on drop; if the test is failing then, its
/// output is printed.
pub struct Rivulet {
    proc: Proc,
    cmd: RivuletCmd,
}

/// How a rivulet run ended.
#[derive(Debug, Clone)]
pub struct RivuletExit {
    /// Its name (`rivulet seed@IP:PORT`), for messages.
    pub name: String,
    /// Its exit status.
    pub status: ExitStatus,
    /// Its stdout and stderr.
    pub output: String,
}

impl Rivulet {
    /// The running process (output, signals).
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Its stdout and stderr so far.
    pub fn output(&self) -> String {
        self.proc.output()
    }

    /// The address given with `--bind`/`--port` (127.0.0.1 without
    /// `--bind`).
    pub fn addr(&self) -> SocketAddr {
        self.cmd
            .listen_addr()
            .expect("started without --port: no address known")
    }

    /// The addresses of its `listening on IP:PORT` lines so far.
    pub fn listening_lines(&self) -> Vec<SocketAddr> {
        listening_lines(&self.output())
    }

    /// Waits until it has printed at least one `listening on IP:PORT` line,
    /// and returns the addresses of those lines. Fails the test if it exits
    /// first or after `timeout`.
    pub fn wait_listening_lines(&mut self, timeout: Duration) -> Vec<SocketAddr> {
        let name = self.proc.name().to_owned();
        poll_until(
            &format!("{name} to print `listening on IP:PORT`"),
            timeout,
            || {
                let lines = self.listening_lines();
                if !lines.is_empty() {
                    return Ok(lines);
                }
                self.proc.assert_running();
                Err(self.proc.output())
            },
        )
    }

    /// Waits until it accepts connections at [`Rivulet::addr`] (the port
    /// was free, so it must be that one), and returns that address. Fails
    /// the test if it exits first.
    pub fn wait_listening(&mut self, timeout: Duration) -> SocketAddr {
        let addr = self.addr();
        let netns = self.cmd.netns.clone();
        let name = self.proc.name().to_owned();
        poll_until(&format!("{name} to listen on {addr}"), timeout, || {
            self.proc.assert_running();
            let up = match &netns {
                Some(ns) => ns.is_listening(addr),
                None => is_listening(addr),
            };
            if up {
                Ok(())
            } else {
                Err(self.proc.output())
            }
        });
        addr
    }

    /// Sends it SIGINT.
    pub fn interrupt(&self) {
        self.proc.signal("INT");
    }

    /// Sends it SIGINT and waits up to `timeout` for it to exit. Fails the
    /// test, with its output, if it does not.
    pub fn stop(&mut self, timeout: Duration) -> RivuletExit {
        self.proc.assert_running();
        self.interrupt();
        self.wait_exit(timeout)
    }

    /// Waits up to `timeout` for it to exit; fails the test, with its
    /// output, if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> RivuletExit {
        match self.proc.wait_timeout(timeout) {
            Some(status) => {
                let exit = RivuletExit {
                    name: self.proc.name().to_owned(),
                    status,
                    output: self.proc.output(),
                };
                eprintln!(
                    "{} exited ({status}); output:\n{}",
                    exit.name,
                    indent(&exit.output)
                );
                exit
            }
            None => panic!(
                "{} still running after {timeout:?}\ncommand: {}\noutput:\n{}",
                self.proc.name(),
                self.proc.command_line(),
                self.proc.output()
            ),
        }
    }

    /// Whether its output so far has a line containing `needle`.
    pub fn printed(&self, needle: &str) -> bool {
        self.output().lines().any(|l| l.contains(needle))
    }

    /// Waits until its output has a line containing `needle`; fails the
    /// test if it exits first or after `timeout`.
    pub fn wait_printed(&mut self, needle: &str, timeout: Duration) {
        let name = self.proc.name().to_owned();
        poll_until(&format!("{name} to print {needle:?}"), timeout, || {
            if self.printed(needle) {
                return Ok(());
            }
            self.proc.assert_running();
            Err(self.proc.output())
        });
    }
}

impl Drop for Rivulet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.proc.kill();
            let _ = self.proc.wait_timeout(Duration::from_secs(2));
            eprintln!(
                "--- {} (`{}`), output at the failure:\n{}",
                self.proc.name(),
                self.proc.command_line(),
                indent(&self.proc.output())
            );
        }
    }
}

impl RivuletExit {
    /// Fails the test, with the output, unless it exited with status 0.
    #[track_caller]
    pub fn assert_success(&self) -> &RivuletExit {
        assert!(
            self.status.success(),
            "{} failed ({}); output:\n{}",
            self.name,
            self.status,
            self.output
        );
        self
    }

    /// The `<human bytes>` after `uploaded ` on the last line that has it
    /// (the summary), e.g. `64.0 MiB`; fails the test if there is none.
    #[track_caller]
    pub fn uploaded_text(&self) -> String {
        uploaded_text(&self.output).unwrap_or_else(|| {
            panic!(
                "{}: no `uploaded <bytes>` in its summary; output:\n{}",
                self.name, self.output
            )
        })
    }

    /// [`RivuletExit::uploaded_text`] as bytes (as precise as the summary).
    #[track_caller]
    pub fn uploaded(&self) -> u64 {
        let text = self.uploaded_text();
        parse_human_bytes(&text)
            .unwrap_or_else(|| panic!("{}: cannot read {text:?} as bytes", self.name))
    }
}

/// Every address in `listening on IP:PORT` lines of `output`.
pub fn listening_lines(output: &str) -> Vec<SocketAddr> {
    output
        .lines()
        .filter_map(|l| l.split("listening on ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|a| a.trim_end_matches([',', ';', '.']).parse().ok())
        .collect()
}

/// The `<number> <unit>` after the last `uploaded ` in `output`.
pub fn uploaded_text(output: &str) -> Option<String> {
    let line = output.lines().rev().find(|l| l.contains("uploaded "))?;
    let rest = line.rsplit("uploaded ").next()?;
    let mut words = rest.split_whitespace();
    let number = words.next()?;
    let unit = words.next().unwrap_or("");
    let unit = unit.trim_end_matches(|c: char| !c.is_ascii_alphabetic());
    Some(format!("{number} {unit}").trim().to_owned())
}

/// Reads `64.0 MiB`, `1.50 GiB`, `12 B`, `3.2 kB`, `10 MB` (binary units
/// for `KiB`..., decimal for `kB`...) as bytes.
pub fn parse_human_bytes(text: &str) -> Option<u64> {
    let mut parts = text.split_whitespace();
    let number: f64 = parts.next()?.replace(',', "").parse().ok()?;
    let unit = parts.next().unwrap_or("B");
    let scale: f64 = match unit {
        "B" | "bytes" | "byte" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0_f64.powi(4),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    Some((number * scale).round() as u64)
}

/// `text` with each line indented, for nested output in messages.
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until every rivulet in `procs` has printed a line containing
/// `needle`, failing (with all
/// their output) if any exits first or after `timeout`.
pub fn wait_all_printed(procs: &mut [&mut Rivulet], needle: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let mut missing = Vec::new();
        for r in procs.iter_mut() {
            if !r.printed(needle) {
                r.proc.assert_running();
                missing.push(r.proc.name().to_owned());
            }
        }
        if missing.is_empty() {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {missing:?} to print {needle:?}");
        }
        std::thread::sleep(super::POLL_INTERVAL);
    }
}

/// Runs `rivulet download TORRENT -o DIR --bind <its own 127.0.0.x> ARGS...`
/// to the end (on any free port unless ARGS has `--port`), with `env` set;
/// prints its exit status and the lines of its output that `show` picks
/// (all of them when `show` is `None`).
pub fn download_to_end(
    torrent: &Path,
    dir: &Path,
    args: &[String],
    env: &[(&str, &str)],
    show: Option<&dyn Fn(&str) -> bool>,
) -> std::process::Output {
    let mut cmd = command();
    cmd.arg("download")
        .arg(torrent)
        .arg("-o")
        .arg(dir)
        .arg(format!("--bind={}", super::next_loopback()));
    if !args.iter().any(|a| a.starts_with("--port")) {
        cmd.arg("--port=0");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown: Vec<&str> = stderr
        .lines()
        .filter(|l| show.is_none_or(|f| f(l)))
        .collect();
    eprintln!("rivulet download: {}\n{}", out.status, shown.join("\n"));
    out
}

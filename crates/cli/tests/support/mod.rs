//! Test harness for interop tests against real BitTorrent programs.
//!
//! Every network program here runs on loopback only, each peer on its own
//! 127.0.0.x address, with DHT, local peer discovery, UPnP and NAT-PMP off
//! (see "Testing with real clients" in DESIGN.md). Every wrapper kills its
//! program when dropped, also when the test panics, and removes the temporary
//! folders it made.
//!
//! - [`data`]: deterministic file trees and a byte-for-byte tree comparison.
//! - [`torrent`]: `.torrent` files made by libtorrent.
//! - [`tracker`]: [`OpenTracker`], plus HTTP scrape/announce helpers.
//! - [`libtorrent`]: [`LtPeer`], a libtorrent session in a python process.
//! - [`aria2`]: [`Aria2`], an `aria2c` leecher or seeder.
//! - [`transmission`]: [`TransmissionDaemon`], a Transmission seeder, or a
//!   leecher inside a network namespace.
//! - [`netns`]: [`Netns`], a network namespace of the test's own, for
//!   Transmission as a leecher (it refuses peers on 127.0.0.0/8).
//! - [`rivulet`]: [`RivuletCmd`] / [`Rivulet`], `rivulet seed` and
//!   `rivulet download` runs driven by the test.
//!
//! The fake BitTorrent peer (a listening seeder, or a leecher driven by hand
//! that misbehaves on purpose) is the test kit's: `rivulet_testkit::peer`,
//! with `peer::blocking` for these synchronous tests.
//!
//! Use it from a test file with `mod support;`. A missing program fails the
//! test with the Debian package to install ([`require_program`]); nothing is
//! ever skipped silently.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    dead_code
)]

pub mod aria2;
pub mod data;
pub mod libtorrent;
pub mod netns;
pub mod rivulet;
pub mod torrent;
pub mod tracker;
pub mod transmission;

// Not every test file uses every re-export.
#[allow(unused_imports)]
pub use aria2::{Aria2, Aria2Config, Aria2Exit};
#[allow(unused_imports)]
pub use data::{assert_same_tree, compare_trees, multi_file_tree, single_file};
#[allow(unused_imports)]
pub use libtorrent::{LtConfig, LtPeer, LtStatus};
#[allow(unused_imports)]
pub use netns::Netns;
#[allow(unused_imports)]
pub use rivulet::{Rivulet, RivuletCmd, RivuletExit};
#[allow(unused_imports)]
pub use torrent::{make_torrent, make_torrent_with, MadeTorrent, TorrentOptions};
#[allow(unused_imports)]
pub use tracker::{OpenTracker, ScrapeCounts};
#[allow(unused_imports)]
pub use transmission::{TrTorrent, TransmissionDaemon};

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The python that has `python3-libtorrent` (not a pyenv one on PATH).
pub const PYTHON: &str = "/usr/bin/python3";

/// How often the `wait_*` helpers poll.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The folder of the helper scripts (`tests/interop`).
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

// ---------------------------------------------------------------------------
// Programs

/// Fails the test, naming the Debian package to install, unless `program`
/// can be run.
///
/// Known programs are run with a harmless argument (`--version` or the like)
/// and must exit 0; for `python3` the check is that `import libtorrent`
/// works in `/usr/bin/python3`. Other programs must exist on `PATH`.
pub fn require_program(program: &str, debian_package: &str) {
    let hint = format!(
        "this interop test needs `{program}` from the Debian package `{debian_package}` \
         (`apt-get install {debian_package}`; .ci/run installs it)"
    );
    let base = Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program);
    let args: &[&str] = match base {
        "python3" => &["-c", "import libtorrent as lt; print(lt.__version__)"],
        "aria2c" | "transmission-remote" | "transmission-create" => &["--version"],
        // `mktorrent --version` exits 1; `-h` exits 0.
        "mktorrent" => &["-h"],
        "transmission-daemon" => &["-V"],
        "opentracker" => &["-h"],
        _ => &[],
    };
    if args.is_empty() {
        if which(program).is_none() {
            panic!("{hint}, but it is not on PATH");
        }
        return;
    }
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{hint}, but `{program} {}` failed ({}):\n{}{}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("{hint}, but it cannot be run: {e}"),
    }
}

/// Fails the test unless `/usr/bin/python3` can `import libtorrent`.
pub fn require_libtorrent() {
    require_program(PYTHON, "python3-libtorrent");
}

/// Where `program` is on `PATH` (or `program` itself if it is a path).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A program started by a test: killed (and reaped) on drop.
///
/// Its stdout and stderr are collected in the background and can be read at
/// any time with [`Proc::output`], e.g. for a failure message.
pub struct Proc {
    name: String,
    command_line: String,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout and stderr captured.
    /// `name` is used in messages.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let command_line = command_line(cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} (`{command_line}`): {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(collect(out, Arc::clone(&output)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(collect(err, Arc::clone(&output)));
        }
        Proc {
            name: name.to_owned(),
            command_line,
            child,
            output,
            readers,
            exit: None,
        }
    }

    /// The name given to [`Proc::spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The command line, shell-quoted loosely, for messages.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its stdout and stderr so far, interleaved as they arrived.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Waits up to `timeout` for it to exit; `None` if it is still running.
    /// Once it has exited, its output is complete.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends it a signal (by name: "HUP", "TERM", ...) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.id().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Kills it (if still running) and reaps it.
    pub fn kill(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// Panics, with its output, if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_wait() {
            let _ = self.wait_timeout(Duration::from_secs(1));
            panic!(
                "{} exited early ({status}); command: {}\noutput:\n{}",
                self.name,
                self.command_line,
                self.output()
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies everything `r` gives into `buf`, in a thread.
pub fn collect(mut r: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    })
}

/// `cmd` as one line, for messages.
pub fn command_line(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            parts.push(format!("'{}'", a.replace('\'', r"'\''")));
        } else {
            parts.push(a.into_owned());
        }
    }
    parts.join(" ")
}

// ---------------------------------------------------------------------------
// Addresses, ports, waiting

/// A child process spoken to in lines: its stdin, its stdout lines (read by a
/// thread into a channel) and its stderr (collected).
pub struct LineChild {
    /// The process.
    pub child: Child,
    /// Its stdin (taken to close it).
    pub stdin: Option<std::process::ChildStdin>,
    /// Its stdout, a line at a time.
    pub lines: std::sync::mpsc::Receiver<String>,
    /// All it wrote to stderr so far.
    pub stderr: Arc<Mutex<Vec<u8>>>,
}

/// Starts `cmd` with piped stdin, stdout and stderr as a [`LineChild`]; fails
/// the test if it cannot start.
pub fn spawn_line_child(cmd: &mut Command) -> LineChild {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", command_line(cmd)));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    collect(
        child.stderr.take().expect("stderr is piped"),
        Arc::clone(&stderr),
    );
    let (tx, lines) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    LineChild {
        child,
        stdin,
        lines,
        stderr,
    }
}

/// Loopback addresses: `loopback(n)` is `127.0.0.n`, for tests that pick
/// their own; `next_loopback()` is a fresh address in a /24 of this test
/// process's own (see `rivulet_testkit::addr`).
#[allow(unused_imports)]
pub use rivulet_testkit::{loopback, next_loopback};

/// A port that is free for both TCP and UDP on `ip` right now.
///
/// Found by binding port 0; another program may still take it before ours
/// does, so the wrappers check that their program really listens.
pub fn free_port(ip: Ipv4Addr) -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}:0: {e}"));
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on {ip}");
}

/// Whether something accepts TCP connections at `addr`.
pub fn is_listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Calls `f` every [`POLL_INTERVAL`] until it returns `Ok`, and returns that
/// value. After `timeout`, fails the test with `what` and the last `Err`
/// (a description of the state seen).
pub fn poll_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => {
                if start.elapsed() >= timeout {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
                }
            }
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// A minimal HTTP/1.0 client: one request, the whole answer.
pub mod http {
    use super::*;

    /// An HTTP answer.
    #[derive(Debug)]
    pub struct Response {
        /// Status code.
        pub status: u16,
        /// Header fields, names lowercased.
        pub headers: Vec<(String, String)>,
        /// The body.
        pub body: Vec<u8>,
    }

    impl Response {
        /// The first header named `name` (lowercase).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Sends `method path` to `addr` with `headers` and `body`.
    pub fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        parse(&raw).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad HTTP answer: {:?}", String::from_utf8_lossy(&raw)),
            )
        })
    }

    /// `GET path` from `addr`.
    pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
        request(addr, "GET", path, &[], &[])
    }

    fn parse(raw: &[u8]) -> Option<Response> {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Response {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        })
    }

    /// Percent-encodes every byte of `bytes` (fine for query values).
    pub fn percent_encode(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("%{b:02X}")).collect()
    }
}

/// Parses a 40-digit hex info-hash.
pub fn hex_to_bytes(hex: &str) -> Vec<u8> {
    assert!(
        hex.len().is_multiple_of(2) && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "not a hex string: {hex:?}"
    );
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Tracker answers, read with `rivulet-bencode`
/// into an owned [`Value`](bencode::Value).
pub mod bencode {
    pub use rivulet_bencode::OwnedValue as Value;

    /// Decodes one value that must fill all of `input`.
    pub fn decode(input: &[u8]) -> Option<Value> {
        rivulet_bencode::decode(input)
            .ok()
            .map(|v| v.to_owned_value())
    }

    /// Reading a decoded [`Value`].
    pub trait Read {
        /// The entry `key` of a dictionary.
        fn get(&self, key: &[u8]) -> Option<&Value>;
        /// The integer, if it is one.
        fn int(&self) -> Option<i64>;
        /// The byte string, if it is one.
        fn bytes(&self) -> Option<&[u8]>;
    }

    impl Read for Value {
        fn get(&self, key: &[u8]) -> Option<&Value> {
            match self {
                Value::Dict(d) => d.get(key),
                _ => None,
            }
        }
        fn int(&self) -> Option<i64> {
            match self {
                Value::Int(i) => Some(*i),
                _ => None,
            }
        }
        fn bytes(&self) -> Option<&[u8]> {
            match self {
                Value::Bytes(b) => Some(b),
                _ => None,
            }
        }
    }
}

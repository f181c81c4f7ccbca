//! A network namespace of a test's own, for peers that refuse loopback.
//!
//! Transmission 3.00 never connects out to peers on 127.0.0.0/8, so a
//! Transmission leecher needs its seeder (and tracker) at other addresses.
//! [`Netns::create`] makes a namespace `rvt-<pid>-<n>` with `lo` up and a
//! veth pair whose two ends both stay inside it, holding the addresses
//! `10.77.0.1` to `10.77.0.{HOSTS}` (/24). Those addresses exist only inside
//! the namespace, which has no link to the host's: nothing in it can reach
//! the machine's network, let alone leave the machine. Dropping the [`Netns`]
//! deletes the namespace (also when the test panics); namespaces left by a
//! killed test run are deleted by the next [`Netns::create`].
//!
//! Programs run inside with [`Netns::command`] (`ip netns exec NAME ...`,
//! which execs the program: its pid is the program's, so signals reach it).
//! The test process itself stays outside; `netns_agent.py` reaches in for
//! it: [`Netns::is_listening`] probes a port inside, and [`Netns::forward`]
//! relays a port on the host's 127.0.0.1 to an address inside (RPC,
//! tracker scrapes). Every port inside a fresh namespace is free, so
//! [`Netns::next_port`] just counts.
//!
//! Needs root and `ip` (iproute2).

use std::fmt;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use super::{interop_dir, require_program, spawn_line_child, LineChild, PYTHON};

/// How many addresses (`10.77.0.1` up) a namespace has.
pub const HOSTS: u8 = 40;

/// Prefix of every namespace the harness makes.
const PREFIX: &str = "rvt-";

/// A network namespace made by the test; deleted on drop.
pub struct Netns {
    name: String,
    agent: Mutex<Agent>,
    next_host: AtomicU8,
    next_port: AtomicU16,
}

struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl fmt::Debug for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netns").field("name", &self.name).finish()
    }
}

/// Runs `ip ARGS...`; `Err` with its output if it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}{}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// Deletes namespaces named `rvt-<pid>-<n>` whose test process is gone.
fn delete_stale() {
    let Ok(o) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Netns {
    /// Makes a fresh namespace with addresses `10.77.0.1` to
    /// `10.77.0.{HOSTS}` and starts its agent. Fails the test (naming what
    /// is missing) if it cannot: this needs root.
    pub fn create() -> Arc<Netns> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        require_program("ip", "iproute2");
        require_program(PYTHON, "python3");
        delete_stale();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]).unwrap_or_else(|e| {
            panic!("cannot make a network namespace (this test needs root): {e}")
        });
        // From here on the guard deletes the namespace, whatever fails next.
        let guard = NameGuard(name.clone());
        let n = name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"]).unwrap();
        // A veth pair with both ends inside: an interface that holds the
        // addresses and leads nowhere. If veth is unavailable, the
        // addresses go on the namespace's own `lo`, which works as well.
        let dev = match ip(&[
            "-n", n, "link", "add", "rvt0", "type", "veth", "peer", "name", "rvt1",
        ]) {
            Ok(()) => {
                ip(&["-n", n, "link", "set", "rvt0", "up"]).unwrap();
                ip(&["-n", n, "link", "set", "rvt1", "up"]).unwrap();
                "rvt0"
            }
            Err(_) => "lo",
        };
        for host in 1..=HOSTS {
            ip(&[
                "-n",
                n,
                "addr",
                "add",
                &format!("10.77.0.{host}/24"),
                "dev",
                dev,
            ])
            .unwrap();
        }
        let agent = Agent::start(&name);
        std::mem::forget(guard); // the Netns deletes it from now on
        Arc::new(Netns {
            name,
            agent: Mutex::new(agent),
            next_host: AtomicU8::new(1),
            next_port: AtomicU16::new(20_000),
        })
    }

    /// Its name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `10.77.0.n` (1 ≤ n ≤ [`HOSTS`]).
    pub fn host(&self, n: u8) -> Ipv4Addr {
        assert!((1..=HOSTS).contains(&n), "no host {n} in {}", self.name);
        Ipv4Addr::new(10, 77, 0, n)
    }

    /// The next address not handed out yet.
    pub fn next_ip(&self) -> Ipv4Addr {
        self.host(self.next_host.fetch_add(1, Ordering::Relaxed))
    }

    /// A port not handed out yet (all are free in a fresh namespace).
    pub fn next_port(&self) -> u16 {
        self.next_port.fetch_add(1, Ordering::Relaxed)
    }

    /// `ip netns exec NAME program`: add the arguments and spawn it.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Whether something accepts TCP connections at `addr` inside.
    pub fn is_listening(&self, addr: SocketAddr) -> bool {
        let answer = self.ask(json!({"cmd": "probe", "addr": addr.to_string()}));
        answer["listening"] == Value::Bool(true)
    }

    /// An address on the host's 127.0.0.1 whose connections are relayed to
    /// `addr` inside the namespace. A connection is accepted at once and
    /// closed if `addr` does not accept it, so use it for requests (HTTP),
    /// not to see whether `addr` listens ([`Netns::is_listening`]).
    pub fn forward(&self, addr: SocketAddr) -> SocketAddr {
        let answer = self.ask(json!({"cmd": "forward", "addr": addr.to_string()}));
        let port = answer["port"].as_u64().expect("port") as u16;
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    fn ask(&self, cmd: Value) -> Value {
        let mut agent = self.agent.lock().unwrap_or_else(|e| e.into_inner());
        agent.ask(&self.name, cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(agent) = self.agent.get_mut() {
            agent.stop();
        }
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: {e}");
        }
    }
}

/// Deletes the namespace while [`Netns::create`] is still setting it up.
struct NameGuard(String);

impl Drop for NameGuard {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

impl Agent {
    fn start(name: &str) -> Agent {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(interop_dir().join("netns_agent.py")).arg(name);
        let LineChild {
            child,
            stdin,
            lines,
            stderr,
        } = spawn_line_child(&mut cmd);
        let mut agent = Agent {
            child,
            stdin,
            lines,
            stderr,
        };
        let ready = agent.read(name);
        assert_eq!(ready["event"], "ready", "netns agent for {name}: {ready}");
        agent
    }

    fn read(&mut self, name: &str) -> Value {
        match self.lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("netns agent for {name}: bad line {line:?}: {e}")),
            Err(RecvTimeoutError::Timeout) => panic!(
                "netns agent for {name}: no answer in 20 s; stderr:\n{}",
                String::from_utf8_lossy(&self.stderr.lock().unwrap())
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "netns agent for {name} exited ({status:?}); stderr:\n{}",
                    String::from_utf8_lossy(&self.stderr.lock().unwrap())
                )
            }
        }
    }

    fn ask(&mut self, name: &str, cmd: Value) -> Value {
        let stdin = self.stdin.as_mut().expect("agent stdin open");
        writeln!(stdin, "{cmd}")
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("netns agent for {name}: cannot send {cmd}: {e}"));
        let answer = self.read(name);
        assert_eq!(
            answer["ok"],
            Value::Bool(true),
            "netns agent for {name}: {cmd} failed: {answer}"
        );
        answer
    }

    fn stop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Incoming connections: a listening socket per address family on one port;
//! the start of each handshake names the torrent the peer wants: in the
//! clear (`19`, `BitTorrent protocol`, ..., the info-hash), or hidden in an
//! MSE handshake (see [`crate::encryption`]), told apart by the first 20
//! bytes. The session's [`Encryption`] policy says which are taken.
//!
//! Everything a stranger can make us hold is bounded: at most
//! [`MAX_PENDING_HANDSHAKES`] connections may be waiting to send their
//! handshake (more are closed at once), each for at most
//! [`HANDSHAKE_TIMEOUT`]; once the torrent is known, its `max_peers` bounds the
//! connections it takes on.
//!
//! Tasks: one accept loop per socket and one per pending handshake, all on
//! the listener's `TaskTracker`, ended by [`Listener::close`] (or at once
//! when the listener is dropped). A connection routed to a torrent becomes a
//! task of that torrent's run (`Shared::spawn_peer`), holding one of the
//! session's connections.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::BytesMut;
use rivulet_core::InfoHash;
use rivulet_wire::mse::is_plaintext_start;
use rivulet_wire::HandshakePrefix;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::encryption::{Encryption, PeerStream, Transport};
use crate::torrent::Shared;

/// Connections that may be waiting for their handshake at once.
pub const MAX_PENDING_HANDSHAKES: usize = 64;
/// How long an incoming connection has to send the start of its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Ports tried after the one asked for, when it is taken.
pub const PORT_TRIES: u16 = 10;

/// Why we cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The port asked for and the next ones are all taken.
    #[error("port {first} is in use, and so are the next {} ports; choose another with --port", PORT_TRIES - 1)]
    PortsInUse {
        /// The port asked for.
        first: u16,
    },
    /// The address cannot be listened on (not ours, no permission, ...).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
}

type Torrents = Arc<Mutex<HashMap<InfoHash, Weak<Shared>>>>;

/// Accepts peers for the torrents added to it, until closed or dropped.
#[derive(Debug)]
pub struct Listener {
    addrs: Vec<SocketAddr>,
    torrents: Torrents,
    pending: Arc<Semaphore>,
    encryption: Encryption,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Listener {
    /// Listens on `port` (the next free one if it is taken, up to
    /// [`PORT_TRIES`] in all; port 0: any free port) at `ip`, or when `ip` is
    /// `None` at every IPv4 address and, if the system has IPv6, every IPv6
    /// address. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ListenError::PortsInUse`] when no port is free,
    /// [`ListenError::Bind`] for anything else.
    pub fn bind(
        ip: Option<IpAddr>,
        port: u16,
        encryption: Encryption,
    ) -> Result<Self, ListenError> {
        let ips: Vec<IpAddr> = match ip {
            Some(ip) => vec![ip],
            None => vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ],
        };
        let tries = if port == 0 {
            PORT_TRIES
        } else {
            PORT_TRIES.min(u16::MAX - port + 1)
        };
        for i in 0..tries {
            let want = if port == 0 { 0 } else { port + i };
            match bind_all(&ips, want, ip.is_none()) {
                Ok(sockets) => return Listener::start(sockets, encryption),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => {
                    return Err(ListenError::Bind {
                        addr: SocketAddr::new(
                            ips.first()
                                .copied()
                                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                            want,
                        ),
                        source: e,
                    })
                }
            }
        }
        Err(ListenError::PortsInUse { first: port })
    }

    fn start(
        sockets: Vec<std::net::TcpListener>,
        encryption: Encryption,
    ) -> Result<Self, ListenError> {
        let torrents: Torrents = Arc::default();
        let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
        let mut addrs = Vec::new();
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        for std_listener in sockets {
            let addr = std_listener.local_addr().map_err(|e| ListenError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source: e,
            })?;
            let listener = TcpListener::from_std(std_listener)
                .map_err(|e| ListenError::Bind { addr, source: e })?;
            addrs.push(addr);
            let accept = accept_loop(
                listener,
                Arc::clone(&torrents),
                Arc::clone(&pending),
                tasks.clone(),
                cancel.clone(),
                encryption,
            );
            tasks.spawn(cancel.clone().run_until_cancelled_owned(accept));
        }
        Ok(Listener {
            addrs,
            torrents,
            pending,
            encryption,
            tasks,
            cancel,
        })
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.addrs.first().map_or(0, SocketAddr::port)
    }

    /// The addresses listened on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Routes peers that ask for `shared`'s torrent to it (for as long as it
    /// exists).
    pub fn add(&self, shared: &Arc<Shared>) {
        self.torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(shared.info_hash, Arc::downgrade(shared));
    }

    /// Takes the incoming uTP connections that arrive on `connections`
    /// (from the session's UDP port), and routes them like TCP ones, within
    /// the same bound on pending handshakes.
    pub(crate) fn accept_utp(
        &self,
        mut connections: tokio::sync::mpsc::Receiver<(crate::utp::UtpStream, SocketAddr)>,
    ) {
        let (torrents, pending, tasks, cancel, encryption) = (
            Arc::clone(&self.torrents),
            Arc::clone(&self.pending),
            self.tasks.clone(),
            self.cancel.clone(),
            self.encryption,
        );
        let accept = async move {
            while let Some((stream, addr)) = connections.recv().await {
                let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
                    tracing::debug!(%addr, "too many pending handshakes: uTP connection reset");
                    stream.abort();
                    continue;
                };
                let handshake = incoming(
                    Transport::Utp(stream),
                    addr,
                    Arc::clone(&torrents),
                    permit,
                    encryption,
                );
                tasks.spawn(cancel.clone().run_until_cancelled_owned(handshake));
            }
        };
        self.tasks
            .spawn(self.cancel.clone().run_until_cancelled_owned(accept));
    }

    /// Stops routing peers to a torrent.
    pub fn remove(&self, info_hash: &InfoHash) {
        self.torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(info_hash);
    }
}

impl Listener {
    /// Stops listening: closes the sockets, drops pending handshakes, and
    /// waits until every task of the listener has ended (connections already
    /// handed to torrents are theirs).
    pub async fn close(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Each task ends at its next poll.
        self.cancel.cancel();
    }
}

/// Binds `port` at every address in `ips` (the same port for all: the first
/// binding fixes it when `port` is 0). With `optional_v6`, an IPv6 socket the
/// system cannot make (no IPv6) is left out rather than an error.
fn bind_all(
    ips: &[IpAddr],
    port: u16,
    optional_v6: bool,
) -> io::Result<Vec<std::net::TcpListener>> {
    let mut out: Vec<std::net::TcpListener> = Vec::new();
    let mut port = port;
    for ip in ips {
        match bind_one(SocketAddr::new(*ip, port)) {
            Ok(l) => {
                if port == 0 {
                    port = l.local_addr()?.port();
                }
                out.push(l);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
            Err(e) if optional_v6 && ip.is_ipv6() && !out.is_empty() => {
                tracing::debug!(error = %e, "no IPv6 listener");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // One socket per family, so that [::] does not also take IPv4 (and
        // collide with the IPv4 socket on the same port).
        socket.set_only_v6(true)?;
    }
    // A restart must not wait for the last run's connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

async fn accept_loop(
    listener: TcpListener,
    torrents: Torrents,
    pending: Arc<Semaphore>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    encryption: Encryption,
) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                // Over the bound: closed at once, costing us nothing more.
                let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
                    tracing::debug!(%addr, "too many pending handshakes: closed");
                    continue;
                };
                // Pending handshakes end with the listener.
                let handshake = incoming(
                    Transport::Tcp(stream),
                    addr,
                    Arc::clone(&torrents),
                    permit,
                    encryption,
                );
                tasks.spawn(cancel.clone().run_until_cancelled_owned(handshake));
            }
            Err(e) => {
                // Out of file descriptors, typically: give the system a moment
                // rather than spinning on the same error.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How an incoming connection starts.
enum Start {
    /// The plaintext handshake, as far as the info-hash.
    Plaintext(HandshakePrefix),
    /// Something else: an MSE handshake, if anything.
    Mse,
}

async fn incoming(
    mut stream: Transport,
    addr: SocketAddr,
    torrents: Torrents,
    permit: OwnedSemaphorePermit,
    encryption: Encryption,
) {
    // One deadline for everything before the torrent is known, the
    // encryption handshake included: a peer that sends too little too
    // slowly is dropped when it passes.
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let mut rbuf = BytesMut::with_capacity(4096);
    let start = tokio::time::timeout_at(deadline, async {
        loop {
            if !is_plaintext_start(&rbuf) {
                return Ok(Start::Mse);
            }
            if let Some(p) = HandshakePrefix::parse(&rbuf)? {
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Start::Plaintext(p));
            }
            if stream.read_buf(&mut rbuf).await? == 0 {
                return Err("closed before its handshake".into());
            }
        }
    })
    .await;
    let start = match start {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "bad incoming handshake");
            stream.abort();
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "incoming handshake timed out");
            stream.abort();
            return;
        }
    };
    let (info_hash, peer_stream) = match start {
        Start::Plaintext(_) if !encryption.accepts_plaintext() => {
            tracing::debug!(%addr, "plaintext peer refused: encryption is required");
            stream.abort();
            return;
        }
        Start::Plaintext(prefix) => {
            if !torrents
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&prefix.info_hash)
            {
                // Over uTP the peer learns at once (a reset), and
                // libtorrent then tries TCP; over TCP the connection just
                // closes.
                tracing::debug!(%addr, info_hash = %prefix.info_hash.to_hex(), "incoming peer for a torrent we do not have");
                stream.abort();
                return;
            }
            (prefix.info_hash, PeerStream::plaintext(stream, rbuf))
        }
        Start::Mse if !encryption.accepts_mse() => {
            tracing::debug!(%addr, "encrypted peer refused: encryption is off");
            stream.abort();
            return;
        }
        Start::Mse => {
            let ours: Vec<InfoHash> = torrents
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .copied()
                .collect();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match crate::encryption::accept(stream, rbuf, ours, encryption, left).await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "incoming encryption handshake failed");
                    return;
                }
            }
        }
    };
    let shared = torrents
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&info_hash)
        .and_then(Weak::upgrade);
    let Some(shared) = shared else {
        tracing::debug!(%addr, info_hash = %info_hash.to_hex(), "incoming peer for a torrent gone meanwhile");
        return;
    };
    if shared.is_shutting_down() || shared.is_banned(addr.ip()) {
        return;
    }
    let Ok(connection) = shared.connection_permit() else {
        tracing::debug!(%addr, "the session has no connection left: closed");
        return;
    };
    drop(permit);
    let span = tracing::debug_span!(parent: &shared.span, "peer", %addr, incoming = true);
    let peer_shared = Arc::clone(&shared);
    shared.spawn_peer(
        crate::peer::accept_and_run(peer_shared, peer_stream, addr).instrument(span),
        connection,
    );
}

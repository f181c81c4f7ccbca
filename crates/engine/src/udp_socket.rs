//! One UDP socket per address family, shared by every UDP tracker request of
//! a session (or of one announcer outside a session, or of one scrape).
//!
//! The socket is not connected, so it can talk to every tracker. One receive
//! task reads it and hands each datagram to the requests registered for the
//! address it came from; datagrams from anywhere else are dropped, as a
//! connected socket would. Requests to the same tracker all see its
//! datagrams, and each request's `UdpTrackerClient` keeps only those with its
//! own transaction ids: that is the demultiplexing by transaction id.
//!
//! The receive tasks are on the sockets' `TaskTracker`; [`UdpSockets::close`]
//! ends them and waits (a session does at shutdown), dropping the last
//! handle on a socket aborts its task.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Datagrams queued for one request before further ones are dropped (like
/// datagrams lost on the way): a tracker cannot make us buffer more.
const QUEUE: usize = 16;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// The sockets, opened when first needed (so that making an announcer needs
/// no runtime and opens nothing when every tracker is HTTP).
#[derive(Debug)]
pub(crate) struct UdpSockets {
    bind: Option<IpAddr>,
    v4: tokio::sync::Mutex<Option<Arc<Endpoint>>>,
    v6: tokio::sync::Mutex<Option<Arc<Endpoint>>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

/// Who is waiting for datagrams from which address, each with an id for
/// removal.
type Routes = HashMap<SocketAddr, Vec<(u64, mpsc::Sender<Bytes>)>>;

/// One socket and its receive task.
#[derive(Debug)]
struct Endpoint {
    socket: Arc<UdpSocket>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU64,
    /// The receive task (`None` when cancelled).
    receiver: JoinHandle<Option<()>>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // The task holds the socket; without this it would outlive every
        // user of the socket.
        self.receiver.abort();
    }
}

/// A request's hold on a shared socket: it sends to one tracker and receives
/// that tracker's datagrams until dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    endpoint: Arc<Endpoint>,
    addr: SocketAddr,
    id: u64,
    /// Datagrams from the tracker. Ends only if the receive task ended (the
    /// socket failed); the request then runs out its retransmissions as if
    /// the tracker were silent.
    pub(crate) packets: mpsc::Receiver<Bytes>,
}

/// Routes are plain bookkeeping: a holder that panicked leaves nothing half
/// done that matters, so carry on with them.
fn lock(routes: &Mutex<Routes>) -> MutexGuard<'_, Routes> {
    routes.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The key of `addr` in the routes: IP and port only, so an IPv6 flow label
/// or scope id in a received address does not hide it.
fn key(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port())
}

impl UdpSockets {
    /// Sockets bound to `bind` (for trackers of its family) or to the
    /// unspecified address.
    pub(crate) fn new(bind: Option<IpAddr>) -> Self {
        UdpSockets {
            bind,
            v4: tokio::sync::Mutex::new(None),
            v6: tokio::sync::Mutex::new(None),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// Closes the sockets: their receive tasks end (requests still
    /// registered see their tracker fall silent), and no socket opens again.
    pub(crate) async fn close(&self) {
        self.cancel.cancel();
        self.tasks.close();
        for slot in [&self.v4, &self.v6] {
            slot.lock().await.take();
        }
        self.tasks.wait().await;
    }

    /// Registers for datagrams from `addr` on the socket of its family,
    /// opening that socket first if needed (or again, if its receive task
    /// ended).
    pub(crate) async fn register(&self, addr: SocketAddr) -> std::io::Result<Registration> {
        let slot = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        let endpoint = {
            let mut slot = slot.lock().await;
            if self.cancel.is_cancelled() {
                return Err(std::io::Error::other("the session is shutting down"));
            }
            match slot.as_ref() {
                Some(e) if !e.receiver.is_finished() => Arc::clone(e),
                _ => {
                    let e = Arc::new(
                        Endpoint::open(self.bind_addr(addr), &self.tasks, &self.cancel).await?,
                    );
                    *slot = Some(Arc::clone(&e));
                    e
                }
            }
        };
        let (tx, packets) = mpsc::channel(QUEUE);
        let id = endpoint.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&endpoint.routes)
            .entry(key(addr))
            .or_default()
            .push((id, tx));
        Ok(Registration {
            endpoint,
            addr,
            id,
            packets,
        })
    }

    fn bind_addr(&self, tracker: SocketAddr) -> SocketAddr {
        match self.bind {
            // The family must match the tracker's, or the socket cannot reach it.
            Some(ip) if ip.is_ipv4() == tracker.is_ipv4() => SocketAddr::new(ip, 0),
            _ if tracker.is_ipv4() => SocketAddr::from(([0u8; 4], 0)),
            _ => SocketAddr::from(([0u16; 8], 0)),
        }
    }
}

impl Endpoint {
    async fn open(
        bind: SocketAddr,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> std::io::Result<Endpoint> {
        let socket = Arc::new(UdpSocket::bind(bind).await?);
        let routes = Arc::new(Mutex::new(Routes::new()));
        let receive = receive(Arc::clone(&socket), Arc::clone(&routes));
        let receiver = tasks.spawn(cancel.clone().run_until_cancelled_owned(receive));
        Ok(Endpoint {
            socket,
            routes,
            next_id: AtomicU64::new(0),
            receiver,
        })
    }
}

/// Reads the socket and hands each datagram to the requests waiting for its
/// sender. Ends on an error other than an ICMP report, which would otherwise
/// repeat at once.
async fn receive(socket: Arc<UdpSocket>, routes: Arc<Mutex<Routes>>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let Some(bytes) = buf.get(..n) else {
                    continue;
                };
                let packet = Bytes::copy_from_slice(bytes);
                if let Some(waiting) = lock(&routes).get(&key(from)) {
                    for (_, tx) in waiting {
                        // A full queue drops the datagram, like the network.
                        let _ = tx.try_send(packet.clone());
                    }
                }
            }
            // Some systems report an ICMP error ("port unreachable") for an
            // earlier send on the next receive, even unconnected: like a
            // lost packet, the request's schedule retransmits.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => {
                tracing::debug!(error = %e, "UDP tracker socket failed");
                return;
            }
        }
    }
}

impl Registration {
    /// Sends `packet` to the tracker.
    pub(crate) async fn send(&self, packet: &[u8]) -> std::io::Result<usize> {
        self.endpoint.socket.send_to(packet, self.addr).await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut routes = lock(&self.endpoint.routes);
        let k = key(self.addr);
        if let Some(waiting) = routes.get_mut(&k) {
            waiting.retain(|(id, _)| *id != self.id);
            if waiting.is_empty() {
                routes.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two requests to two trackers share one socket; each sees only its
    /// tracker's datagrams, and a datagram from elsewhere reaches neither.
    #[tokio::test]
    async fn one_socket_routes_by_sender() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sockets = UdpSockets::new(None);
        let mut ra = sockets.register(a.local_addr().unwrap()).await.unwrap();
        let mut rb = sockets.register(b.local_addr().unwrap()).await.unwrap();
        ra.send(b"to a").await.unwrap();
        rb.send(b"to b").await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from_a) = a.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"to a");
        let (n, from_b) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"to b");
        assert_eq!(from_a, from_b, "one socket for both");

        stranger.send_to(b"stray", from_a).await.unwrap();
        b.send_to(b"from b", from_b).await.unwrap();
        a.send_to(b"from a", from_a).await.unwrap();
        assert_eq!(&rb.packets.recv().await.unwrap()[..], b"from b");
        assert_eq!(&ra.packets.recv().await.unwrap()[..], b"from a");
        assert!(ra.packets.try_recv().is_err() && rb.packets.try_recv().is_err());

        // A dropped registration is forgotten; the socket stays for the rest.
        drop(ra);
        let routes = lock(&rb.endpoint.routes);
        assert_eq!(routes.len(), 1);
        assert!(routes.contains_key(&b.local_addr().unwrap()));
    }
}

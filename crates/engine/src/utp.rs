//! uTP connections on the session's UDP port: the tokio driver of
//! [`rivulet_utp::Endpoint`] and the byte streams the peer driver reads and
//! writes.
//!
//! One task owns the port's sockets (`udp_port::PortSockets`): it reads every
//! datagram, hands uTP ones to the endpoint and the others (KRPC) to the
//! DHT, sends what the endpoint has, and wakes the endpoint's timers. The
//! endpoint itself sits behind a mutex that streams lock for a moment to
//! read or write: a [`UtpStream`] copies bytes in and out of its
//! connection's buffers and, when there is nothing to read or no room to
//! write, leaves a waker that the task wakes on the connection's events.
//! Writes and reads wake the task (a `Notify`), which sends the packets
//! they allow.
//!
//! Incoming connections go to the listener (a bounded channel; when it is
//! full the connection is reset), which routes them like TCP ones; one for
//! a torrent we do not have is reset at once ([`UtpStream::abort`]), so
//! that libtorrent tries TCP without waiting for a timeout.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rivulet_utp::{CloseReason, Config, ConnEvent, ConnId, Endpoint, Event};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::udp_port::{self, PortSockets};

/// Incoming uTP connections waiting for the listener.
const ACCEPT_QUEUE: usize = 64;
/// Datagrams taken from a socket in one turn before the endpoint sends.
const RECV_BATCH: usize = 64;

/// What a stream waits for.
#[derive(Default)]
struct Slot {
    reader: Option<Waker>,
    writer: Option<Waker>,
    connected: Option<oneshot::Sender<io::Result<()>>>,
    eof: bool,
    closed: Option<CloseReason>,
}

struct State {
    endpoint: Endpoint,
    slots: HashMap<ConnId, Slot>,
    /// Reused for reads (see [`UtpStream`]'s `poll_read`).
    scratch: Vec<u8>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the task: a stream wrote, read or closed.
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Each call leaves the endpoint consistent: usable after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The session's uTP endpoint: makes outgoing connections. Cheap to clone.
#[derive(Clone)]
pub struct UtpSocket {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UtpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UtpSocket")
    }
}

fn closed_error(reason: Option<CloseReason>) -> io::Error {
    match reason {
        Some(CloseReason::TimedOut) => io::ErrorKind::TimedOut.into(),
        Some(CloseReason::Refused) => io::ErrorKind::ConnectionRefused.into(),
        Some(CloseReason::Finished) => io::ErrorKind::BrokenPipe.into(),
        _ => io::ErrorKind::ConnectionReset.into(),
    }
}

impl UtpSocket {
    /// Opens a uTP connection to `addr`; resolves once the peer answered
    /// the SYN (or refused it, or did not answer: about 7 s).
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<UtpStream> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = self.shared.lock();
            let id = st
                .endpoint
                .connect(Instant::now().into_std(), addr)
                .map_err(io::Error::other)?;
            st.slots.insert(
                id,
                Slot {
                    connected: Some(tx),
                    ..Slot::default()
                },
            );
            id
        };
        self.shared.wake.notify_one();
        let stream = UtpStream::new(Arc::clone(&self.shared), id, addr);
        match rx.await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::ErrorKind::ConnectionAborted.into()),
        }
    }
}

/// Starts the task of the session's UDP port: uTP on `sockets`, taking
/// incoming connections when `listen` (to the returned receiver), the other
/// datagrams to `dht`. Ends when `cancel` is cancelled.
pub(crate) fn start(
    sockets: PortSockets,
    listen: bool,
    dht: Option<mpsc::Sender<(SocketAddr, Vec<u8>)>>,
    cancel: CancellationToken,
) -> (
    UtpSocket,
    mpsc::Receiver<(UtpStream, SocketAddr)>,
    JoinHandle<()>,
) {
    let now = Instant::now().into_std();
    let mut endpoint = Endpoint::new(Config::default(), now, rand::random());
    endpoint.set_listening(listen);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            endpoint,
            slots: HashMap::new(),
            scratch: vec![0; 64 * 1024],
        }),
        wake: Notify::new(),
    });
    let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_QUEUE);
    let task = tokio::spawn(run(Arc::clone(&shared), sockets, dht, accept_tx, cancel));
    (UtpSocket { shared }, accept_rx, task)
}

async fn run(
    shared: Arc<Shared>,
    sockets: PortSockets,
    dht: Option<mpsc::Sender<(SocketAddr, Vec<u8>)>>,
    accept: mpsc::Sender<(UtpStream, SocketAddr)>,
    cancel: CancellationToken,
) {
    let mut buf4 = vec![0u8; 64 * 1024];
    let mut buf6 = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(2048);
    loop {
        let wake_at = {
            let mut st = shared.lock();
            let now = Instant::now().into_std();
            while let Some(to) = st.endpoint.poll_transmit(now, &mut out) {
                sockets.send(to, &out);
            }
            while let Some(event) = st.endpoint.poll_event() {
                on_event(&shared, &mut st, event, &accept);
            }
            st.endpoint.next_timeout().map_or_else(
                || Instant::now() + Duration::from_secs(60),
                Instant::from_std,
            )
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            r = udp_port::recv(&sockets.v4, &mut buf4) => {
                if let Some((n, from)) = r {
                    take(&shared, &sockets.v4, &mut buf4, (n, from), dht.as_ref());
                }
            }
            r = udp_port::recv(&sockets.v6, &mut buf6) => {
                if let Some((n, from)) = r {
                    take(&shared, &sockets.v6, &mut buf6, (n, from), dht.as_ref());
                }
            }
            () = shared.wake.notified() => {}
            () = tokio::time::sleep_until(wake_at) => {
                shared.lock().endpoint.on_timeout(Instant::now().into_std());
            }
        }
    }
    // Every connection ends with the session: wake whoever waits.
    let mut st = shared.lock();
    for (_, slot) in st.slots.drain() {
        wake_all(slot, Some(CloseReason::ResetLocally));
    }
}

/// Hands the datagram in `buf` and the ones waiting behind it (up to
/// [`RECV_BATCH`]) to the endpoint or the DHT.
fn take(
    shared: &Shared,
    socket: &Option<Arc<tokio::net::UdpSocket>>,
    buf: &mut [u8],
    first: (usize, SocketAddr),
    dht: Option<&mpsc::Sender<(SocketAddr, Vec<u8>)>>,
) {
    let mut st = shared.lock();
    let mut next = Some(first);
    let mut taken = 0;
    while let Some((n, from)) = next {
        if let Some(d) = buf.get(..n) {
            if rivulet_utp::is_utp(d) {
                st.endpoint
                    .handle_datagram(Instant::now().into_std(), from, d);
            } else if let Some(dht) = dht {
                // A DHT too busy to keep up loses the datagram, like the
                // network would.
                let _ = dht.try_send((from, d.to_vec()));
            }
        }
        taken += 1;
        next = match socket {
            Some(s) if taken < RECV_BATCH => s.try_recv_from(buf).ok(),
            _ => None,
        };
    }
}

fn wake_all(mut slot: Slot, closed: Option<CloseReason>) {
    wake_slot(&mut slot, closed);
}

/// Wakes whoever waits on `slot`: the reader, the writer, and a connect
/// (which fails: the connection ended before it was made).
fn wake_slot(slot: &mut Slot, closed: Option<CloseReason>) {
    if let Some(w) = slot.reader.take() {
        w.wake();
    }
    if let Some(w) = slot.writer.take() {
        w.wake();
    }
    if let Some(tx) = slot.connected.take() {
        let _ = tx.send(Err(closed_error(closed)));
    }
}

fn on_event(
    shared: &Arc<Shared>,
    st: &mut State,
    event: Event,
    accept: &mpsc::Sender<(UtpStream, SocketAddr)>,
) {
    match event {
        Event::Incoming { conn, addr } => {
            st.slots.insert(conn, Slot::default());
            let stream = UtpStream::new(Arc::clone(shared), conn, addr);
            if let Err(e) = accept.try_send((stream, addr)) {
                // The listener is behind (or gone): refuse at once. The
                // stream dropped inside the error would lock the state we
                // hold: forget it first.
                let (stream, _) = e.into_inner();
                stream.detach();
                st.slots.remove(&conn);
                let _ = st.endpoint.reset(conn);
            }
        }
        Event::Conn { conn, event } => {
            let Some(slot) = st.slots.get_mut(&conn) else {
                return;
            };
            match event {
                ConnEvent::Connected => {
                    if let Some(tx) = slot.connected.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                ConnEvent::Readable => {
                    if let Some(w) = slot.reader.take() {
                        w.wake();
                    }
                }
                ConnEvent::Writable => {
                    if let Some(w) = slot.writer.take() {
                        w.wake();
                    }
                }
                ConnEvent::Eof => {
                    slot.eof = true;
                    if let Some(w) = slot.reader.take() {
                        w.wake();
                    }
                }
                ConnEvent::Closed(reason) => {
                    slot.closed = Some(reason);
                    slot.eof |= reason == CloseReason::Finished;
                    wake_slot(slot, Some(reason));
                }
            }
        }
    }
}

/// One uTP connection as a byte stream. Dropping it (both halves, once
/// split) closes the connection gracefully (FIN); [`UtpStream::abort`]
/// resets it.
pub struct UtpStream {
    conn: Arc<ConnRef>,
    addr: SocketAddr,
}

impl std::fmt::Debug for UtpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UtpStream({})", self.addr)
    }
}

struct ConnRef {
    shared: Arc<Shared>,
    id: ConnId,
    /// Set when the stream must not touch the endpoint when dropped.
    detached: std::sync::atomic::AtomicBool,
}

impl Drop for ConnRef {
    fn drop(&mut self) {
        if self.detached.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        {
            let mut st = self.shared.lock();
            st.slots.remove(&self.id);
            let _ = st.endpoint.close(self.id);
        }
        self.shared.wake.notify_one();
    }
}

impl UtpStream {
    fn new(shared: Arc<Shared>, id: ConnId, addr: SocketAddr) -> Self {
        UtpStream {
            conn: Arc::new(ConnRef {
                shared,
                id,
                detached: std::sync::atomic::AtomicBool::new(false),
            }),
            addr,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.addr
    }

    fn detach(&self) {
        self.conn
            .detached
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Resets the connection at once (a RESET, not a FIN).
    pub fn abort(self) {
        self.detach();
        {
            let mut st = self.conn.shared.lock();
            st.slots.remove(&self.conn.id);
            let _ = st.endpoint.reset(self.conn.id);
        }
        self.conn.shared.wake.notify_one();
    }

    /// Splits the stream into a reading and a writing half; the connection
    /// closes when both are dropped.
    pub fn into_split(self) -> (UtpReadHalf, UtpWriteHalf) {
        (
            UtpReadHalf {
                conn: Arc::clone(&self.conn),
            },
            UtpWriteHalf { conn: self.conn },
        )
    }
}

/// The reading half of a [`UtpStream`].
pub struct UtpReadHalf {
    conn: Arc<ConnRef>,
}

/// The writing half of a [`UtpStream`].
pub struct UtpWriteHalf {
    conn: Arc<ConnRef>,
}

fn poll_read(conn: &ConnRef, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
    let mut st = conn.shared.lock();
    let State {
        endpoint,
        slots,
        scratch,
    } = &mut *st;
    let want = buf.remaining().min(scratch.len());
    let read = match scratch.get_mut(..want) {
        Some(dst) => endpoint.read(conn.id, dst),
        None => Ok(0),
    };
    match read {
        Ok(n) if n > 0 => {
            if let Some(src) = scratch.get(..n) {
                buf.put_slice(src);
            }
            drop(st);
            // Reading may reopen the window: the task tells the peer.
            conn.shared.wake.notify_one();
            Poll::Ready(Ok(()))
        }
        _ if want == 0 => Poll::Ready(Ok(())),
        _ => match slots.get_mut(&conn.id) {
            Some(slot) if slot.eof => Poll::Ready(Ok(())),
            Some(slot) if slot.closed.is_some() => Poll::Ready(Err(closed_error(slot.closed))),
            Some(slot) => {
                slot.reader = Some(cx.waker().clone());
                Poll::Pending
            }
            None => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
        },
    }
}

fn poll_write(conn: &ConnRef, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
    if data.is_empty() {
        return Poll::Ready(Ok(0));
    }
    let mut st = conn.shared.lock();
    match st.endpoint.write(conn.id, data) {
        Ok(0) => match st.slots.get_mut(&conn.id) {
            Some(slot) if slot.closed.is_none() => {
                slot.writer = Some(cx.waker().clone());
                Poll::Pending
            }
            Some(slot) => Poll::Ready(Err(closed_error(slot.closed))),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        },
        Ok(n) => {
            drop(st);
            conn.shared.wake.notify_one();
            Poll::Ready(Ok(n))
        }
        Err(_) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
    }
}

fn poll_write_vectored(
    conn: &ConnRef,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    let mut total = 0;
    for b in bufs.iter().filter(|b| !b.is_empty()) {
        match poll_write(conn, cx, b) {
            Poll::Ready(Ok(n)) => {
                total += n;
                if n < b.len() {
                    break;
                }
            }
            Poll::Ready(Err(e)) if total == 0 => return Poll::Ready(Err(e)),
            Poll::Pending if total == 0 => return Poll::Pending,
            _ => break,
        }
    }
    Poll::Ready(Ok(total))
}

fn shutdown(conn: &ConnRef) {
    let _ = conn.shared.lock().endpoint.close(conn.id);
    conn.shared.wake.notify_one();
}

macro_rules! impl_read {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                poll_read(&self.conn, cx, buf)
            }
        }
    };
}

impl_read!(UtpReadHalf);
impl_read!(UtpStream);

macro_rules! impl_write {
    ($t:ty) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                data: &[u8],
            ) -> Poll<io::Result<usize>> {
                poll_write(&self.conn, cx, data)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                poll_write_vectored(&self.conn, cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                // Written bytes are in the connection's send buffer; the
                // task sends them as the window allows.
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                shutdown(&self.conn);
                Poll::Ready(Ok(()))
            }
        }
    };
}

impl_write!(UtpWriteHalf);
impl_write!(UtpStream);

//! The tokio driver of a peer connection: connects (or takes an accepted
//! socket), exchanges handshakes, registers with the torrent, then moves
//! bytes between the socket, the torrent's commands, the disk and the
//! [`PeerState`] until the connection ends. All protocol decisions are the
//! core's; this file only does I/O and keeps time.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rivulet_wire::{Handshake, Reserved};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::encryption::{ConnectParams, Hints, PeerReader, PeerStream, PeerWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use super::{Flow, PeerError, PeerParams, PeerState};
use crate::cache::{ChunkKey, ReadCache, CHUNK_LEN};
use crate::picker::Block;
use crate::stats::io_reason;
use crate::storage::StorageError;
use crate::torrent::{PeerCommand, PeerLink, Shared, TorrentError};

/// Most buffers handed to one vectored write.
const MAX_IOV: usize = 128;

/// How an outgoing connection ended, for the connector.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Exit {
    /// Data moved either way (the reconnect backoff starts again).
    pub useful: bool,
    /// The peer refused the encryption handshake and took plaintext: try
    /// it in plaintext first next time.
    pub plaintext_only: bool,
    /// A TCP connection was made but closed before the peer's handshake
    /// (a peer that takes uTP only does that): try uTP first next time.
    pub tcp_unusable: bool,
    /// The address is our own (the peer answered with our peer id): a
    /// tracker that names us among the peers. Never to be tried again.
    pub ourselves: bool,
}

/// Our BitTorrent handshake for `shared`'s torrent.
fn our_handshake(shared: &Shared) -> Handshake {
    let mut ours = Handshake::new(shared.info_hash, shared.config.peer_id);
    if shared.config.dht.is_some() {
        // BEP 5: we run a DHT node, and say so.
        ours.reserved |= Reserved::DHT;
    }
    ours
}

/// Connects to `addr` (from the configured local address, if any; encrypted
/// as the torrent's policy says, in plaintext first when `plaintext_first`)
/// and runs the connection until it ends.
pub(crate) async fn connect_and_run(shared: Arc<Shared>, addr: SocketAddr, hints: Hints) -> Exit {
    let params = ConnectParams {
        bind: shared.config.bind,
        connect_timeout: shared.config.connect_timeout,
        handshake_timeout: shared.config.handshake_timeout,
        encryption: shared.config.encryption,
        utp: shared.config.utp.clone(),
    };
    let hs = our_handshake(&shared).to_bytes();
    let hints = Hints {
        utp_first: hints.utp_first || shared.config.utp_first || shared.utp_hinted(addr),
        ..hints
    };
    // A run that ends stops its connection attempts at once: one waiting
    // for a peer that never answers (a uTP SYN after TCP was refused, a
    // silent address) would otherwise hold the end of the run for the
    // whole grace period.
    let connecting = crate::encryption::connect(addr, shared.info_hash, &hs, &params, hints);
    let connected = tokio::select! {
        c = connecting => c,
        () = shared.cancel.cancelled() => return Exit::default(),
    };
    let stream = match connected {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%addr, error = %e.error, "connect failed");
            let reason = match e.error {
                PeerError::Io(io) => io_reason(&io),
                PeerError::Timeout("connecting") => "no answer (timed out)".into(),
                other => other.to_string(),
            };
            shared.stats.connect_failed(addr, reason);
            return Exit::default();
        }
    };
    let plaintext_only = stream.fell_back;
    let over_tcp = !stream.utp;
    if over_tcp && hints.utp_first {
        // uTP was tried first and failed: PEX was wrong about this peer.
        shared.utp_unhint(addr);
    }
    let mut conn = Connection::new(Arc::clone(&shared), addr, false);
    let result = conn.run(stream).await;
    conn.log_end(&result);
    let tcp_unusable = over_tcp
        && !conn.registered
        && matches!(
            &result,
            Err(PeerError::ClosedInHandshake | PeerError::Io(_))
        );
    let ourselves = matches!(result, Err(PeerError::OurOwnConnection));
    if let (Err(e), false, false) = (&result, conn.registered, ourselves) {
        // Connected, but never became a peer: as unreachable to the user.
        let reason = match e {
            PeerError::Io(io) => io_reason(io),
            other => other.to_string(),
        };
        shared.stats.connect_failed(addr, reason);
    }
    Exit {
        useful: conn.useful,
        // Only once plaintext got us a peer: a peer that closes every TCP
        // connection refuses MSE and plaintext alike.
        plaintext_only: plaintext_only && conn.registered,
        tcp_unusable,
        ourselves,
    }
}

/// Opens a TCP connection to `addr`, from `bind` when given.
pub(crate) async fn connect_tcp(
    bind: Option<std::net::IpAddr>,
    addr: SocketAddr,
) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = bind {
        if ip.is_ipv4() != addr.is_ipv4() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "bound to an address of the other family",
            ));
        }
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// Runs a connection the peer opened, once the listener has read the start of
/// its handshake (in the stream's buffer, in the clear, not consumed) and
/// found the torrent.
pub(crate) async fn accept_and_run(shared: Arc<Shared>, stream: PeerStream, addr: SocketAddr) {
    let mut conn = Connection::new(shared, addr, true);
    let result = conn.run(stream).await;
    conn.log_end(&result);
}

/// Writes what the socket takes of the core's outgoing bytes, in one
/// vectored write, and returns how many it took; with nothing from the
/// core, flushes what an encrypting writer still holds (`None`).
/// Cancel-safe: a write that has not completed wrote nothing (an encrypting
/// writer takes bytes only when it completes).
async fn write_some(writer: &mut PeerWriter, core: &PeerState) -> std::io::Result<Option<usize>> {
    if core.unsent() == 0 {
        return writer.flush().await.map(|()| None);
    }
    writer
        .write_vectored(&core.transmit(MAX_IOV))
        .await
        .map(Some)
}

/// A finished read of piece data for the peer.
struct ReadDone {
    /// The chunk read (cached), or `None` for a request that straddles two
    /// chunks, read on its own.
    chunk: Option<ChunkKey>,
    /// Where the block starts in `data`.
    offset: u32,
    block: Block,
    data: Result<Bytes, StorageError>,
}

/// One connection's I/O side, and what it reports when it ends.
struct Connection {
    shared: Arc<Shared>,
    addr: SocketAddr,
    incoming: bool,
    registered: bool,
    useful: bool,
    up: u64,
    down: u64,
}

impl Connection {
    fn new(shared: Arc<Shared>, addr: SocketAddr, incoming: bool) -> Self {
        Connection {
            shared,
            addr,
            incoming,
            registered: false,
            useful: false,
            up: 0,
            down: 0,
        }
    }

    /// One line per connection that ends, with what it moved each way.
    fn log_end(&self, result: &Result<(), PeerError>) {
        let (up, down) = (self.up, self.down);
        match result {
            Ok(()) => {
                tracing::debug!(addr = %self.addr, incoming = self.incoming, up, down, "peer closed")
            }
            Err(e) => {
                tracing::debug!(addr = %self.addr, incoming = self.incoming, up, down, error = %e, "peer dropped")
            }
        }
    }

    /// Exchanges handshakes (ours first when we connected; after reading the
    /// start of theirs when they did), then runs the session.
    async fn run(&mut self, mut stream: PeerStream) -> Result<(), PeerError> {
        let shared = Arc::clone(&self.shared);
        if !stream.handshake_sent {
            stream
                .writer
                .write_all(&our_handshake(&shared).to_bytes())
                .await?;
            stream.writer.flush().await?;
        }
        let PeerStream {
            mut reader,
            writer,
            mut rbuf,
            kind,
            utp,
            ..
        } = stream;
        let theirs = timeout(shared.config.handshake_timeout, async {
            loop {
                if let Some(h) = Handshake::decode(&mut rbuf)? {
                    return Ok::<_, PeerError>(h);
                }
                if reader.read_buf(&mut rbuf).await? == 0 {
                    return Err(PeerError::ClosedInHandshake);
                }
            }
        })
        .await
        .map_err(|_| PeerError::Timeout("waiting for handshake"))??;
        if theirs.info_hash != shared.info_hash {
            return Err(PeerError::WrongTorrent);
        }
        if theirs.peer_id == shared.config.peer_id {
            return Err(PeerError::OurOwnConnection);
        }
        let fast = theirs.reserved.contains(Reserved::FAST);
        let extended = theirs.reserved.contains(Reserved::EXTENSION_PROTOCOL);
        tracing::debug!(addr = %self.addr, incoming = self.incoming, client = ?theirs.peer_id.client().map(|c| c.to_string()), fast, ?kind, utp, "handshake done");

        let (mut link, mut commands) = PeerLink::register(
            &shared,
            self.addr,
            theirs.peer_id,
            self.incoming,
            kind.is_mse(),
            utp,
        )
        .map_err(PeerError::from)?;
        self.registered = true;
        let params = PeerParams {
            ip: self.addr.ip(),
            info_hash: *shared.info_hash.as_bytes(),
            piece_count: Some(shared.info.num_pieces()),
            fast,
            extended,
            dht_port: shared
                .config
                .dht
                .as_ref()
                .filter(|_| theirs.reserved.contains(Reserved::DHT))
                .map(crate::dht::DhtHandle::port),
            request_timeout: shared.config.request_timeout,
        };
        let mut core = PeerState::new(params, Instant::now().into_std());
        let result = self
            .session(&mut core, &mut link, (reader, writer), rbuf, &mut commands)
            .await;
        self.useful = core.useful();
        (self.up, self.down) = link.totals();
        link.unregister(core.peer_pieces(), core.is_seed());
        result
    }

    async fn session(
        &mut self,
        core: &mut PeerState,
        link: &mut PeerLink,
        (mut reader, mut writer): (PeerReader, PeerWriter),
        mut rbuf: BytesMut,
        commands: &mut mpsc::UnboundedReceiver<PeerCommand>,
    ) -> Result<(), PeerError> {
        core.start(link);
        // The peer's first messages may have arrived with its handshake.
        core.receive(&mut rbuf, Instant::now().into_std(), link)?;
        let mut read: Option<JoinHandle<ReadDone>> = None;
        // One timer for the connection's life, moved only when the core's
        // wake-up changes (about once a second), not re-armed per event.
        let timer = tokio::time::sleep_until(Instant::from_std(core.next_timeout()));
        tokio::pin!(timer);
        // Rate limits: after a read (or write) that went over, no more
        // until then.
        let limits = self.shared.config.limits.clone();
        let mut read_again: Option<Instant> = None;
        let mut write_again: Option<Instant> = None;
        let until = |t: Option<Instant>| async move {
            match t {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        loop {
            let now = Instant::now().into_std();
            core.fill_pipeline(now, link);
            if read.is_none() {
                read = self.serve(core, link);
            }
            let wake = Instant::from_std(core.next_timeout());
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            // A disk queue too full: no more reading until it drains.
            let disk_busy = self.shared.disk_busy();
            tokio::select! {
                () = self.shared.disk_room(), if disk_busy => {}
                () = until(read_again), if read_again.is_some() => read_again = None,
                () = until(write_again), if write_again.is_some() => write_again = None,
                n = reader.read_buf(&mut rbuf), if !disk_busy && read_again.is_none() => {
                    let n = n?;
                    if n == 0 {
                        return Ok(());
                    }
                    let now = Instant::now();
                    let wait = limits.take_down(n, now.into_std());
                    if !wait.is_zero() {
                        read_again = Some(now + wait);
                    }
                    core.receive(&mut rbuf, now.into_std(), link)?;
                    // Make room without reallocating on every read.
                    if rbuf.capacity() - rbuf.len() < 32 * 1024 {
                        rbuf.reserve(64 * 1024);
                    }
                }
                // An encrypting writer may hold bytes it took but the
                // socket has not: they go out even when the core has
                // nothing more to send.
                written = write_some(&mut writer, core), if (core.unsent() > 0 || writer.pending() > 0) && write_again.is_none() => {
                    match written? {
                        Some(0) => return Err(PeerError::ClosedWhileSending),
                        Some(n) => {
                            let now = Instant::now();
                            let wait = limits.take_up(n, now.into_std());
                            if !wait.is_zero() {
                                write_again = Some(now + wait);
                            }
                            core.consumed(n, now.into_std());
                        }
                        None => {}
                    }
                }
                done = async { match read.as_mut() { Some(h) => h.await, None => std::future::pending().await } } => {
                    read = None;
                    let done = done.map_err(PeerError::Internal)?;
                    self.on_read(core, link, done)?;
                }
                cmd = commands.recv() => {
                    let flow = match cmd {
                        Some(cmd) => core.command(cmd, link)?,
                        None => Flow::Close,
                    };
                    if flow == Flow::Close {
                        return Ok(());
                    }
                }
                () = &mut timer => core.on_timeout(Instant::now().into_std(), link)?,
            }
        }
    }

    /// Hands the core the blocks it wants to serve that are in the read
    /// cache, until it wants one that is not: that one's chunk is read on the
    /// blocking pool (the returned task).
    fn serve(&self, core: &mut PeerState, link: &mut PeerLink) -> Option<JoinHandle<ReadDone>> {
        while let Some(b) = core.next_read() {
            let cached = self
                .shared
                .cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(b.piece, b.begin, b.len);
            match cached {
                Some(data) => core.block_read(b, &data, link),
                None => return Some(self.start_read(b)),
            }
        }
        None
    }

    fn start_read(&self, b: Block) -> JoinHandle<ReadDone> {
        let (key, _) = ReadCache::locate(b.piece, b.begin);
        let chunk_begin = key.1 * CHUNK_LEN;
        let piece_len = self.shared.piece_len(b.piece);
        let chunk_len = CHUNK_LEN.min(piece_len.saturating_sub(chunk_begin));
        // A block-aligned request always lies in one chunk; an odd one that
        // straddles two is read on its own.
        let (chunk, begin, len) = if b.begin + b.len <= chunk_begin + chunk_len {
            (Some(key), chunk_begin, chunk_len)
        } else {
            (None, b.begin, b.len)
        };
        let storage = Arc::clone(&self.shared.storage);
        let mut buf = self
            .shared
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .buffer(len as usize);
        tokio::task::spawn_blocking(move || {
            let data = storage
                .read(b.piece, begin, &mut buf)
                .map(|()| buf.freeze());
            ReadDone {
                chunk,
                offset: b.begin.saturating_sub(begin),
                block: b,
                data,
            }
        })
    }

    fn on_read(
        &self,
        core: &mut PeerState,
        link: &mut PeerLink,
        done: ReadDone,
    ) -> Result<(), PeerError> {
        let data = match done.data {
            Ok(d) => d,
            Err(e) => {
                // The data we announced is gone or unreadable: nothing served
                // from this torrent can be trusted to work any more.
                self.shared.fail(TorrentError::Read(e));
                return Err(PeerError::Storage {
                    piece: done.block.piece,
                });
            }
        };
        // The block's place in what was read (within it by construction;
        // clamped all the same).
        let end = (done.offset as usize + done.block.len as usize).min(data.len());
        let block = data.slice((done.offset as usize).min(end)..end);
        if let Some(key) = done.chunk {
            self.shared
                .cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, data);
        }
        core.block_read(done.block, &block, link);
        Ok(())
    }
}

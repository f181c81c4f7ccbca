//! Message stream encryption on real connections: the policy, the stream
//! halves that encrypt and decrypt (or pass bytes through), and the
//! handshakes that open an encrypted connection to a peer or take one from
//! it. The protocol itself is [`rivulet_wire::mse`]; this module only does
//! I/O and keeps time.
//!
//! # The policy
//!
//! [`Encryption::Prefer`] is the default: it reaches every peer, and hides
//! our connections from traffic shapers wherever the peer allows. Outgoing
//! connections start with the MSE handshake offering RC4 and plaintext (the
//! peer chooses), and fall back to a plaintext connection at once when the
//! peer does not speak MSE; that peer is then reached in plaintext first.
//! Incoming connections may be either; a peer offering both gets RC4. This
//! is what libtorrent (`pe_enabled`), Transmission ("prefer encryption")
//! and aria2 do by default. [`Encryption::Require`] refuses plaintext both
//! ways and offers only RC4; [`Encryption::Off`] speaks plaintext only and
//! drops incoming MSE handshakes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use rivulet_core::InfoHash;
use rivulet_wire::mse::{
    CryptoSet, Established, Method, MseError, MseHandshake, Progress, Rc4Stream,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::peer::PeerError;
use crate::utp::{UtpSocket, UtpStream};

/// Whether connections are encrypted (MSE/PE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Plaintext only, both ways: incoming MSE handshakes are dropped.
    Off,
    /// Encrypt where the peer can, plaintext where it cannot (the default;
    /// see the [module documentation](self)).
    #[default]
    Prefer,
    /// RC4 only, both ways: plaintext peers are refused.
    Require,
}

impl Encryption {
    /// Whether incoming plaintext handshakes are taken.
    pub fn accepts_plaintext(self) -> bool {
        self != Encryption::Require
    }

    /// Whether incoming MSE handshakes are taken.
    pub fn accepts_mse(self) -> bool {
        self != Encryption::Off
    }

    /// What we accept from an MSE peer, and choose when it offers both.
    fn responder_methods(self) -> (CryptoSet, Method) {
        match self {
            Encryption::Require => (CryptoSet::RC4, Method::Rc4),
            _ => (CryptoSet::ALL, Method::Rc4),
        }
    }
}

/// What trackers are told of `policy`.
pub fn tracker_crypto(policy: Encryption) -> rivulet_tracker::Crypto {
    match policy {
        Encryption::Off => rivulet_tracker::Crypto::Plaintext,
        Encryption::Prefer => rivulet_tracker::Crypto::Supported,
        Encryption::Require => rivulet_tracker::Crypto::Required,
    }
}

/// Bytes of ciphertext a writer encrypts ahead of the socket.
const WRITE_CHUNK: usize = 64 * 1024;

/// Reads a connection's bytes, whatever carries them.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// Writes a connection's bytes, whatever carries them.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// What carries a peer connection.
#[derive(Debug)]
pub enum Transport {
    /// TCP.
    Tcp(TcpStream),
    /// uTP over the session's UDP port.
    Utp(UtpStream),
}

impl Transport {
    /// Its reading and writing halves, each usable alone.
    fn into_split(self) -> (BoxRead, BoxWrite) {
        match self {
            Transport::Tcp(s) => {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Transport::Utp(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        }
    }

    /// Ends the connection at once: a uTP connection is reset (so that
    /// libtorrent tries TCP instead of waiting); a TCP one closed.
    pub fn abort(self) {
        match self {
            Transport::Tcp(s) => drop(s),
            Transport::Utp(s) => s.abort(),
        }
    }

    /// Whether this is uTP.
    pub fn is_utp(&self) -> bool {
        matches!(self, Transport::Utp(_))
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Utp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Utp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Utp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Utp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The reading half of a peer connection, decrypting when the connection
/// is RC4.
pub struct PeerReader<R = BoxRead> {
    inner: R,
    decrypt: Option<Rc4Stream>,
}

impl<R: AsyncRead + Unpin> AsyncRead for PeerReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let (Some(d), Some(new)) = (this.decrypt.as_mut(), buf.filled_mut().get_mut(before..)) {
            d.apply(new);
        }
        Poll::Ready(Ok(()))
    }
}

/// The writing half of a peer connection, encrypting when the connection
/// is RC4.
///
/// Encrypted bytes must reach the socket in order, so a write takes the
/// caller's bytes only once the previous ones are all out: a write returns
/// as soon as the bytes are encrypted, and [`pending`](Self::pending) says
/// whether some still wait for the socket; flush (or write more) until it
/// is zero.
pub struct PeerWriter<W = BoxWrite> {
    inner: W,
    encrypt: Option<Rc4Stream>,
    /// Encrypted bytes not yet taken by the socket, from `sent` on.
    out: Vec<u8>,
    sent: usize,
}

impl<W: AsyncWrite + Unpin> PeerWriter<W> {
    /// Bytes already accepted from the caller that the socket has not taken.
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Writes pending ciphertext until none is left or the socket is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let rest = self.out.get(self.sent..).unwrap_or_default();
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes up to [`WRITE_CHUNK`] bytes of `bufs` (all drained first),
    /// encrypts them and starts writing them; returns how many were taken.
    fn poll_encrypt(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        for b in bufs {
            let room = WRITE_CHUNK - self.out.len();
            if room == 0 {
                break;
            }
            self.out
                .extend_from_slice(b.get(..room.min(b.len())).unwrap_or_default());
        }
        let taken = self.out.len();
        if let Some(e) = self.encrypt.as_mut() {
            e.apply(&mut self.out);
        }
        // Start at once; what the socket does not take now goes out at the
        // next write or flush.
        if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for PeerWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.encrypt.is_none() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.poll_encrypt(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.encrypt.is_none() {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        this.poll_encrypt(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<R> std::fmt::Debug for PeerReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerReader")
            .field("decrypt", &self.decrypt.is_some())
            .finish()
    }
}

impl<W> std::fmt::Debug for PeerWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerWriter")
            .field("encrypt", &self.encrypt.is_some())
            .field("pending", &(self.out.len() - self.sent))
            .finish()
    }
}

/// A connection ready for the BitTorrent handshake (or past ours).
#[derive(Debug)]
pub struct PeerStream {
    /// Reads the peer's bytes (decrypted).
    pub reader: PeerReader,
    /// Writes ours (encrypted where the connection is).
    pub writer: PeerWriter,
    /// The peer's bytes read so far and not yet used, in the clear.
    pub rbuf: BytesMut,
    /// Our BitTorrent handshake has already gone out (with the MSE
    /// handshake).
    pub handshake_sent: bool,
    /// How the connection is protected.
    pub kind: StreamKind,
    /// We tried the MSE handshake first and the peer refused it: this is
    /// the plaintext connection made after.
    pub fell_back: bool,
    /// It runs over uTP.
    pub utp: bool,
}

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// The plain BitTorrent protocol.
    Plaintext,
    /// The MSE handshake, then plaintext (the peer's choice).
    Obfuscated,
    /// The MSE handshake, then RC4.
    Rc4,
}

impl StreamKind {
    /// Whether the peer speaks MSE (for PEX's "prefers encryption" flag).
    pub fn is_mse(self) -> bool {
        self != StreamKind::Plaintext
    }
}

impl PeerStream {
    /// A plaintext connection; `rbuf` holds what was read of it already.
    pub fn plaintext(stream: Transport, rbuf: BytesMut) -> Self {
        let utp = stream.is_utp();
        let (r, w) = stream.into_split();
        PeerStream {
            reader: PeerReader {
                inner: r,
                decrypt: None,
            },
            writer: PeerWriter {
                inner: w,
                encrypt: None,
                out: Vec::new(),
                sent: 0,
            },
            rbuf,
            handshake_sent: false,
            kind: StreamKind::Plaintext,
            fell_back: false,
            utp,
        }
    }

    /// The connection once the MSE handshake `done` is through; `rest` is
    /// what was read after it, as received.
    fn established(
        stream: Transport,
        done: Established,
        mut rest: BytesMut,
        handshake_sent: bool,
    ) -> Self {
        let mut s = PeerStream::plaintext(stream, BytesMut::new());
        s.kind = match done.method {
            Method::Plaintext => StreamKind::Obfuscated,
            Method::Rc4 => StreamKind::Rc4,
        };
        if let Some(mut c) = done.ciphers {
            c.decrypt.apply(&mut rest);
            s.reader.decrypt = Some(c.decrypt);
            s.writer.encrypt = Some(c.encrypt);
        }
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        rbuf.extend_from_slice(&done.initial_payload);
        rbuf.extend_from_slice(&rest);
        s.rbuf = rbuf;
        s.handshake_sent = handshake_sent;
        s
    }
}

/// Runs an MSE handshake on `stream` until it is done, within `limit`.
async fn run_mse(
    stream: &mut Transport,
    mut mse: MseHandshake,
    mut rbuf: BytesMut,
    limit: Duration,
) -> Result<(Box<Established>, BytesMut), PeerError> {
    timeout(limit, async {
        loop {
            // What the bytes so far allow, then what that has for the peer
            // (step 1 or 2 on the first pass), before reading more.
            let progress = mse.receive(&mut rbuf).map_err(PeerError::Mse)?;
            let out = mse.take_outgoing();
            if !out.is_empty() {
                stream.write_all(&out).await.map_err(PeerError::Io)?;
            }
            if let Progress::Done(done) = progress {
                return Ok((done, rbuf));
            }
            if stream.read_buf(&mut rbuf).await.map_err(PeerError::Io)? == 0 {
                return Err(PeerError::ClosedInHandshake);
            }
        }
    })
    .await
    .map_err(|_| PeerError::Timeout("in the encryption handshake"))?
}

/// What [`connect`] needs to know.
#[derive(Debug, Clone)]
pub struct ConnectParams {
    /// Where to connect from.
    pub bind: Option<IpAddr>,
    /// Limit on the TCP connect (and on the uTP one).
    pub connect_timeout: Duration,
    /// Limit on the MSE handshake.
    pub handshake_timeout: Duration,
    /// The policy.
    pub encryption: Encryption,
    /// The session's uTP endpoint: tried when TCP does not reach the peer.
    pub utp: Option<UtpSocket>,
}

/// Why [`connect`] failed, and whether the peer may be tried in plaintext.
#[derive(Debug)]
pub struct ConnectError {
    /// What went wrong.
    pub error: PeerError,
    /// The TCP connection was made (the peer is there).
    pub reached: bool,
}

/// How [`connect`] should try a peer first, from what earlier attempts
/// showed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hints {
    /// The peer refused the MSE handshake: plaintext first.
    pub plaintext_first: bool,
    /// TCP did not get us a peer last time: uTP first.
    pub utp_first: bool,
}

/// Opens a connection to `addr` for torrent `info_hash`, as `params` say:
/// over TCP, and over uTP when TCP does not reach the peer (or first, when
/// `hints` say so); with the MSE handshake (sending `handshake`, our
/// BitTorrent handshake, inside it) unless the policy is off or the peer is
/// known not to speak MSE, falling back to plaintext under
/// [`Encryption::Prefer`] when the peer refuses MSE.
pub async fn connect(
    addr: SocketAddr,
    info_hash: InfoHash,
    handshake: &[u8],
    params: &ConnectParams,
    hints: Hints,
) -> Result<PeerStream, ConnectError> {
    let order: &[bool] = match (&params.utp, hints.utp_first) {
        (None, _) => &[false],
        (Some(_), false) => &[false, true],
        (Some(_), true) => &[true, false],
    };
    // The first transport's error is the one reported: "connection
    // refused" over TCP says more than the uTP attempt's time-out after it.
    let mut first = None;
    for &utp in order {
        match connect_over(addr, info_hash, handshake, params, hints, utp).await {
            Ok(s) => return Ok(s),
            // The peer answered over this transport: the failure is not
            // the transport's.
            Err(e) if e.reached => return Err(e),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or(ConnectError {
        error: PeerError::Timeout("connecting"),
        reached: false,
    }))
}

/// Opens one connection over TCP or uTP.
async fn open(
    addr: SocketAddr,
    params: &ConnectParams,
    utp: bool,
) -> Result<Transport, ConnectError> {
    let opened = match (&params.utp, utp) {
        (Some(socket), true) => {
            timeout(params.connect_timeout, async {
                socket.connect(addr).await.map(Transport::Utp)
            })
            .await
        }
        _ => {
            timeout(params.connect_timeout, async {
                crate::peer::connect_tcp(params.bind, addr)
                    .await
                    .map(Transport::Tcp)
            })
            .await
        }
    };
    match opened {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(ConnectError {
            error: PeerError::Io(e),
            reached: false,
        }),
        Err(_) => Err(ConnectError {
            error: PeerError::Timeout("connecting"),
            reached: false,
        }),
    }
}

async fn connect_over(
    addr: SocketAddr,
    info_hash: InfoHash,
    handshake: &[u8],
    params: &ConnectParams,
    hints: Hints,
    utp: bool,
) -> Result<PeerStream, ConnectError> {
    let mse = match params.encryption {
        Encryption::Off => None,
        Encryption::Prefer if hints.plaintext_first => None,
        Encryption::Prefer => Some(CryptoSet::ALL),
        Encryption::Require => Some(CryptoSet::RC4),
    };
    let Some(provide) = mse else {
        return Ok(PeerStream::plaintext(
            open(addr, params, utp).await?,
            BytesMut::with_capacity(64 * 1024),
        ));
    };
    let mut stream = open(addr, params, utp).await?;
    let hs = MseHandshake::initiate(info_hash, provide, handshake, &mut rand::thread_rng());
    match run_mse(&mut stream, hs, BytesMut::new(), params.handshake_timeout).await {
        Ok((done, rest)) => Ok(PeerStream::established(stream, *done, rest, true)),
        Err(error) if params.encryption == Encryption::Require => Err(ConnectError {
            error,
            reached: true,
        }),
        Err(error) => {
            tracing::debug!(%addr, %error, utp, "encryption handshake failed: trying plaintext");
            stream.abort();
            let mut s = PeerStream::plaintext(
                open(addr, params, utp).await?,
                BytesMut::with_capacity(64 * 1024),
            );
            s.fell_back = true;
            Ok(s)
        }
    }
}

/// Takes an incoming connection whose first bytes (`rbuf`) are not the
/// plaintext handshake: runs the MSE handshake as the responder for any of
/// `torrents`. Returns the torrent the peer asked for and the connection.
pub async fn accept(
    mut stream: Transport,
    rbuf: BytesMut,
    torrents: Vec<InfoHash>,
    encryption: Encryption,
    limit: Duration,
) -> Result<(InfoHash, PeerStream), PeerError> {
    let (accept, prefer) = encryption.responder_methods();
    let hs = MseHandshake::respond(torrents, accept, prefer, &mut rand::thread_rng());
    let (done, rest) = match run_mse(&mut stream, hs, rbuf, limit).await {
        Ok(r) => r,
        Err(e) => {
            // A torrent we do not have, or a broken handshake: over uTP a
            // reset tells the peer at once.
            stream.abort();
            return Err(e);
        }
    };
    let info_hash = done.info_hash;
    Ok((
        info_hash,
        PeerStream::established(stream, *done, rest, false),
    ))
}

impl From<MseError> for PeerError {
    fn from(e: MseError) -> Self {
        PeerError::Mse(e)
    }
}

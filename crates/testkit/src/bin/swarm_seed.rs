//! `swarm_seed`: many lightweight seeders of one torrent in one process,
//! for benchmarks that need hundreds of peers on a 2-core machine (where
//! hundreds of libtorrent processes would measure libtorrent, not the
//! client).
//!
//! ```text
//! swarm_seed TORRENT DATA FIRST_IP COUNT PORT
//! ```
//!
//! listens on PORT of COUNT consecutive IPv4 addresses from FIRST_IP
//! (127.0.2.1, 127.0.2.2, ...), each a seeder of TORRENT whose data is the
//! file DATA (one file, the torrent's length; trusted, not hashed, so that
//! starting costs nothing). Each connection handshakes, sends a full
//! bitfield and an unchoke, and answers every request with its block;
//! everything else the other side sends is read and ignored.
//!
//! It prints `ready COUNT` once every address listens, and one line per
//! session (from the first connection until none is left open, i.e. one
//! client's run):
//!
//! ```text
//! session peak_peers=P peers=D active=A connections=C blocks=B bytes=X
//! ```
//!
//! `peak_peers` is the most handshaken connections open at once, `peers` the
//! number of our addresses that completed a handshake, `active` the number
//! that served at least one block (a connected peer the client never asks
//! is connected but useless), `connections` the TCP connections accepted,
//! `blocks` and `bytes` what was served. The peak is
//! the honest figure for "how many peers the client had connected at once".
//!
//! Loopback only by intent: nothing stops another address, but the point is
//! a local benchmark.

use std::collections::HashSet;
use std::error::Error;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::BytesMut;
use rivulet_core::{InfoHash, Metainfo, PeerId};
use rivulet_wire::{
    piece_header, Bitfield, BlockRequest, Handshake, Limits, Message, MessageDecoder, HANDSHAKE_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest block we serve: 128 KiB, what libtorrent accepts; clients ask for
/// 16 KiB.
const MAX_BLOCK: u32 = 128 * 1024;

/// Answers are written out once this many bytes are queued, even if more
/// requests are waiting in the receive buffer, so that a burst of requests
/// does not build an unbounded reply.
const FLUSH_AT: usize = 1 << 20;

/// The torrent being served.
struct Torrent {
    info_hash: InfoHash,
    piece_length: u64,
    total_length: u64,
    num_pieces: u32,
    data: File,
}

impl Torrent {
    /// The length of piece `piece`.
    fn piece_len(&self, piece: u32) -> u64 {
        let start = u64::from(piece) * self.piece_length;
        self.piece_length.min(self.total_length - start)
    }

    /// Whether `r` lies inside the torrent and is a block size we serve.
    fn valid(&self, r: &BlockRequest) -> bool {
        r.piece < self.num_pieces
            && r.length > 0
            && r.length <= MAX_BLOCK
            && u64::from(r.offset) + u64::from(r.length) <= self.piece_len(r.piece)
    }
}

/// Counters of the current session.
#[derive(Default)]
struct Session {
    /// TCP connections open now.
    open: usize,
    /// Handshaken connections open now.
    handshaken: usize,
    peak: usize,
    addrs: HashSet<Ipv4Addr>,
    active: HashSet<Ipv4Addr>,
    accepted: u64,
    blocks: u64,
    bytes: u64,
}

type Shared = Arc<Mutex<Session>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Session> {
    // A panicking connection task leaves plain counters behind: still usable.
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one connection did, added to its session when it closes.
#[derive(Default)]
struct Served {
    handshaken: bool,
    blocks: u64,
    bytes: u64,
}

// One thread: the seeder must leave the other core to the client measured.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [torrent, data, first_ip, count, port] = args.as_slice() else {
        return Err("usage: swarm_seed TORRENT DATA FIRST_IP COUNT PORT".into());
    };
    let metainfo = Metainfo::from_bytes(&std::fs::read(torrent)?)?;
    let total_length = metainfo.info.total_length();
    let path = data;
    let data = File::open(path)?;
    if data.metadata()?.len() != total_length {
        return Err(format!("{path} is not {total_length} bytes long").into());
    }
    let torrent = Arc::new(Torrent {
        info_hash: metainfo.info_hash,
        piece_length: metainfo.info.piece_length,
        total_length,
        num_pieces: u32::try_from(metainfo.info.num_pieces())?,
        data,
    });
    let first: Ipv4Addr = first_ip.parse()?;
    let count: u32 = count.parse()?;
    let port: u16 = port.parse()?;
    let session = Shared::default();
    let mut listeners = Vec::new();
    for i in 0..count {
        let ip = Ipv4Addr::from(u32::from(first) + i);
        let listener = TcpListener::bind(SocketAddr::from((ip, port)))
            .await
            .map_err(|e| format!("listen on {ip}:{port}: {e}"))?;
        listeners.push((ip, listener));
    }
    println!("ready {count}");
    let mut tasks = tokio::task::JoinSet::new();
    for (ip, listener) in listeners {
        let (torrent, session) = (Arc::clone(&torrent), Arc::clone(&session));
        tasks.spawn(async move {
            let mut n: u64 = 0;
            while let Ok((stream, _)) = listener.accept().await {
                n += 1;
                lock(&session).open += 1;
                lock(&session).accepted += 1;
                let mut peer_id = *b"-SW0001-000000000000";
                peer_id[8..12].copy_from_slice(&ip.octets());
                peer_id[12..20].copy_from_slice(&n.to_be_bytes());
                let (torrent, session) = (Arc::clone(&torrent), Arc::clone(&session));
                tokio::spawn(async move {
                    let mut served = Served::default();
                    // Any error ends the connection: a client hanging up is
                    // the normal end, and a broken rule needs no report.
                    let _ =
                        serve(stream, &torrent, PeerId(peer_id), &session, ip, &mut served).await;
                    close(&session, &served, ip);
                });
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Adds what a closed connection did to its session, and reports the
/// session when it was the last connection open.
fn close(session: &Shared, served: &Served, ip: Ipv4Addr) {
    let mut s = lock(session);
    s.open -= 1;
    if served.handshaken {
        s.handshaken -= 1;
    }
    if served.blocks > 0 {
        s.active.insert(ip);
    }
    s.blocks += served.blocks;
    s.bytes += served.bytes;
    if s.open == 0 {
        println!(
            "session peak_peers={} peers={} active={} connections={} blocks={} bytes={}",
            s.peak,
            s.addrs.len(),
            s.active.len(),
            s.accepted,
            s.blocks,
            s.bytes
        );
        *s = Session::default();
    }
}

/// Runs one accepted connection until the other side hangs up or breaks a
/// rule.
async fn serve(
    mut stream: TcpStream,
    torrent: &Torrent,
    peer_id: PeerId,
    session: &Shared,
    ip: Ipv4Addr,
    served: &mut Served,
) -> Result<(), Box<dyn Error>> {
    stream.set_nodelay(true)?;
    let mut hello = [0u8; HANDSHAKE_LEN];
    stream.read_exact(&mut hello).await?;
    let theirs = Handshake::parse(&hello)?.ok_or("short handshake")?;
    if theirs.info_hash != torrent.info_hash {
        return Err("another torrent".into());
    }
    {
        let mut s = lock(session);
        s.handshaken += 1;
        s.peak = s.peak.max(s.handshaken);
        s.addrs.insert(ip);
    }
    served.handshaken = true;
    let mut out = BytesMut::new();
    Handshake::new(torrent.info_hash, peer_id).encode(&mut out);
    Message::bitfield(&Bitfield::full(torrent.num_pieces as usize)).encode(&mut out);
    Message::Unchoke.encode(&mut out);
    stream.write_all(&out).await?;
    out.clear();

    let mut decoder =
        MessageDecoder::with_limits(Limits::default().with_piece_count(torrent.num_pieces));
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        while let Some(m) = decoder.decode(&mut buf)? {
            let Message::Request(r) = m else {
                continue; // interested, have, keep-alive, cancel, ...: nothing to do
            };
            if !torrent.valid(&r) {
                return Err("request outside the torrent".into());
            }
            out.extend_from_slice(&piece_header(r.piece, r.offset, r.length));
            let at = out.len();
            out.resize(at + r.length as usize, 0);
            let offset = u64::from(r.piece) * torrent.piece_length + u64::from(r.offset);
            // A positional read from the page cache, in the task: the data was
            // just written by the bench, and a blocking-pool hop per 16 KiB
            // block would cost more than the read.
            torrent
                .data
                .read_exact_at(out.get_mut(at..).ok_or("buffer")?, offset)?;
            served.blocks += 1;
            served.bytes += u64::from(r.length);
            if out.len() >= FLUSH_AT {
                stream.write_all(&out).await?;
                out.clear();
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn torrent(total_length: u64) -> Torrent {
        Torrent {
            info_hash: InfoHash([0; 20]),
            piece_length: 32 * 1024,
            total_length,
            num_pieces: total_length.div_ceil(32 * 1024) as u32,
            data: File::open("/dev/null").expect("/dev/null"),
        }
    }

    /// Requests are held to the torrent's bounds, the last piece's short
    /// length included.
    #[test]
    fn requests_outside_the_torrent_are_invalid() {
        let t = torrent(40 * 1024);
        let r = |piece, offset, length| BlockRequest {
            piece,
            offset,
            length,
        };
        assert!(t.valid(&r(0, 16 * 1024, 16 * 1024)));
        assert!(t.valid(&r(1, 0, 8 * 1024)));
        assert!(!t.valid(&r(1, 0, 16 * 1024)));
        assert!(!t.valid(&r(2, 0, 1)));
        assert!(!t.valid(&r(0, 0, 0)));
        assert!(!t.valid(&r(0, u32::MAX, 16 * 1024)));
    }
}

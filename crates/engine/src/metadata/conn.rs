//! One connection of a metadata fetch: handshakes, the extended handshake,
//! then `ut_metadata` requests as [`MetadataFetch`](super::fetch::MetadataFetch)
//! hands them out, until the fetch is done, the peer has nothing to give, or
//! it is banned.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rivulet_wire::{
    ExtendedHandshake, Handshake, Message, MessageDecoder, MetadataMessage, Reserved,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, Instant};

use super::fetch::{Joined, PeerKey};
use super::{Ctx, UT_METADATA_ID};
use crate::encryption::{ConnectParams, Hints, PeerStream, PeerWriter};
use crate::peer::PeerError;

/// Runs one connection to `addr` until the fetch ends or the peer is of no
/// more use. Returns whether the peer offered the metadata.
pub(super) async fn run(ctx: Arc<Ctx>, key: PeerKey, addr: SocketAddr) -> Result<bool, PeerError> {
    let params = ConnectParams {
        bind: ctx.bind,
        connect_timeout: ctx.connect_timeout,
        handshake_timeout: ctx.handshake_timeout,
        encryption: ctx.encryption,
        utp: ctx.utp.clone(),
    };
    let stream = crate::encryption::connect(
        addr,
        ctx.info_hash,
        &our_handshake(&ctx).to_bytes(),
        &params,
        Hints::default(),
    )
    .await
    .map_err(|e| e.error)?;
    ctx.connected.fetch_add(1, Ordering::Relaxed);
    let result = session(&ctx, key, stream).await;
    ctx.connected.fetch_sub(1, Ordering::Relaxed);
    ctx.state().remove_peer(key);
    ctx.wake.notify_waiters();
    result
}

/// Writes all of `bytes` (and what an encrypting writer holds) within
/// `limit`.
async fn send(writer: &mut PeerWriter, bytes: &[u8], limit: Duration) -> Result<(), PeerError> {
    match timeout(limit, async {
        writer.write_all(bytes).await?;
        writer.flush().await
    })
    .await
    {
        Ok(r) => r.map_err(PeerError::Io),
        Err(_) => Err(PeerError::Timeout("sending")),
    }
}

/// The extension protocol only: this connection has no pieces to talk
/// about, so neither the fast extension's have-none nor a bitfield.
fn our_handshake(ctx: &Ctx) -> Handshake {
    Handshake {
        reserved: Reserved::EXTENSION_PROTOCOL,
        ..Handshake::new(ctx.info_hash, ctx.peer_id)
    }
}

async fn session(ctx: &Ctx, key: PeerKey, stream: PeerStream) -> Result<bool, PeerError> {
    let PeerStream {
        reader: mut stream,
        mut writer,
        mut rbuf,
        handshake_sent,
        ..
    } = stream;
    if !handshake_sent {
        send(
            &mut writer,
            &our_handshake(ctx).to_bytes(),
            ctx.handshake_timeout,
        )
        .await?;
    }
    let theirs = timeout(ctx.handshake_timeout, async {
        loop {
            if let Some(h) = Handshake::decode(&mut rbuf).map_err(PeerError::Wire)? {
                return Ok::<_, PeerError>(h);
            }
            if stream.read_buf(&mut rbuf).await.map_err(PeerError::Io)? == 0 {
                return Err(PeerError::ClosedInHandshake);
            }
        }
    })
    .await
    .map_err(|_| PeerError::Timeout("waiting for handshake"))??;
    tracing::debug!(client = ?theirs.peer_id.client().map(|c| c.to_string()), "metadata connection: handshake done");
    if theirs.info_hash != ctx.info_hash {
        return Err(PeerError::WrongTorrent);
    }
    if theirs.peer_id == ctx.peer_id {
        return Err(PeerError::OurOwnConnection);
    }
    if !theirs.reserved.contains(Reserved::EXTENSION_PROTOCOL) {
        // Without BEP 10 there is no way to ask for metadata.
        return Err(PeerError::NothingToExchange);
    }
    let mut hs = ExtendedHandshake {
        v: Some(format!("rivulet {}", env!("CARGO_PKG_VERSION"))),
        ..ExtendedHandshake::default()
    };
    hs.m.insert(rivulet_wire::UT_METADATA.to_owned(), UT_METADATA_ID);
    send(
        &mut writer,
        &hs.to_message().to_bytes(),
        ctx.handshake_timeout,
    )
    .await?;

    let mut decoder = MessageDecoder::new();
    // The peer's id for ut_metadata, once its extended handshake came.
    let mut their_id: Option<u8> = None;
    let mut useful = false;
    let mut out = BytesMut::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // A peer that never sends its extended handshake is of no use.
    let joined_by = Instant::now() + ctx.handshake_timeout;
    loop {
        if ctx.done.is_cancelled() {
            return Ok(useful);
        }
        // Every complete message in the buffer (the first ones may have
        // come with the handshake).
        while let Some(msg) = decoder.decode(&mut rbuf).map_err(PeerError::Wire)? {
            match msg {
                Message::Extended { id: 0, payload } => {
                    if their_id.is_some() {
                        continue;
                    }
                    let hs = ExtendedHandshake::decode(&payload).map_err(PeerError::Wire)?;
                    let id = hs.extension_id(rivulet_wire::UT_METADATA);
                    let joined = match id {
                        Some(_) => ctx.state().add_peer(key, hs.metadata_size),
                        None => Joined::Useless,
                    };
                    if joined == Joined::Useless {
                        return Err(PeerError::NothingToExchange);
                    }
                    useful = true;
                    their_id = id;
                }
                Message::Extended {
                    id: UT_METADATA_ID,
                    payload,
                } => match MetadataMessage::decode(&payload).map_err(PeerError::Wire)? {
                    MetadataMessage::Data {
                        piece,
                        total_size,
                        data,
                    } => {
                        if ctx.state().on_data(key, piece, total_size, data) {
                            ctx.done.cancel();
                        }
                        ctx.wake.notify_waiters();
                    }
                    MetadataMessage::Reject { .. } => {
                        ctx.state().on_reject(key);
                        ctx.wake.notify_waiters();
                    }
                    MetadataMessage::Request { piece } => {
                        // We have no metadata to give yet.
                        if let Some(id) = their_id {
                            MetadataMessage::Reject { piece }
                                .to_message(id)
                                .encode(&mut out);
                        }
                    }
                },
                // Pieces, choking and the rest are for the download that
                // follows.
                _ => {}
            }
        }
        if ctx.done.is_cancelled() {
            return Ok(useful);
        }
        if ctx.state().is_banned(key) {
            return Err(PeerError::Misbehaving("sent wrong metadata"));
        }
        if let Some(id) = their_id {
            if !ctx.state().wants(key) {
                // It rejected us, or let a request time out: of no more use.
                return Ok(useful);
            }
            for piece in ctx.state().requests(key, Instant::now().into_std()) {
                MetadataMessage::Request { piece }
                    .to_message(id)
                    .encode(&mut out);
            }
        }
        if !out.is_empty() {
            send(&mut writer, &out, ctx.handshake_timeout).await?;
            out.clear();
        }
        // Make room without reallocating on every read.
        if rbuf.capacity() - rbuf.len() < 16 * 1024 {
            rbuf.reserve(32 * 1024);
        }
        let wake = ctx.wake.notified();
        tokio::select! {
            () = ctx.done.cancelled() => return Ok(useful),
            () = wake => {}
            _ = tick.tick() => {
                if their_id.is_none() && Instant::now() >= joined_by {
                    return Err(PeerError::Timeout("waiting for the extended handshake"));
                }
            }
            n = stream.read_buf(&mut rbuf) => {
                if n.map_err(PeerError::Io)? == 0 {
                    return Ok(useful);
                }
            }
        }
    }
}

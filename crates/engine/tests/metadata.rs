//! Magnet links, BEP 9 over real sockets: a session fetches a torrent's
//! metadata from another session that seeds it, and from scripted peers on
//! loopback that serve it honestly, lie about it, or reject every request.
//! The fetch must end with the exact info dictionary, and ban the liar.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rivulet_core::{InfoHash, PeerId};
use rivulet_engine::download::SeedPolicy;
use rivulet_engine::metadata::{FetchOptions, FetchProgress, MetadataError};
use rivulet_engine::session::{AddOptions, Session, SessionConfig};
use rivulet_testkit::fixture::{within, Fixture};
use rivulet_testkit::next_loopback;
use rivulet_wire::{
    ExtendedHandshake, Handshake, Message, MessageDecoder, MetadataMessage, Reserved,
    METADATA_PIECE_LEN, UT_METADATA,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FETCH: Duration = Duration::from_secs(30);

fn session_on(ip: Ipv4Addr) -> Session {
    Session::new(SessionConfig {
        listen_port: Some(0),
        bind: Some(IpAddr::V4(ip)),
        ..SessionConfig::default()
    })
    .unwrap()
}

/// How a scripted peer answers metadata requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Honest,
    /// Every piece with its bytes flipped.
    Liar,
    /// A reject for every request.
    Rejecter,
}

/// A peer on `ip` that has `info` (and says so in its extended handshake)
/// and answers every connection as `behaviour` says. Returns its address.
async fn scripted_peer(ip: Ipv4Addr, info: Arc<Vec<u8>>, behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, Arc::clone(&info), behaviour));
        }
    });
    addr
}

async fn serve(mut stream: TcpStream, info: Arc<Vec<u8>>, behaviour: Behaviour) {
    let mut buf = BytesMut::new();
    let theirs = loop {
        if let Ok(Some(h)) = Handshake::decode(&mut buf) {
            break h;
        }
        if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return;
        }
    };
    let ours = Handshake {
        reserved: Reserved::EXTENSION_PROTOCOL,
        ..Handshake::new(theirs.info_hash, PeerId::generate())
    };
    let mut hs = ExtendedHandshake {
        metadata_size: Some(info.len() as u64),
        ..ExtendedHandshake::default()
    };
    hs.m.insert(UT_METADATA.to_owned(), 5);
    let mut out = ours.to_bytes().to_vec();
    out.extend_from_slice(&hs.to_message().to_bytes());
    if stream.write_all(&out).await.is_err() {
        return;
    }
    let mut decoder = MessageDecoder::new();
    let mut their_id = None;
    loop {
        while let Ok(Some(msg)) = decoder.decode(&mut buf) {
            let reply = match msg {
                Message::Extended { id: 0, payload } => {
                    their_id = ExtendedHandshake::decode(&payload)
                        .ok()
                        .and_then(|h| h.extension_id(UT_METADATA));
                    None
                }
                Message::Extended { id: 5, payload } => match MetadataMessage::decode(&payload) {
                    Ok(MetadataMessage::Request { piece }) => Some(answer(&info, piece, behaviour)),
                    _ => None,
                },
                _ => None,
            };
            if let (Some(reply), Some(id)) = (reply, their_id) {
                if stream
                    .write_all(&reply.to_message(id).to_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return;
        }
    }
}

fn answer(info: &[u8], piece: u32, behaviour: Behaviour) -> MetadataMessage {
    let start = piece as usize * METADATA_PIECE_LEN;
    let end = (start + METADATA_PIECE_LEN).min(info.len());
    if behaviour == Behaviour::Rejecter || start >= info.len() {
        return MetadataMessage::Reject { piece };
    }
    let mut data = info[start..end].to_vec();
    if behaviour == Behaviour::Liar {
        data.iter_mut().for_each(|b| *b ^= 0x5a);
    }
    MetadataMessage::Data {
        piece,
        total_size: info.len() as u64,
        data: data.into(),
    }
}

/// A torrent whose info dictionary takes three metadata pieces: 2,100
/// pieces of 16 KiB, 20 bytes of hash each.
fn big_fixture() -> Arc<Fixture> {
    Fixture::sized(21, 16 * 1024, 2100 * 16 * 1024)
}

async fn fetch(
    session: &Session,
    hash: InfoHash,
    peers: Vec<SocketAddr>,
) -> (Result<Vec<u8>, MetadataError>, FetchProgress) {
    let last = Arc::new(Mutex::new(FetchProgress::default()));
    let seen = Arc::clone(&last);
    let progress = move |p: &FetchProgress| *seen.lock().unwrap() = *p;
    let options = FetchOptions {
        peers,
        ..FetchOptions::default()
    };
    let result = within(
        FETCH,
        "the metadata",
        session.fetch_metadata(hash, options, &progress),
    )
    .await;
    let last = *last.lock().unwrap();
    (result, last)
}

/// One session fetches the metadata of a torrent another session seeds:
/// several pieces of it, byte for byte the info dictionary.
#[tokio::test]
async fn from_a_seeding_session() {
    let fx = big_fixture();
    let info = fx.metainfo.info_bytes.clone();
    assert!(info.len() > 2 * METADATA_PIECE_LEN, "{} bytes", info.len());
    let dir = tempfile::tempdir().unwrap();
    fx.write_to(dir.path());
    let seeder = session_on(next_loopback());
    let options = AddOptions {
        seed: SeedPolicy::FOREVER,
        ..AddOptions::default()
    };
    seeder
        .add(&fx.metainfo, dir.path(), options, Arc::new(|_| {}))
        .await
        .unwrap();
    let fetcher = session_on(next_loopback());
    let (got, _) = fetch(&fetcher, fx.info_hash(), seeder.local_addrs().to_vec()).await;
    assert!(got.unwrap() == info, "the exact info dictionary");
    fetcher.shutdown().await;
    seeder.shutdown().await;
}

/// Metadata for the scripted peers: the fetch checks only its SHA-1, so
/// any bytes do; three pieces of them, the last one short.
fn some_metadata() -> Arc<Vec<u8>> {
    Arc::new((0..40_000u32).map(|i| (i % 253) as u8).collect())
}

/// An honest peer, a liar and one that rejects everything, all at once:
/// the fetch ends with the right bytes, and the liar is banned.
#[tokio::test]
async fn a_liar_and_a_rejecter_do_not_spoil_the_fetch() {
    let info = some_metadata();
    let liar = scripted_peer(next_loopback(), Arc::clone(&info), Behaviour::Liar).await;
    let rejecter = scripted_peer(next_loopback(), Arc::clone(&info), Behaviour::Rejecter).await;
    let honest = scripted_peer(next_loopback(), Arc::clone(&info), Behaviour::Honest).await;
    let session = session_on(next_loopback());
    let hash = InfoHash::from_info_bytes(&info);
    let (got, last) = fetch(&session, hash, vec![liar, rejecter, honest]).await;
    assert!(got.unwrap() == *info, "the exact info dictionary");
    assert_eq!(last.banned, 1, "{last:?}");
    session.shutdown().await;
}

/// Only liars: no metadata, however long it runs; they are banned, and the
/// fetch waits for other peers rather than accept bad bytes.
#[tokio::test]
async fn liars_alone_give_nothing() {
    let info = some_metadata();
    let liars = vec![
        scripted_peer(next_loopback(), Arc::clone(&info), Behaviour::Liar).await,
        scripted_peer(next_loopback(), Arc::clone(&info), Behaviour::Liar).await,
    ];
    let session = session_on(next_loopback());
    let last = Arc::new(Mutex::new(FetchProgress::default()));
    let seen = Arc::clone(&last);
    let progress = move |p: &FetchProgress| *seen.lock().unwrap() = *p;
    let options = FetchOptions {
        peers: liars,
        ..FetchOptions::default()
    };
    let fetching = session.fetch_metadata(InfoHash::from_info_bytes(&info), options, &progress);
    tokio::pin!(fetching);
    // Both banned, and still no result.
    within(FETCH, "both liars banned", async {
        loop {
            tokio::select! {
                r = &mut fetching => panic!("the fetch ended: {:?}", r.map(|b| b.len())),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if last.lock().unwrap().banned == 2 {
                return;
            }
        }
    })
    .await;
    session.shutdown().await;
    let r = within(FETCH, "the fetch to end", fetching).await;
    assert!(matches!(r, Err(MetadataError::ShuttingDown)), "{r:?}");
}

/// Nowhere to look: an error at once, not a wait.
#[tokio::test]
async fn no_sources_is_an_error() {
    let session = session_on(next_loopback());
    let r = session
        .fetch_metadata(
            InfoHash::from_info_bytes(b"d4:name1:xe"),
            FetchOptions::default(),
            &|_| {},
        )
        .await;
    assert!(matches!(r, Err(MetadataError::NoSources)), "{r:?}");
    session.shutdown().await;
}

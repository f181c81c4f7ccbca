//! Magnet links for `download`, `seed` and `info --fetch`: the metadata
//! fetched from peers (with a status line), and kept as a .torrent beside
//! the resume data so that the next run needs no peer for it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::HumanBytes;
use rivulet_core::{InfoHash, Magnet, Metainfo};
use rivulet_engine::metadata::{torrent_bytes, FetchOptions, FetchProgress};
use rivulet_engine::session::Session;

use crate::progress;

/// Where the .torrent fetched for a magnet link is kept: beside the resume
/// data, `DIR/.rivulet/<info-hash>.torrent`.
pub fn kept_path(dir: &Path, info_hash: &InfoHash) -> PathBuf {
    dir.join(".rivulet")
        .join(format!("{}.torrent", info_hash.to_hex()))
}

/// The torrent kept by an earlier run for `info_hash` in `dir`, if there is
/// one that is valid and is that torrent.
pub fn kept(dir: &Path, info_hash: &InfoHash) -> Option<Metainfo> {
    let bytes = std::fs::read(kept_path(dir, info_hash)).ok()?;
    Metainfo::from_bytes(&bytes)
        .ok()
        .filter(|m| m.info_hash == *info_hash)
}

/// Writes `bytes` to the kept path: a temporary file renamed into place, so
/// that a crash leaves the old file or the new one, never half of one.
pub fn keep(dir: &Path, info_hash: &InfoHash, bytes: &[u8]) -> Result<PathBuf> {
    let path = kept_path(dir, info_hash);
    let folder = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(folder)
        .with_context(|| format!("cannot write in {}", folder.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Fetches the metadata of `magnet` with `session` from the link's trackers
/// and peers and `extra` peers, showing how it goes unless `quiet`; returns
/// the .torrent (the link's trackers, one tier each, and the info
/// dictionary) and the torrent read from it.
pub async fn fetch(
    session: &Session,
    magnet: &Magnet,
    extra: &[SocketAddr],
    quiet: bool,
) -> Result<(Vec<u8>, Metainfo)> {
    let started = Instant::now();
    let mut peers = magnet.peers.clone();
    peers.extend(extra.iter().copied().filter(|a| !magnet.peers.contains(a)));
    // `x.pe` host names, each looked up once, briefly.
    for (host, port) in &magnet.peer_hosts {
        let lookup = tokio::net::lookup_host((host.as_str(), *port));
        match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
            Ok(Ok(addrs)) => peers.extend(addrs),
            _ => eprintln!("warning: cannot resolve the link's peer {host}:{port}"),
        }
    }
    let options = FetchOptions {
        trackers: magnet.trackers.clone(),
        peers,
        size_hint: magnet.exact_length,
        ..FetchOptions::default()
    };
    let bar = (!quiet).then(progress::status_bar);
    // A line per change when stderr is no terminal (the status bar is then
    // hidden), so that logs say what the fetch waits for.
    let last = Mutex::new(None::<String>);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let show = |p: &FetchProgress| {
        let Some(bar) = &bar else {
            return;
        };
        let text = progress_text(p);
        if terminal {
            bar.set_message(progress::fit(
                &[progress::Field::new(0, text).elastic()],
                progress::line_width(),
            ));
        } else {
            let mut last = last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.as_deref() != Some(text.as_str()) {
                eprintln!("{text}");
                *last = Some(text);
            }
        }
    };
    let fetched = session
        .fetch_metadata(magnet.info_hash, options, &show)
        .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let info = fetched?;
    let bytes = torrent_bytes(&info, &magnet.trackers);
    let metainfo = Metainfo::from_bytes(&bytes).context(
        "the metadata peers sent matches the link's info-hash, but is not a valid torrent",
    )?;
    if !quiet {
        eprintln!(
            "metadata: {} ({}, {} pieces) in {}",
            rivulet_cli::render::printable(&metainfo.info.name),
            HumanBytes(metainfo.info.total_length()),
            metainfo.info.num_pieces(),
            progress::took(started.elapsed()),
        );
    }
    Ok((bytes, metainfo))
}

/// The status line while fetching metadata.
fn progress_text(p: &FetchProgress) -> String {
    let pieces = match p.pieces {
        Some((have, all)) => format!(", {have}/{all} pieces"),
        None => String::new(),
    };
    let banned = if p.banned > 0 {
        format!(", {} banned", p.banned)
    } else {
        String::new()
    };
    format!(
        "fetching metadata from {} ({} connected, {} known){pieces}{banned}",
        progress::plural(p.offering as u64, "peer", "peers"),
        p.connected,
        p.known,
    )
}

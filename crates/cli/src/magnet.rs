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

/// How peers are found besides trackers and `--peer`: the DHT and PEX
/// (flags shared by `download`, `seed` and `info --fetch`).
#[derive(Debug, Clone, clap::Args)]
pub struct Discovery {
    /// No DHT: peers only from trackers, --peer, the magnet link and PEX.
    #[arg(long, conflicts_with = "dht_bootstrap")]
    pub no_dht: bool,
    /// A DHT node to join the DHT through, HOST:PORT; may be repeated
    /// (replaces the default routers).
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    pub dht_bootstrap: Vec<String>,
    /// No peer exchange (BEP 11) with peers.
    #[arg(long)]
    pub no_pex: bool,
    /// No local service discovery (BEP 14: multicast announces on the local
    /// network).
    #[arg(long)]
    pub no_lsd: bool,
}

impl Discovery {
    /// Whether local service discovery runs: unless `--no-lsd`, and in
    /// closed-network mode only inside a test's network namespace
    /// (`RIVULET_CLOSED_NETWORK=netns`), whose network is its own.
    pub fn lsd(&self) -> bool {
        match std::env::var("RIVULET_CLOSED_NETWORK") {
            Ok(v) if v == "netns" => !self.no_lsd,
            Ok(_) => false,
            Err(_) => !self.no_lsd,
        }
    }

    /// The session's DHT settings: none with `--no-dht`; else the given
    /// nodes (or the default routers), and the node's state kept in the
    /// state folder.
    ///
    /// # Errors
    ///
    /// In closed-network mode (the test harness sets
    /// `RIVULET_CLOSED_NETWORK`: tests must never reach the public DHT), the
    /// DHT is off unless `--dht-bootstrap` names nodes, and it is an error
    /// for one of them not to be a loopback or private IP:PORT.
    pub fn dht_config(&self) -> Result<Option<rivulet_engine::dht::DhtConfig>> {
        let closed = std::env::var_os("RIVULET_CLOSED_NETWORK").is_some();
        // Closed network: the default routers are never used; a DHT runs
        // only through nodes given (and local).
        if self.no_dht || (closed && self.dht_bootstrap.is_empty()) {
            return Ok(None);
        }
        let bootstrap: Vec<String> = if self.dht_bootstrap.is_empty() {
            rivulet_dht::DEFAULT_ROUTERS
                .iter()
                .map(|r| (*r).to_owned())
                .collect()
        } else {
            self.dht_bootstrap.clone()
        };
        if closed {
            if let Some(outside) = bootstrap.iter().find(|b| !is_local(b)) {
                anyhow::bail!(
                    "closed network (RIVULET_CLOSED_NETWORK is set): the DHT would be joined through {outside}; \
                     give --no-dht, or --dht-bootstrap with a loopback or private IP:PORT"
                );
            }
        }
        // A state of its own for a DHT joined through given nodes (a test
        // network, say): the saved nodes of one DHT are no use in another.
        // None in a closed network: tests leave the user's state alone.
        let state = if self.dht_bootstrap.is_empty() {
            "dht.state"
        } else {
            "dht-custom.state"
        };
        let state_file = if closed {
            None
        } else {
            crate::download::state_root().map(|d| d.join(state))
        };
        Ok(Some(rivulet_engine::dht::DhtConfig {
            bootstrap,
            state_file,
            local_only: closed,
        }))
    }
}

/// Why a magnet link cannot be fetched: nowhere to look for peers.
pub const NO_SOURCES: &str =
    "no peers to fetch the metadata from: the magnet link names no tracker (tr) \
     and no peer (x.pe), and the DHT is off; give some with --peer IP:PORT, or leave the DHT on";

/// Whether `addr` is an IP:PORT on loopback or a local network.
fn is_local(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .is_ok_and(|a| rivulet_engine::dht::is_local(a.ip()))
}

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

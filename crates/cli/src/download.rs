//! `rivulet download`: fetch a torrent's data from peers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{HumanBytes, HumanDuration};
use rivulet_core::Metainfo;
use rivulet_engine::download::Download;
use rivulet_engine::torrent::{Outcome, Shared, TorrentConfig};

use crate::progress;
use crate::Outcome as Exit;

/// Arguments of `rivulet download`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .torrent file.
    torrent: PathBuf,
    /// Folder to download into (the torrent's file or top folder goes inside).
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    output: PathBuf,
    /// Port reported to trackers for incoming peers (rivulet does not accept
    /// incoming connections yet: they come with seeding).
    #[arg(long, value_name = "N", default_value_t = 6881)]
    port: u16,
    /// A peer to connect to; may be repeated.
    #[arg(long = "peer", value_name = "IP:PORT")]
    peers: Vec<SocketAddr>,
    /// Most peer connections at once.
    #[arg(long, value_name = "N", default_value_t = 50)]
    max_peers: usize,
    /// No progress display and no summary.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> Result<Exit> {
    let bytes = std::fs::read(&args.torrent)
        .with_context(|| format!("cannot read {}", args.torrent.display()))?;
    let metainfo = Metainfo::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid torrent", args.torrent.display()))?;
    if args.peers.is_empty() && metainfo.tracker_tiers().is_empty() {
        bail!(
            "no peers to download from: the torrent has no tracker; give some with --peer IP:PORT"
        );
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(download(args, metainfo))
}

async fn download(args: Args, metainfo: Metainfo) -> Result<Exit> {
    let started = Instant::now();
    let total = metainfo.info.total_length();
    let config = TorrentConfig {
        max_peers: args.max_peers.max(1),
        listen_port: args.port,
        ..TorrentConfig::default()
    };
    let check_bar = progress::bytes_bar(total, "Checking", args.quiet);
    let bar = check_bar.clone();
    let (mut dl, report) = Download::prepare(
        &metainfo,
        &args.output,
        config,
        Arc::new(move |done| bar.set_position(done)),
    )
    .await?;
    check_bar.finish_and_clear();
    if !args.quiet && report.have > 0 {
        eprintln!(
            "resuming: {} of {} pieces already complete ({} vouched for by resume data, {} checked)",
            report.have,
            metainfo.info.num_pieces(),
            report.trusted,
            report.checked
        );
    }
    let tx = dl.peer_sender();
    for p in &args.peers {
        let _ = tx.send(*p);
    }
    let already = dl.shared.stats.verified_bytes.load(Ordering::Relaxed);
    let display = (!args.quiet).then(|| spawn_display(Arc::clone(&dl.shared), total));
    let outcome = dl
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    if let Some((handle, bar)) = display {
        handle.abort();
        bar.finish_and_clear();
    }
    let stats = &dl.shared.stats;
    let fetched = stats.verified_bytes.load(Ordering::Relaxed) - already;
    match outcome {
        Outcome::Complete => {
            if !args.quiet {
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                eprintln!(
                    "done: {} ({}) in {}, {} fetched at {}/s average, {} hash failures, {} peers banned",
                    metainfo.info.name,
                    HumanBytes(total),
                    HumanDuration(started.elapsed()),
                    HumanBytes(fetched),
                    HumanBytes((fetched as f64 / secs) as u64),
                    stats.hash_failures.load(Ordering::Relaxed),
                    stats.peers_banned.load(Ordering::Relaxed),
                );
            }
            Ok(Exit::Success)
        }
        Outcome::Running => {
            eprintln!(
                "stopped at {} of {}; run the same command again to resume",
                HumanBytes(stats.verified_bytes.load(Ordering::Relaxed)),
                HumanBytes(total)
            );
            Ok(Exit::Incomplete)
        }
        Outcome::Failed(why) => bail!("{why}"),
    }
}

/// A live status line: percent, bytes, speeds, ETA, peers, pieces.
fn spawn_display(
    shared: Arc<Shared>,
    total: u64,
) -> (tokio::task::JoinHandle<()>, indicatif::ProgressBar) {
    let bar = progress::status_bar(total);
    let b = bar.clone();
    let handle = tokio::spawn(async move {
        let stats = &shared.stats;
        let pieces = shared.info.num_pieces();
        let mut last = (
            Instant::now(),
            stats.downloaded.load(Ordering::Relaxed),
            stats.uploaded.load(Ordering::Relaxed),
        );
        let (mut down_rate, mut up_rate) = (0.0f64, 0.0f64);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let now = Instant::now();
            let (down, up) = (
                stats.downloaded.load(Ordering::Relaxed),
                stats.uploaded.load(Ordering::Relaxed),
            );
            let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
            let d = down.saturating_sub(last.1) as f64 / dt;
            let u = up.saturating_sub(last.2) as f64 / dt;
            down_rate = if down_rate == 0.0 {
                d
            } else {
                0.7 * down_rate + 0.3 * d
            };
            up_rate = if up_rate == 0.0 {
                u
            } else {
                0.7 * up_rate + 0.3 * u
            };
            last = (now, down, up);
            let done = stats.verified_bytes.load(Ordering::Relaxed);
            let eta = if down_rate > 1.0 {
                HumanDuration(Duration::from_secs_f64(
                    total.saturating_sub(done) as f64 / down_rate,
                ))
                .to_string()
            } else {
                "-".into()
            };
            b.set_position(done);
            b.set_message(format!(
                "down {}/s up {}/s ETA {eta} peers {}/{} pieces {}/{pieces}",
                HumanBytes(down_rate as u64),
                HumanBytes(up_rate as u64),
                stats.peers_connected.load(Ordering::Relaxed),
                stats.peers_known.load(Ordering::Relaxed),
                stats.pieces_done.load(Ordering::Relaxed),
            ));
        }
    });
    (handle, bar)
}

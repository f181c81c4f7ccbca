//! `rivulet download` and `rivulet seed`: one torrent's session, fetching what
//! is missing from peers and serving what we have.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{HumanBytes, HumanDuration};
use rivulet_core::Metainfo;
use rivulet_engine::download::{Download, SeedPolicy};
use rivulet_engine::listener::Listener;
use rivulet_engine::torrent::{Outcome, Shared, TorrentConfig};

use crate::args;
use crate::progress;
use crate::Outcome as Exit;

/// What `download` and `seed` share: the torrent, the folder, the network.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The .torrent file.
    #[arg(value_parser = args::torrent_file)]
    torrent: PathBuf,
    /// Folder of the data (the torrent's file or top folder goes inside).
    #[arg(short, long, value_name = "DIR", default_value = ".", value_parser = args::data_folder)]
    output: PathBuf,
    /// Port to listen on for peers (the next free one is used, and reported,
    /// when it is taken).
    #[arg(long, value_name = "N", default_value_t = 6881)]
    port: u16,
    /// Local address to listen on and to connect and announce from (default:
    /// listen on every IPv4 and IPv6 address).
    #[arg(long, value_name = "IP")]
    bind: Option<IpAddr>,
    // Help text as an attribute: rustdoc would read "[IPv6]" as a link.
    #[arg(
        long = "peer",
        value_name = "IP:PORT",
        value_parser = args::peer,
        help = "A peer to connect to: IP:PORT, [IPv6]:PORT or HOST:PORT; may be repeated"
    )]
    peers: Vec<args::Peer>,
    /// Most peer connections at once (ours and theirs), at least 1.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = args::max_peers)]
    max_peers: usize,
    /// No progress display and no summary.
    #[arg(short, long)]
    quiet: bool,
}

/// Arguments of `rivulet download`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Keep seeding once the download is complete, until interrupted (or a
    /// limit below).
    #[arg(long)]
    seed: bool,
    /// Seed until we uploaded this many times the torrent's size (implies --seed).
    // Negative numbers reach the parser, which says "must be at least 0".
    #[arg(long, value_name = "R", allow_negative_numbers = true, value_parser = args::seed_ratio)]
    seed_ratio: Option<f64>,
    /// Seed for this long after completion, e.g. 90s, 30m, 2h (implies --seed).
    // `-5m` reaches the parser, which says "must be at least 0".
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = args::seed_time)]
    seed_time: Option<Duration>,
}

/// Arguments of `rivulet seed`.
#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    #[command(flatten)]
    common: Common,
}

/// Which command runs the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Download,
    Seed,
}

pub fn run(args: Args) -> Result<Exit> {
    let policy = SeedPolicy {
        seed: args.seed || args.seed_ratio.is_some() || args.seed_time.is_some(),
        ratio: args.seed_ratio,
        time: args.seed_time,
    };
    start(args.common, policy, Mode::Download)
}

pub fn run_seed(args: SeedArgs) -> Result<Exit> {
    start(args.common, SeedPolicy::FOREVER, Mode::Seed)
}

fn start(args: Common, policy: SeedPolicy, mode: Mode) -> Result<Exit> {
    let bytes = std::fs::read(&args.torrent)
        .with_context(|| format!("cannot read {}", args.torrent.display()))?;
    let metainfo = Metainfo::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid torrent", args.torrent.display()))?;
    if mode == Mode::Download && args.peers.is_empty() && metainfo.tracker_tiers().is_empty() {
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
    runtime.block_on(session(args, metainfo, policy, mode))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn session(args: Common, metainfo: Metainfo, policy: SeedPolicy, mode: Mode) -> Result<Exit> {
    let started = Instant::now();
    let total = metainfo.info.total_length();
    let listener = Listener::bind(args.bind, args.port)?;
    if args.port != 0 && listener.port() != args.port {
        eprintln!(
            "port {} is in use: listening on port {} instead",
            args.port,
            listener.port()
        );
    }
    let config = TorrentConfig {
        max_peers: args.max_peers,
        listen_port: listener.port(),
        bind: args.bind,
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
    let pieces = metainfo.info.num_pieces();
    if !args.quiet {
        if mode == Mode::Seed && report.have == pieces {
            eprintln!(
                "data complete: {pieces} pieces ({} vouched for by resume data, {} hashed)",
                report.trusted, report.checked
            );
        } else if mode == Mode::Seed && report.have < pieces {
            eprintln!(
                "data incomplete: {} of {pieces} pieces present in {}; fetching the rest, then seeding",
                report.have,
                args.output.display()
            );
        } else if mode == Mode::Download && report.have > 0 {
            eprintln!(
                "resuming: {} of {pieces} pieces already complete ({} vouched for by resume data, {} checked)",
                report.have, report.trusted, report.checked
            );
        }
        for addr in listener.local_addrs() {
            eprintln!("listening on {addr}");
        }
    }
    listener.add(&dl.shared);
    let tx = dl.peer_sender();
    // A host name may stand for addresses of both families: with --bind,
    // only those of its family can be reached.
    let family_ok = |a: &SocketAddr| args.bind.is_none_or(|ip| ip.is_ipv4() == a.is_ipv4());
    for p in &args.peers {
        for addr in p.addrs.iter().filter(|a| family_ok(a)) {
            let _ = tx.send(*addr);
        }
    }
    let already = dl.shared.stats.verified_bytes.load(Ordering::Relaxed);
    let display = (!args.quiet).then(|| spawn_display(Arc::clone(&dl.shared), total));
    let outcome = dl.run(interrupted(), policy).await;
    drop(listener);
    if let Some((handle, bar)) = display {
        handle.abort();
        bar.finish_and_clear();
    }
    let stats = &dl.shared.stats;
    let fetched = stats.verified_bytes.load(Ordering::Relaxed) - already;
    let uploaded = stats.uploaded.load(Ordering::Relaxed);
    let ratio = uploaded as f64 / total.max(1) as f64;
    match outcome {
        Outcome::Complete => {
            if !args.quiet {
                if fetched > 0 {
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
                let seeded = if policy.seed {
                    format!("seeded {}: ", metainfo.info.name)
                } else {
                    String::new()
                };
                eprintln!(
                    "{seeded}uploaded {} to {} peers (ratio {ratio:.2}) in {}",
                    HumanBytes(uploaded),
                    stats.peers_served_total.load(Ordering::Relaxed),
                    HumanDuration(started.elapsed()),
                );
            }
            Ok(Exit::Success)
        }
        Outcome::Running => {
            eprintln!(
                "stopped at {} of {}, uploaded {}; run the same command again to resume",
                HumanBytes(stats.verified_bytes.load(Ordering::Relaxed)),
                HumanBytes(total),
                HumanBytes(uploaded),
            );
            Ok(Exit::Incomplete)
        }
        Outcome::Failed(why) => bail!("{why}"),
    }
}

/// A live status line: percent, bytes, speeds, ETA, peers, pieces; once
/// complete: upload speed, ratio and the peers being served.
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
            down_rate = 0.7 * down_rate + 0.3 * d;
            up_rate = 0.7 * up_rate + 0.3 * u;
            last = (now, down, up);
            let done = stats.verified_bytes.load(Ordering::Relaxed);
            // Connected of known; peers that connected to us count as known.
            let connected = stats.peers_connected.load(Ordering::Relaxed);
            let known = stats.peers_known.load(Ordering::Relaxed)
                + stats.peers_incoming.load(Ordering::Relaxed);
            let peers = format!("peers {connected}/{}", known.max(connected));
            let serving = stats.peers_serving.load(Ordering::Relaxed);
            let ratio = up as f64 / total.max(1) as f64;
            b.set_position(done);
            if done >= total {
                b.set_message(format!(
                    "seeding: up {}/s, uploaded {} (ratio {ratio:.2}), serving {serving}, {peers}",
                    HumanBytes(up_rate as u64),
                    HumanBytes(up),
                ));
                continue;
            }
            let eta = if down_rate > 1.0 {
                HumanDuration(Duration::from_secs_f64(
                    total.saturating_sub(done) as f64 / down_rate,
                ))
                .to_string()
            } else {
                "-".into()
            };
            b.set_message(format!(
                "down {}/s up {}/s ratio {ratio:.2} ETA {eta} {peers} serving {serving} pieces {}/{pieces}",
                HumanBytes(down_rate as u64),
                HumanBytes(up_rate as u64),
                stats.pieces_done.load(Ordering::Relaxed),
            ));
        }
    });
    (handle, bar)
}

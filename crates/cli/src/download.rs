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
use rivulet_engine::download::{Download, LengthAction, SeedPolicy};
use rivulet_engine::folder::{DataFolder, FolderOptions};
use rivulet_engine::listener::Listener;
use rivulet_engine::torrent::{Outcome, Shared, TorrentConfig};

use crate::progress;
use crate::Outcome as Exit;

/// What `download` and `seed` share: the torrent, the folder, the network.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The .torrent file.
    torrent: PathBuf,
    /// Folder of the data (the torrent's file or top folder goes inside).
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    output: PathBuf,
    /// Port to listen on for peers (the next free one is used, and reported,
    /// when it is taken).
    #[arg(long, value_name = "N", default_value_t = 6881)]
    port: u16,
    /// Local address to listen on and to connect and announce from (default:
    /// listen on every IPv4 and IPv6 address).
    #[arg(long, value_name = "IP")]
    bind: Option<IpAddr>,
    /// A peer to connect to; may be repeated.
    #[arg(long = "peer", value_name = "IP:PORT")]
    peers: Vec<SocketAddr>,
    /// Most peer connections at once (ours and theirs).
    #[arg(long, value_name = "N", default_value_t = 50)]
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
    #[arg(long, value_name = "R")]
    seed_ratio: Option<f64>,
    /// Seed for this long after completion, e.g. 90s, 30m, 2h (implies --seed).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
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
    if args
        .seed_ratio
        .is_some_and(|r| !(r.is_finite() && r >= 0.0))
    {
        bail!("--seed-ratio must be a number of at least 0");
    }
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
    rivulet_engine::download::check_piece_length(&metainfo)?;
    if mode == Mode::Download && args.peers.is_empty() && metainfo.tracker_tiers().is_empty() {
        bail!(
            "no peers to download from: the torrent has no tracker; give some with --peer IP:PORT"
        );
    }
    // A seeder serves what is there: it creates no folder (a missing one
    // holds none of the data, which `DataFolder::open` reports).
    if mode == Mode::Download {
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("cannot create {}", args.output.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(session(args, metainfo, policy, mode))
}

/// Where resume data goes when the data folder is read-only:
/// `$XDG_STATE_HOME/rivulet/resume`, else `~/.local/state/rivulet/resume`
/// (the XDG base directory defaults); `None` without either variable.
fn state_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_STATE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".local/state"))
        })
        .map(|d| d.join("rivulet/resume"))
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
    // Locked after binding (so that a run that cannot listen writes
    // nothing) and before the port notice (so that a second run on the same
    // data says only that it is in use).
    let options = FolderOptions {
        seed: mode == Mode::Seed,
        state_dir: state_dir(),
    };
    let folder = DataFolder::open(&metainfo, &args.output, &options)?;
    if !folder.is_locked() {
        eprintln!(
            "warning: the file system of {} has no file locks: nothing stops another rivulet from using this torrent's data at the same time",
            folder.resume_path().display()
        );
    }
    if args.port != 0 && listener.port() != args.port {
        eprintln!(
            "port {} is in use: listening on port {} instead",
            args.port,
            listener.port()
        );
    }
    let config = TorrentConfig {
        max_peers: args.max_peers.max(1),
        listen_port: listener.port(),
        bind: args.bind,
        ..TorrentConfig::default()
    };
    let check_bar = progress::bytes_bar(total, "Checking", args.quiet);
    let bar = check_bar.clone();
    let (mut dl, report) = Download::prepare_in(
        &metainfo,
        folder,
        config,
        Arc::new(move |done| bar.set_position(done)),
    )
    .await?;
    check_bar.finish_and_clear();
    if !dl.folder().is_writable() {
        eprintln!(
            "the data folder {} is read-only: serving it as it is; resume data goes to {}",
            args.output.display(),
            dl.folder().resume_path().display()
        );
    }
    // Shown even with --quiet: rivulet changed (or would not change) a file.
    for note in &report.links_not_made {
        eprintln!("warning: {}", rivulet_cli::render::printable(note));
    }
    for t in &report.too_long {
        match t.action {
            LengthAction::Truncated => eprintln!(
                "truncated {} to the torrent's {} bytes (it was {} bytes)",
                t.path.display(),
                t.expected,
                t.length
            ),
            LengthAction::SymbolicLink => eprintln!(
                "warning: {} is {} bytes, the torrent says {}; not truncated: it is a symbolic link, and what it points to is not rivulet's to change",
                t.path.display(),
                t.length,
                t.expected
            ),
            LengthAction::ReadOnly => eprintln!(
                "warning: {} is {} bytes, the torrent says {}; not truncated: the data folder is read-only (only the torrent's bytes are served)",
                t.path.display(),
                t.length,
                t.expected
            ),
        }
    }
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
    for p in &args.peers {
        let _ = tx.send(*p);
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

//! `rivulet download` and `rivulet seed`: a session with one torrent,
//! fetching what is missing from peers and serving what we have. The
//! display and the summary read the torrent's snapshots.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::HumanBytes;
use rivulet_core::Metainfo;
use rivulet_engine::download::{LengthAction, SeedPolicy};
use rivulet_engine::folder::{DataFolder, FolderOptions};
use rivulet_engine::session::{AddOptions, Session, SessionConfig, TorrentHandle};
use rivulet_engine::stats::{PeerFailure, TrackerStatus};
use rivulet_engine::torrent::{Outcome, TorrentConfig};

use crate::args;
use crate::progress::{self, Field};
use crate::Outcome as Exit;

/// What `download` and `seed` share: the torrent, the folder, the network.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The .torrent file, or a magnet link (its metadata is fetched from
    /// peers, then kept in DIR/.rivulet/ for the next run).
    #[arg(value_name = "TORRENT|MAGNET", value_parser = args::torrent_source)]
    torrent: args::Source,
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
    /// Encryption of peer connections (MSE/PE): prefer (encrypt where the
    /// peer can), require (refuse plaintext peers), off (plaintext only).
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = args::Encryption::Prefer)]
    encryption: args::Encryption,
    /// No uTP: TCP connections only, both ways.
    #[arg(long, conflicts_with = "utp_first")]
    no_utp: bool,
    /// Try uTP before TCP for every peer (default: TCP first, uTP for the
    /// peers TCP does not reach).
    #[arg(long)]
    utp_first: bool,
    #[command(flatten)]
    discovery: crate::magnet::Discovery,
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

/// What the session starts from: a torrent read (from its file, or kept by
/// an earlier run of the same magnet link), or a magnet link whose metadata
/// is to be fetched.
enum Start {
    Loaded(Box<Metainfo>),
    Fetch(Box<rivulet_core::Magnet>),
}

fn start(args: Common, policy: SeedPolicy, mode: Mode) -> Result<Exit> {
    let start = match &args.torrent {
        args::Source::File(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let metainfo = Metainfo::from_bytes(&bytes)
                .with_context(|| format!("{} is not a valid torrent", path.display()))?;
            // Without a tracker, peers come from --peer, the DHT or LSD
            // (neither for a private torrent).
            let elsewhere = !metainfo.info.private
                && (args.discovery.dht_config()?.is_some() || args.discovery.lsd());
            if mode == Mode::Download
                && args.peers.is_empty()
                && metainfo.tracker_tiers().is_empty()
                && !elsewhere
            {
                bail!(
                    "no peers to download from: the torrent has no tracker, and the DHT and local discovery are off (or it is private); give some with --peer IP:PORT"
                );
            }
            Start::Loaded(Box::new(metainfo))
        }
        args::Source::Magnet(magnet) => {
            match crate::magnet::kept(&args.output, &magnet.info_hash) {
                Some(metainfo) => Start::Loaded(Box::new(metainfo)),
                None => {
                    if args.peers.is_empty()
                        && magnet.trackers.is_empty()
                        && magnet.peers.is_empty()
                        && magnet.peer_hosts.is_empty()
                        && args.discovery.dht_config()?.is_none()
                    {
                        bail!("{}", crate::magnet::NO_SOURCES);
                    }
                    Start::Fetch(magnet.clone())
                }
            }
        }
    };
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
    runtime.block_on(session(args, start, policy, mode))
}

/// Where resume data goes when the data folder is read-only:
/// `$XDG_STATE_HOME/rivulet/resume`, else `~/.local/state/rivulet/resume`
/// (the XDG base directory defaults); `None` without either variable.
fn state_dir() -> Option<PathBuf> {
    state_root().map(|d| d.join("resume"))
}

/// rivulet's state folder: `$XDG_STATE_HOME/rivulet`, else
/// `~/.local/state/rivulet`; `None` without either variable.
pub fn state_root() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_STATE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".local/state"))
        })
        .map(|d| d.join("rivulet"))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn interrupted() {
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

async fn session(args: Common, start: Start, policy: SeedPolicy, mode: Mode) -> Result<Exit> {
    let started = Instant::now();
    // A host name may stand for addresses of both families, but from --bind
    // only its family can be reached: a peer with none such is a mistake to
    // report now, not a peer silently never tried.
    if let Some(ip) = args.bind {
        let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
        if let Some(p) = args
            .peers
            .iter()
            .find(|p| !p.addrs.iter().any(|a| a.is_ipv4() == ip.is_ipv4()))
        {
            bail!(
                "--peer {} has no {family} address, and from --bind {ip} only {family} peers can be reached",
                p.text
            );
        }
    }
    let session = Session::new(SessionConfig {
        listen_port: Some(args.port),
        bind: args.bind,
        dht: args.discovery.dht_config()?,
        lsd: args.discovery.lsd(),
        encryption: args.encryption.into(),
        utp: !args.no_utp,
        utp_first: args.utp_first,
        ..SessionConfig::default()
    })?;
    // Only addresses of --bind's family can be reached (checked above).
    let family_ok = |a: &SocketAddr| args.bind.is_none_or(|ip| ip.is_ipv4() == a.is_ipv4());
    let peers: Vec<SocketAddr> = args
        .peers
        .iter()
        .flat_map(|p| p.addrs.iter().copied().filter(family_ok))
        .collect();
    // The link's peers (x.pe) serve the download too, whether the metadata
    // is fetched now or was kept by an earlier run.
    let link_peers = match &args.torrent {
        args::Source::Magnet(m) => m.peers.clone(),
        args::Source::File(_) => Vec::new(),
    };
    let metainfo = match start {
        Start::Loaded(m) => *m,
        Start::Fetch(magnet) => {
            let fetched = tokio::select! {
                () = interrupted() => None,
                f = crate::magnet::fetch(&session, &magnet, &peers, args.quiet) => Some(f),
            };
            let Some(fetched) = fetched else {
                session.shutdown().await;
                eprintln!(
                    "stopped while fetching the metadata; run the same command again to go on"
                );
                return Ok(Exit::Incomplete);
            };
            let (bytes, metainfo) = fetched?;
            // Kept for the next run (and for `verify`); a folder that
            // cannot take it only costs a fetch next time.
            let kept = if mode == Mode::Download || args.output.is_dir() {
                crate::magnet::keep(&args.output, &magnet.info_hash, &bytes)
            } else {
                Err(anyhow::anyhow!("no data folder {}", args.output.display()))
            };
            if let Err(e) = kept {
                eprintln!("warning: the fetched .torrent was not kept: {e:#}");
            }
            metainfo
        }
    };
    let total = metainfo.info.total_length();
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
    if args.port != 0 && session.port() != args.port {
        eprintln!(
            "port {} is in use: listening on port {} instead",
            args.port,
            session.port()
        );
    }
    let options = AddOptions {
        config: TorrentConfig {
            max_peers: args.max_peers,
            pex: !args.discovery.no_pex,
            ..TorrentConfig::default()
        },
        seed: policy,
        peers: peers
            .iter()
            .copied()
            .chain(link_peers.into_iter().filter(family_ok))
            .collect(),
        paused: false,
        file_priorities: Vec::new(),
    };
    let check_bar = Arc::new(progress::bytes_bar(total, "Checking", args.quiet));
    let bar = Arc::clone(&check_bar);
    let added = session
        .add_in(
            &metainfo,
            folder,
            options,
            Arc::new(move |done| bar.set_position(done)),
        )
        .await;
    check_bar.finish_and_clear();
    let (torrent, report) = added?;
    if !torrent.is_writable() {
        eprintln!(
            "the data folder {} is read-only: serving it as it is; resume data goes to {}",
            args.output.display(),
            torrent.resume_path().display()
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
        for addr in session.local_addrs() {
            eprintln!("listening on {addr}");
        }
    }
    let already = torrent.snapshot().have_bytes;
    // When the data became complete: the download's time and average rate
    // end there, not when seeding after it ends.
    let completed = Arc::new(std::sync::OnceLock::new());
    let completion_watch = {
        let (torrent, completed) = (torrent.clone(), Arc::clone(&completed));
        tokio::spawn(async move {
            torrent.completed().await;
            let _ = completed.set(Instant::now());
        })
    };
    let display = (!args.quiet).then(|| spawn_display(torrent.clone(), total));
    // Until Ctrl-C, or the torrent stops by itself (complete, seeding
    // done, failed); then the session stops it cleanly.
    tokio::select! {
        () = interrupted() => {}
        () = torrent.stopped() => {}
    }
    session.shutdown().await;
    let outcome = torrent.outcome();
    // Unset if the session ended as it completed: then `started.elapsed()`
    // is the same time anyway.
    completion_watch.abort();
    if let Some((handle, bar)) = display {
        handle.abort();
        bar.finish_and_clear();
    }
    let stats = torrent.snapshot();
    let fetched = stats.have_bytes - already;
    let uploaded = stats.uploaded;
    let ratio = uploaded as f64 / total.max(1) as f64;
    match outcome {
        Outcome::Complete => {
            let fetching = completed
                .get()
                .map_or_else(|| started.elapsed(), |t| t.duration_since(started));
            if !args.quiet {
                if fetched > 0 {
                    let secs = fetching.as_secs_f64().max(1e-9);
                    eprintln!(
                        "done: {} ({}) in {}, {} fetched at {}/s average, {}, {} banned",
                        rivulet_cli::render::printable(&metainfo.info.name),
                        HumanBytes(total),
                        progress::took(fetching),
                        HumanBytes(fetched),
                        HumanBytes((fetched as f64 / secs) as u64),
                        progress::plural(stats.hash_failures, "hash failure", "hash failures"),
                        progress::plural(stats.peers_banned as u64, "peer", "peers"),
                    );
                }
                let seeded = if policy.seed {
                    format!(
                        "seeded {}: ",
                        rivulet_cli::render::printable(&metainfo.info.name)
                    )
                } else {
                    String::new()
                };
                eprintln!(
                    "{seeded}uploaded {} to {} (ratio {ratio:.2}) in {}",
                    HumanBytes(uploaded),
                    progress::plural(stats.peers_served_total as u64, "peer", "peers"),
                    progress::took(started.elapsed()),
                );
            }
            Ok(Exit::Success)
        }
        Outcome::Running => {
            eprintln!(
                "stopped at {} of {}, uploaded {}; run the same command again to resume",
                HumanBytes(stats.have_bytes),
                HumanBytes(total),
                HumanBytes(uploaded),
            );
            // Why nothing (or little) happened, as the status line said.
            for (url, error) in failing_trackers(&stats.trackers) {
                eprintln!("tracker {url}: {error}");
            }
            let failures = stats.connect_failures;
            if let (true, Some(last)) = (fetched == 0 && failures > 0, &stats.last_peer_failure) {
                eprintln!(
                    "no data from peers: {} failed, the last to {}: {}",
                    progress::plural(failures, "connection", "connections"),
                    last.addr,
                    last.reason
                );
            }
            Ok(Exit::Incomplete)
        }
        Outcome::Failed(why) => bail!("{why}"),
    }
}

/// The trackers whose last announce failed, with their errors.
fn failing_trackers(trackers: &[(String, TrackerStatus)]) -> Vec<(&str, String)> {
    trackers
        .iter()
        .filter_map(|(url, status)| match status {
            TrackerStatus::Failed(e) => Some((url.as_str(), e.to_string())),
            TrackerStatus::Working { .. } => None,
        })
        .collect()
}

/// The status line's tracker problem when no tracker works:
/// `tracker: ERROR`, or `N trackers failing: ERROR` (one of them).
fn tracker_problem(trackers: &[(String, TrackerStatus)]) -> Option<String> {
    let failing = failing_trackers(trackers);
    let (_, first) = failing.first()?;
    if failing.len() < trackers.len() {
        return None; // Some tracker works: not a problem worth a field.
    }
    Some(if failing.len() == 1 {
        format!("tracker: {first}")
    } else {
        format!("{} trackers failing: {first}", failing.len())
    })
}

/// The status line's peer problem when no peer is connected but some
/// connection failed: `0 peers reachable: ADDR REASON`.
fn peer_problem(connected: usize, last: Option<&PeerFailure>) -> Option<String> {
    match last {
        Some(f) if connected == 0 => Some(format!("0 peers reachable: {} {}", f.addr, f.reason)),
        _ => None,
    }
}

/// The live status line: percent, bytes, speeds, ETA, peers, pieces, and
/// what is wrong when nothing moves (no tracker answers, no peer can be
/// reached); once complete: upload speed, ratio and the peers being served.
/// Fitted to the terminal's width at each tick. When stderr is not a
/// terminal there is no status line, and each new problem is printed as a
/// line of its own instead (logs of a service say why it sits idle too).
fn spawn_display(
    torrent: TorrentHandle,
    total: u64,
) -> (tokio::task::JoinHandle<()>, indicatif::ProgressBar) {
    let bar = progress::status_bar();
    let b = bar.clone();
    let handle = tokio::spawn(async move {
        let window = Duration::from_secs(5);
        let (mut down_rate, mut up_rate) = (
            progress::RateWindow::new(window),
            progress::RateWindow::new(window),
        );
        // Without a terminal, problems are printed as lines: each tracker's
        // error when it changes, and the peer problem once per spell
        // without peers (not once per failing address of a dead swarm).
        let mut tracker_said: HashMap<String, String> = HashMap::new();
        let mut peer_said = false;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let now = Instant::now();
            let stats = torrent.snapshot();
            let up = stats.uploaded;
            let down = down_rate.sample(now, stats.downloaded);
            let up_r = up_rate.sample(now, up);
            let done = stats.have_bytes;
            // Connected of known; peers that connected to us count as known.
            let connected = stats.peers_connected;
            let known = stats.peers_known + stats.peers_incoming;
            let trackers = stats.trackers;
            let last_failure = stats.last_peer_failure;
            let tracker = tracker_problem(&trackers);
            let peer = (done < total)
                .then(|| peer_problem(connected, last_failure.as_ref()))
                .flatten();
            if b.is_hidden() {
                for (url, status) in &trackers {
                    match status {
                        TrackerStatus::Failed(e) => {
                            let e = e.to_string();
                            if tracker_said.get(url) != Some(&e) {
                                eprintln!("tracker {url}: {e}");
                                tracker_said.insert(url.clone(), e);
                            }
                        }
                        TrackerStatus::Working { .. } => {
                            tracker_said.remove(url);
                        }
                    }
                }
                match &peer {
                    Some(line) if !peer_said => {
                        eprintln!("{line}");
                        peer_said = true;
                    }
                    _ if connected > 0 => peer_said = false,
                    _ => {}
                }
                continue;
            }
            let line = StatusLine {
                done,
                total,
                down_rate: down,
                up_rate: up_r,
                uploaded: up,
                connected,
                known: known.max(connected),
                serving: stats.peers_serving,
                pieces_done: stats.pieces_have,
                pieces: stats.pieces,
                tracker,
                peer,
            };
            b.set_message(progress::fit(&line.fields(), progress::line_width()));
            b.tick();
        }
    });
    (handle, bar)
}

/// What one status line shows.
#[derive(Debug, Clone, PartialEq)]
struct StatusLine {
    done: u64,
    total: u64,
    down_rate: f64,
    up_rate: f64,
    uploaded: u64,
    connected: usize,
    known: usize,
    serving: usize,
    pieces_done: u64,
    pieces: usize,
    tracker: Option<String>,
    peer: Option<String>,
}

impl StatusLine {
    /// The line's fields, most important at priority 0 (see
    /// [`progress::fit`]).
    fn fields(&self) -> Vec<Field> {
        let ratio = self.uploaded as f64 / self.total.max(1) as f64;
        let peers = format!("peers {}/{}", self.connected, self.known);
        let up = HumanBytes(self.up_rate as u64);
        // With no peer connected, rates and ETA say nothing; the reason does.
        let (problem, rates) = if self.connected == 0 { (1, 3) } else { (3, 1) };
        let mut fields = Vec::new();
        if self.done >= self.total {
            fields.push(Field::new(0, "seeding"));
            fields.push(Field::new(1, format!("up {up}/s")).or_short(format!("↑{up}/s")));
            fields.push(
                Field::new(
                    2,
                    format!("uploaded {} (ratio {ratio:.2})", HumanBytes(self.uploaded)),
                )
                .or_short(format!("ratio {ratio:.2}")),
            );
            fields.push(Field::new(3, format!("serving {}", self.serving)));
            fields.push(Field::new(1, peers));
        } else {
            let down = HumanBytes(self.down_rate as u64);
            let percent = self.done.saturating_mul(100) / self.total.max(1);
            let eta = if self.down_rate > 1.0 {
                progress::short_duration(Duration::from_secs_f64(
                    self.total.saturating_sub(self.done) as f64 / self.down_rate,
                ))
            } else {
                "-".into()
            };
            fields.push(
                Field::new(4, progress::bar_text(self.done, self.total, 20))
                    .or_short(progress::bar_text(self.done, self.total, 8)),
            );
            fields.push(Field::new(0, format!("{percent:>3}%")));
            fields.push(
                Field::new(
                    3,
                    format!("{}/{}", HumanBytes(self.done), HumanBytes(self.total)),
                )
                .or_short(HumanBytes(self.done).to_string()),
            );
            fields.push(Field::new(rates, format!("down {down}/s")).or_short(format!("↓{down}/s")));
            fields.push(Field::new(rates + 1, format!("up {up}/s")).or_short(format!("↑{up}/s")));
            fields.push(Field::new(5, format!("ratio {ratio:.2}")));
            fields.push(Field::new(rates + 1, format!("ETA {eta}")));
            fields.push(Field::new(1, peers));
            fields.push(Field::new(5, format!("serving {}", self.serving)));
            fields.push(Field::new(
                6,
                format!("pieces {}/{}", self.pieces_done, self.pieces),
            ));
        }
        for text in self.tracker.iter().chain(&self.peer) {
            fields.push(Field::new(problem, text.clone()).elastic());
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivulet_engine::scrape::TrackerError;

    fn line() -> StatusLine {
        StatusLine {
            done: 40 << 20,
            total: 100 << 20,
            down_rate: 0.0,
            up_rate: 0.0,
            uploaded: 0,
            connected: 0,
            known: 1,
            serving: 0,
            pieces_done: 40,
            pieces: 100,
            tracker: Some("tracker: cannot connect: connection refused".into()),
            peer: Some("0 peers reachable: 127.0.0.2:6881 connection refused".into()),
        }
    }

    /// With no peer, the reasons take the room rates and ETA would have.
    #[test]
    fn stuck_download_says_why_at_80_columns() {
        let text = progress::fit(&line().fields(), 79);
        assert!(text.chars().count() <= 79, "{text}");
        assert!(text.starts_with("40%"), "{text}");
        assert!(text.contains("peers 0/1"), "{text}");
        assert!(text.contains("tracker: cannot connect"), "{text}");
        assert!(text.contains("0 peers reachable: 127.0.0.2"), "{text}");
        let wide = progress::fit(&line().fields(), 199);
        assert!(
            wide.contains("tracker: cannot connect: connection refused"),
            "{wide}"
        );
        assert!(
            wide.contains("0 peers reachable: 127.0.0.2:6881 connection refused"),
            "{wide}"
        );
        assert!(wide.contains("ETA -"), "{wide}");
    }

    #[test]
    fn seeding_line_fits_and_shows_rates() {
        let mut l = line();
        l.done = l.total;
        l.connected = 2;
        l.known = 2;
        l.up_rate = 2_000_000.0;
        l.uploaded = 150 << 20;
        l.tracker = None;
        l.peer = None;
        for width in [39, 79, 119, 199] {
            let text = progress::fit(&l.fields(), width);
            assert!(text.chars().count() <= width, "{text}");
            assert!(text.starts_with("seeding"), "{text}");
            assert!(text.contains("1.91 MiB/s"), "{text}");
        }
        assert!(progress::fit(&l.fields(), 199).contains("ratio 1.50"));
    }

    #[test]
    fn problems() {
        let failed = |u: &str| {
            (
                u.to_owned(),
                TrackerStatus::Failed(TrackerError::Transport(
                    "cannot connect: connection refused".into(),
                )),
            )
        };
        let working = |u: &str| (u.to_owned(), TrackerStatus::Working { peers: 3 });
        assert_eq!(tracker_problem(&[]), None);
        assert_eq!(
            tracker_problem(&[failed("http://a/announce")]).as_deref(),
            Some("tracker: cannot connect: connection refused")
        );
        assert_eq!(
            tracker_problem(&[failed("http://a/announce"), failed("udp://b:1")]).as_deref(),
            Some("2 trackers failing: cannot connect: connection refused")
        );
        assert_eq!(
            tracker_problem(&[failed("http://a/announce"), working("udp://b:1")]),
            None
        );
        let f = PeerFailure {
            addr: "127.0.0.2:6881".parse().unwrap(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            peer_problem(0, Some(&f)).as_deref(),
            Some("0 peers reachable: 127.0.0.2:6881 connection refused")
        );
        assert_eq!(peer_problem(1, Some(&f)), None);
        assert_eq!(peer_problem(0, None), None);
    }
}

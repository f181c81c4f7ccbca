//! `rivulet info`: show a torrent's or magnet link's contents.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rivulet_core::{InfoHash, Magnet, Metainfo};
use rivulet_engine::scrape::{ScrapeOptions, ScrapeOutcome, Scraper, TrackerScrape};
use serde_json::json;

use rivulet_cli::print_stdout;
use rivulet_cli::render::{magnet_json, magnet_text, torrent_json, torrent_text};

use crate::Outcome;

/// Arguments of `rivulet info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A .torrent file or a magnet: link.
    #[arg(value_name = "TORRENT|MAGNET", value_parser = crate::args::torrent_or_magnet)]
    target: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also ask every tracker (all tiers at once, 10 s each at most) for the
    /// swarm's seeders, leechers and completed downloads.
    #[arg(long)]
    scrape: bool,
    /// For a magnet link: fetch the torrent's metadata from peers (the
    /// link's trackers and x.pe peers, and --peer) and show the torrent.
    #[arg(long)]
    fetch: bool,
    /// With --fetch: save the fetched .torrent to FILE (not overwritten
    /// unless --force).
    #[arg(long, value_name = "FILE", requires = "fetch")]
    save: Option<std::path::PathBuf>,
    /// With --save: overwrite FILE if it exists.
    #[arg(long, requires = "save")]
    force: bool,
    // Help text as an attribute: rustdoc would read "[IPv6]" as a link.
    #[arg(
        long = "peer",
        value_name = "IP:PORT",
        value_parser = crate::args::peer,
        requires = "fetch",
        help = "With --fetch: a peer to ask for the metadata: IP:PORT, [IPv6]:PORT or HOST:PORT; may be repeated"
    )]
    peers: Vec<crate::args::Peer>,
    /// With --fetch: the local address to connect and announce from.
    #[arg(long, value_name = "IP", requires = "fetch")]
    bind: Option<std::net::IpAddr>,
    /// With --fetch: encryption of peer connections (MSE/PE): prefer,
    /// require or off.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = crate::args::Encryption::Prefer)]
    encryption: crate::args::Encryption,
    #[command(flatten)]
    discovery: crate::magnet::Discovery,
}

pub fn run(args: Args) -> Result<Outcome> {
    if args
        .target
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("magnet:"))
    {
        let magnet: Magnet = args.target.parse().context("invalid magnet link")?;
        if args.fetch {
            return fetch_and_show(&args, &magnet);
        }
        let tiers: Vec<Vec<String>> = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
        let scraped = args
            .scrape
            .then(|| scrape_all(&tiers, magnet.info_hash))
            .transpose()?;
        if args.json {
            let mut v = magnet_json(&magnet);
            if let Some(s) = &scraped {
                with_scrape(&mut v, s);
            }
            print_stdout(&(serde_json::to_string_pretty(&v)? + "\n"))?;
        } else {
            print_stdout(&magnet_text(&magnet))?;
            if let Some(s) = &scraped {
                print_stdout(&scrape_text(s))?;
            }
        }
    } else {
        if args.fetch {
            anyhow::bail!(
                "--fetch is for magnet links: a .torrent file already holds its metadata"
            );
        }
        let path = Path::new(&args.target);
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let m = Metainfo::from_bytes_any(&bytes)
            .with_context(|| format!("{} is not a valid torrent", path.display()))?;
        if args.scrape && m.info.v2_only {
            anyhow::bail!("--scrape: v2-only torrents cannot be scraped yet");
        }
        let scraped = args
            .scrape
            .then(|| scrape_all(&m.tracker_tiers(), m.info_hash))
            .transpose()?;
        if args.json {
            let mut v = torrent_json(&m);
            if let Some(s) = &scraped {
                with_scrape(&mut v, s);
            }
            print_stdout(&(serde_json::to_string_pretty(&v)? + "\n"))?;
        } else {
            print_stdout(&torrent_text(&m))?;
            if let Some(s) = &scraped {
                print_stdout(&scrape_text(s))?;
            }
        }
    }
    Ok(Outcome::Success)
}

/// `info MAGNET --fetch`: the metadata from peers, shown as a .torrent file
/// would be (and saved with `--save`).
fn fetch_and_show(args: &Args, magnet: &Magnet) -> Result<Outcome> {
    if let Some(path) = &args.save {
        if path.exists() && !args.force {
            anyhow::bail!(
                "{} already exists (use --force to overwrite)",
                path.display()
            );
        }
    }
    let peers: Vec<std::net::SocketAddr> = args
        .peers
        .iter()
        .flat_map(|p| p.addrs.iter().copied())
        .filter(|a| args.bind.is_none_or(|ip| ip.is_ipv4() == a.is_ipv4()))
        .collect();
    if peers.is_empty()
        && magnet.trackers.is_empty()
        && magnet.peers.is_empty()
        && magnet.peer_hosts.is_empty()
        && args.discovery.dht_config()?.is_none()
    {
        anyhow::bail!("{}", crate::magnet::NO_SOURCES);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (bytes, metainfo) = runtime.block_on(async {
        // Connects out only: nothing listens, nothing is downloaded.
        let session =
            rivulet_engine::session::Session::new(rivulet_engine::session::SessionConfig {
                listen_port: None,
                bind: args.bind,
                encryption: args.encryption.into(),
                ..Default::default()
            })?;
        let fetched = tokio::select! {
            f = crate::magnet::fetch(&session, magnet, &peers, args.json) => Some(f),
            _ = tokio::signal::ctrl_c() => None,
        };
        session.shutdown().await;
        fetched.unwrap_or_else(|| Err(anyhow::anyhow!("interrupted before the metadata came")))
    })?;
    if let Some(path) = &args.save {
        crate::create::write_torrent_file(path, &bytes, args.force)?;
        if !args.json {
            eprintln!("saved {}", path.display());
        }
    }
    if args.json {
        print_stdout(&(serde_json::to_string_pretty(&torrent_json(&metainfo))? + "\n"))?;
    } else {
        print_stdout(&torrent_text(&metainfo))?;
    }
    Ok(Outcome::Success)
}

/// Scrapes `info_hash` at every tracker of `tiers`, concurrently; returns
/// within about [`ScrapeOptions::default`]'s timeout (10 s) whatever the
/// trackers do.
fn scrape_all(tiers: &[Vec<String>], info_hash: InfoHash) -> Result<Vec<TrackerScrape>> {
    if tiers.iter().all(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let scraper = Scraper::new(ScrapeOptions::default())?;
    let result = runtime.block_on(scraper.scrape_all(tiers, info_hash));
    // A name lookup still running on the blocking pool must not delay exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(result)
}

fn scrape_text(results: &[TrackerScrape]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if results.is_empty() {
        let _ = writeln!(s, "Scrape:      no trackers to ask");
        return s;
    }
    let _ = writeln!(s, "Scrape:");
    let width = results.iter().map(|r| r.url.len()).max().unwrap_or(0);
    for r in results {
        let what = match &r.outcome {
            ScrapeOutcome::Stats(st) => format!(
                "seeders {}  leechers {}  completed {}",
                st.complete, st.incomplete, st.downloaded
            ),
            ScrapeOutcome::NotTracked => "does not track this torrent".to_owned(),
            ScrapeOutcome::Unsupported => {
                "no scrape support (the announce URL does not end in \"announce\")".to_owned()
            }
            ScrapeOutcome::Failed(e) => format!("error: {e}"),
        };
        let tier = format!("tier {}", r.tier + 1);
        let _ = writeln!(s, "  {tier:<8} {:<width$}  {what}", r.url);
    }
    s
}

/// Adds `"scrape": [...]` to the JSON object `v`.
fn with_scrape(v: &mut serde_json::Value, results: &[TrackerScrape]) {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("scrape".into(), scrape_json(results));
    }
}

fn scrape_json(results: &[TrackerScrape]) -> serde_json::Value {
    results
        .iter()
        .map(|r| {
            let (status, stats, error) = match &r.outcome {
                ScrapeOutcome::Stats(st) => ("ok", Some(*st), None),
                ScrapeOutcome::NotTracked => ("not_tracked", None, None),
                ScrapeOutcome::Unsupported => ("unsupported", None, None),
                ScrapeOutcome::Failed(e) => ("error", None, Some(e.to_string())),
            };
            json!({
                "tier": r.tier + 1,
                "url": r.url,
                "status": status,
                "seeders": stats.map(|s| s.complete),
                "leechers": stats.map(|s| s.incomplete),
                "completed": stats.map(|s| s.downloaded),
                "error": error,
            })
        })
        .collect()
}

//! `rivulet info`: show a torrent's or magnet link's contents.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use indicatif::HumanBytes;
use rivulet_core::{InfoHash, Magnet, Metainfo};
use rivulet_engine::scrape::{ScrapeOptions, ScrapeOutcome, Scraper, TrackerScrape};
use serde_json::json;

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
}

pub fn run(args: Args) -> Result<Outcome> {
    if args
        .target
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("magnet:"))
    {
        let magnet: Magnet = args.target.parse().context("invalid magnet link")?;
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
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{}", magnet_text(&magnet));
            if let Some(s) = &scraped {
                print!("{}", scrape_text(s));
            }
        }
    } else {
        let path = Path::new(&args.target);
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let m = Metainfo::from_bytes(&bytes)
            .with_context(|| format!("{} is not a valid torrent", path.display()))?;
        let scraped = args
            .scrape
            .then(|| scrape_all(&m.tracker_tiers(), m.info_hash))
            .transpose()?;
        if args.json {
            let mut v = torrent_json(&m);
            if let Some(s) = &scraped {
                with_scrape(&mut v, s);
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{}", torrent_text(&m));
            if let Some(s) = &scraped {
                print!("{}", scrape_text(s));
            }
        }
    }
    Ok(Outcome::Success)
}

fn date(secs: i64) -> String {
    u64::try_from(secs)
        .ok()
        .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| format!("{secs} (invalid date)"))
}

fn torrent_text(m: &Metainfo) -> String {
    use std::fmt::Write;
    let info = &m.info;
    let mut s = String::new();
    let total = info.total_length();
    let _ = writeln!(s, "Name:        {}", info.name);
    let _ = writeln!(s, "Info-hash:   {}", m.info_hash);
    let _ = writeln!(s, "Size:        {} ({total} bytes)", HumanBytes(total));
    let _ = writeln!(
        s,
        "Pieces:      {} x {} ({} bytes)",
        info.num_pieces(),
        HumanBytes(info.piece_length),
        info.piece_length
    );
    let _ = writeln!(
        s,
        "Private:     {}",
        if info.private { "yes" } else { "no" }
    );
    if info.hybrid {
        let _ = writeln!(s, "Format:      hybrid v1+v2 (read through its v1 part)");
    }
    if let Some(c) = &m.created_by {
        let _ = writeln!(s, "Created by:  {c}");
    }
    if let Some(d) = m.creation_date {
        let _ = writeln!(s, "Created on:  {}", date(d));
    }
    if let Some(c) = &m.comment {
        let _ = writeln!(s, "Comment:     {c}");
    }
    if let Some(src) = &info.source {
        let _ = writeln!(s, "Source:      {src}");
    }
    let tiers = m.tracker_tiers();
    if tiers.is_empty() {
        let _ = writeln!(s, "Trackers:    none");
    } else {
        let _ = writeln!(s, "Trackers:");
        for (i, tier) in tiers.iter().enumerate() {
            for (j, url) in tier.iter().enumerate() {
                let label = if j == 0 {
                    format!("tier {}:", i + 1)
                } else {
                    String::new()
                };
                let _ = writeln!(s, "  {label:<8} {url}");
            }
        }
    }
    if !m.web_seeds.is_empty() {
        let _ = writeln!(s, "Web seeds:");
        for w in &m.web_seeds {
            let _ = writeln!(s, "  {w}");
        }
    }
    if !m.nodes.is_empty() {
        let _ = writeln!(s, "DHT nodes:");
        for (host, port) in &m.nodes {
            let _ = writeln!(s, "  {host}:{port}");
        }
    }
    let real: Vec<_> = info.files.iter().filter(|f| !f.padding).collect();
    let padding = info.files.len() - real.len();
    let _ = write!(s, "Files ({})", real.len());
    if padding > 0 {
        let _ = write!(s, ", plus {padding} padding files not shown");
    }
    let _ = writeln!(s, ":");
    for f in real {
        let _ = writeln!(
            s,
            "  {:>12}  {}",
            HumanBytes(f.length).to_string(),
            f.display_path()
        );
    }
    s
}

fn torrent_json(m: &Metainfo) -> serde_json::Value {
    let info = &m.info;
    json!({
        "name": info.name,
        "info_hash": m.info_hash.to_hex(),
        "total_size": info.total_length(),
        "piece_length": info.piece_length,
        "piece_count": info.num_pieces(),
        "private": info.private,
        "hybrid": info.hybrid,
        "multi_file": info.multi_file,
        "created_by": m.created_by,
        "creation_date": m.creation_date,
        "comment": m.comment,
        "source": info.source,
        "trackers": m.tracker_tiers(),
        "web_seeds": m.web_seeds,
        "nodes": m.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>(),
        "files": info.files.iter().map(|f| json!({
            "path": f.display_path(),
            "size": f.length,
            "padding": f.padding,
        })).collect::<Vec<_>>(),
    })
}

fn magnet_text(m: &Magnet) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Name:        {}",
        m.display_name.as_deref().unwrap_or("(not given)")
    );
    let _ = writeln!(s, "Info-hash:   {}", m.info_hash);
    if let Some(len) = m.exact_length {
        let _ = writeln!(s, "Size:        {} ({len} bytes)", HumanBytes(len));
    }
    let _ = writeln!(
        s,
        "Trackers:    {}",
        if m.trackers.is_empty() { "none" } else { "" }
    );
    for t in &m.trackers {
        let _ = writeln!(s, "  {t}");
    }
    if !m.web_seeds.is_empty() {
        let _ = writeln!(s, "Web seeds:");
        for w in &m.web_seeds {
            let _ = writeln!(s, "  {w}");
        }
    }
    let peers: Vec<String> = m
        .peers
        .iter()
        .map(ToString::to_string)
        .chain(m.peer_hosts.iter().map(|(h, p)| format!("{h}:{p}")))
        .collect();
    if !peers.is_empty() {
        let _ = writeln!(s, "Peers:");
        for p in peers {
            let _ = writeln!(s, "  {p}");
        }
    }
    if !m.select_only.is_empty() {
        let sel: Vec<String> = m.select_only.iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "Selected:    files {}", sel.join(","));
    }
    let _ = writeln!(
        s,
        "(file list and sizes come with the metadata, from peers)"
    );
    s
}

fn magnet_json(m: &Magnet) -> serde_json::Value {
    json!({
        "name": m.display_name,
        "info_hash": m.info_hash.to_hex(),
        "total_size": m.exact_length,
        "trackers": m.trackers,
        "web_seeds": m.web_seeds,
        "peers": m.peers.iter().map(ToString::to_string)
            .chain(m.peer_hosts.iter().map(|(h, p)| format!("{h}:{p}")))
            .collect::<Vec<_>>(),
        "select_only": m.select_only.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "uri": m.to_uri(),
    })
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

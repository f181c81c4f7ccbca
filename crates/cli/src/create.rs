//! `rivulet create`: make a .torrent from a file or folder.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use indicatif::HumanBytes;
use rivulet_core::create::{self, CreateOptions};
use rivulet_core::Metainfo;

use crate::progress::bytes_bar;
use crate::Outcome;

/// Arguments of `rivulet create`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// File or folder to share.
    path: PathBuf,
    /// Tracker URL; repeat for more tiers. Comma-separated URLs share one tier.
    #[arg(short = 't', long = "tracker", value_name = "URL", value_parser = crate::args::tracker_tier)]
    trackers: Vec<String>,
    /// Where to write the .torrent [default: NAME.torrent in the current folder].
    #[arg(short, long, value_name = "OUT.torrent")]
    output: Option<PathBuf>,
    /// Piece length in bytes, a power of two from 16 KiB to 256 MiB; K and M
    /// suffixes accepted (256K, 4M) [default: chosen for 1,000-2,000 pieces].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    piece_length: Option<u64>,
    /// Mark the torrent private (BEP 27): peers only from its trackers.
    #[arg(long)]
    private: bool,
    /// Web seed URL (BEP 19); may be repeated.
    #[arg(long = "web-seed", value_name = "URL", value_parser = crate::args::web_seed)]
    web_seeds: Vec<String>,
    /// Comment stored in the torrent.
    #[arg(long, value_name = "TEXT")]
    comment: Option<String>,
    /// Leave out the creation date, so the same data always gives the same file.
    #[arg(long)]
    no_date: bool,
    /// Overwrite the output file if it exists.
    #[arg(short, long)]
    force: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

/// Writes a .torrent to `output` through a temporary file renamed into
/// place, so that an interrupted run never leaves a truncated one behind;
/// an existing file is replaced only when `force`.
pub fn write_torrent_file(output: &std::path::Path, bytes: &[u8], force: bool) -> Result<()> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("cannot write {}", output.display()))?;
    if force {
        tmp.persist(output)
    } else {
        tmp.persist_noclobber(output)
    }
    .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(())
}

/// Parses "16384", "256K", "256KiB", "4M", "4MiB" (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = t
        .get(digits.len()..)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("unknown size unit {unit:?} (use K or M)")),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size"))
}

pub fn run(args: Args) -> Result<Outcome> {
    let source = create::scan(&args.path)?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", source.name)));
    if output.exists() && !args.force {
        bail!(
            "{} already exists (use --force to overwrite)",
            output.display()
        );
    }
    let trackers = args
        .trackers
        .iter()
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect();
    let options = CreateOptions {
        trackers,
        web_seeds: args.web_seeds.clone(),
        piece_length: args.piece_length,
        private: args.private,
        comment: args.comment.clone(),
        created_by: Some(format!("rivulet {}", env!("CARGO_PKG_VERSION"))),
        creation_date: if args.no_date {
            None
        } else {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_secs()).ok())
        },
    };
    let total = source.total_length();
    let bar = bytes_bar(total, "Hashing", args.quiet);
    let started = Instant::now();
    let bytes = create::create(&source, &options, &|done| bar.set_position(done))?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();

    write_torrent_file(&output, &bytes, args.force)?;

    let m = Metainfo::from_bytes(&bytes).context("the torrent just created does not parse")?;
    if !args.quiet {
        let secs = elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "Created {}: {} file{}, {}, {} pieces of {}, hashed in {:.2} s ({}/s)",
            output.display(),
            source.files.len(),
            if source.files.len() == 1 { "" } else { "s" },
            HumanBytes(total),
            m.info.num_pieces(),
            HumanBytes(m.info.piece_length),
            secs,
            HumanBytes((total as f64 / secs) as u64),
        );
    }
    // The info-hash on stdout, for scripts.
    rivulet_cli::print_stdout(&format!("{}\n", m.info_hash))?;
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16384"), Ok(16384));
        assert_eq!(parse_size("256K"), Ok(256 << 10));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert!(parse_size("4G").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("").is_err());
    }
}

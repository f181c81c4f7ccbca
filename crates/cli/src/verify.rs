//! `rivulet verify`: check the data on disk against a torrent's piece hashes.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::HumanBytes;
use rivulet_cli::print_stdout;
use rivulet_cli::render::printable;
use rivulet_core::piece_io::{check_pieces, too_long_files, PieceCheck};
use rivulet_core::Metainfo;

use crate::progress::bytes_bar;
use crate::Outcome;

/// Arguments of `rivulet verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .torrent file.
    #[arg(value_parser = crate::args::torrent_file)]
    torrent: PathBuf,
    /// Folder holding the data (the torrent's file or top folder is inside it).
    #[arg(short, long, value_name = "DIR", default_value = ".", value_parser = crate::args::data_folder)]
    output: PathBuf,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> Result<Outcome> {
    let bytes = std::fs::read(&args.torrent)
        .with_context(|| format!("cannot read {}", args.torrent.display()))?;
    let m = Metainfo::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid torrent", args.torrent.display()))?;
    let info = &m.info;
    let files = info.file_sources(&args.output);
    let bar = bytes_bar(info.total_length(), "Verifying", args.quiet);
    let started = Instant::now();
    let states = check_pieces(info.layout(), &files, &info.pieces, &|done| {
        bar.set_position(done)
    })?;
    bar.finish_and_clear();

    let count = |s: PieceCheck| states.iter().filter(|x| **x == s).count();
    let (good, bad, missing) = (
        count(PieceCheck::Good),
        count(PieceCheck::Bad),
        count(PieceCheck::Missing),
    );
    // Everything goes to stdout at once: a reader that stops early
    // (`| head`) is not an error, and names are shown, not obeyed.
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", printable(&info.name), m.info_hash);
    let _ = writeln!(
        out,
        "{good} of {} pieces complete, {bad} bad, {missing} missing ({} checked in {:.2} s)",
        states.len(),
        HumanBytes(info.total_length()),
        started.elapsed().as_secs_f64()
    );
    if bad > 0 {
        let _ = writeln!(out, "bad pieces: {}", ranges(&states, PieceCheck::Bad));
    }
    if missing > 0 {
        let _ = writeln!(
            out,
            "missing pieces: {}",
            ranges(&states, PieceCheck::Missing)
        );
    }
    // Name the files that are not whole, so the user knows what to fetch again.
    let layout = info.layout();
    for (i, f) in info.files.iter().enumerate() {
        if !f.is_stored() {
            continue;
        }
        let Some(pieces) = layout.file_pieces(i) else {
            continue;
        };
        let worst = pieces
            .filter_map(|p| states.get(p as usize).copied())
            .find(|s| *s != PieceCheck::Good);
        let path = args.output.join(f.relative_path());
        match worst {
            Some(PieceCheck::Bad) => {
                let _ = writeln!(out, "  damaged: {}", printable(&path.display().to_string()));
            }
            Some(PieceCheck::Missing) => {
                let _ = writeln!(
                    out,
                    "  incomplete: {}",
                    printable(&path.display().to_string())
                );
            }
            _ => {}
        }
    }
    // Extra bytes at the end of a file are no part of any piece, so the
    // hashes cannot see them; the data is still not what the torrent says.
    let too_long = too_long_files(layout, &files);
    for t in &too_long {
        let _ = writeln!(
            out,
            "  too long: {} ({} bytes, torrent says {})",
            printable(&t.path.display().to_string()),
            t.length,
            t.expected
        );
    }
    if !too_long.is_empty() {
        let (files, them) = match too_long.len() {
            1 => ("1 file is".to_owned(), "it"),
            n => (format!("{n} files are"), "them"),
        };
        let _ = writeln!(
            out,
            "{files} longer than the torrent says (`rivulet download` or `rivulet seed` truncates {them})"
        );
    }
    let complete = good == states.len() && too_long.is_empty();
    if complete {
        let _ = writeln!(out, "complete");
    }
    print_stdout(&out)?;
    Ok(match complete {
        true => Outcome::Success,
        false => Outcome::Incomplete,
    })
}

/// "0-3, 7, 9-10" for the pieces in state `which`.
fn ranges(states: &[PieceCheck], which: PieceCheck) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < states.len() {
        if states.get(i) != Some(&which) {
            i += 1;
            continue;
        }
        let start = i;
        while states.get(i + 1) == Some(&which) {
            i += 1;
        }
        out.push(if start == i {
            start.to_string()
        } else {
            format!("{start}-{i}")
        });
        i += 1;
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_ranges() {
        use PieceCheck::*;
        let s = [Bad, Bad, Good, Bad, Missing, Bad, Bad, Bad];
        assert_eq!(ranges(&s, Bad), "0-1, 3, 5-7");
        assert_eq!(ranges(&s, Missing), "4");
        assert_eq!(ranges(&s, Good), "2");
    }
}

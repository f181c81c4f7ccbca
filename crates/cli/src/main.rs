//! The `rivulet` command-line program.

mod create;
mod download;
mod info;
mod progress;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// rivulet: a fast, light BitTorrent client.
#[derive(Debug, Parser)]
#[command(name = "rivulet", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a .torrent from a file or a folder.
    Create(create::Args),
    /// Download a torrent's data from peers.
    Download(download::Args),
    /// Show what a .torrent file or magnet link holds.
    Info(info::Args),
    /// Check a torrent's data and serve it to peers until interrupted.
    Seed(download::SeedArgs),
    /// Check data on disk against a .torrent's piece hashes.
    Verify(verify::Args),
}

/// What a command reports back to `main`, beyond success.
pub enum Outcome {
    /// Everything asked for holds: exit status 0.
    Success,
    /// The command ran but the answer is "no" (data incomplete): exit status 1.
    Incomplete,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr, off unless RUST_LOG asks (RUST_LOG=rivulet_engine=debug).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        // Colours only for a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Create(args) => create::run(args),
        Command::Download(args) => download::run(args),
        Command::Info(args) => info::run(args),
        Command::Seed(args) => download::run_seed(args),
        Command::Verify(args) => verify::run(args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Incomplete) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

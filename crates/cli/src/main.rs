//! The `rivulet` command-line program.

mod args;
mod create;
mod daemon;
mod download;
mod info;
mod magnet;
mod manual;
mod progress;
mod remote;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What `rivulet --help` and the manual page say after the commands.
const AFTER_HELP: &str = "\
Exit status: 0 when the command did what it was asked (a download complete, \
seeding stopped by Ctrl-C or a limit, data verified whole); 1 when it \
stopped short (interrupted by Ctrl-C or SIGTERM before the data was \
complete, or verify found pieces bad or missing); 2 on an error (bad \
arguments, an unreadable torrent, a full disk, ...).

Resume data: download and seed keep what they have verified in \
DIR/.rivulet/<info-hash>.resume, beside the data.

Logs: RUST_LOG=rivulet_engine=debug shows peers and trackers at work.";

/// rivulet: a fast, light BitTorrent client.
#[derive(Debug, Parser)]
#[command(
    name = "rivulet",
    version,
    about,
    propagate_version = true,
    after_long_help = AFTER_HELP
)]
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
    /// Run the daemon: many torrents, kept across restarts, driven over an
    /// HTTP API and by the commands below.
    Daemon(daemon::Args),
    /// Add .torrent files or magnet links to the running daemon.
    Add(remote::AddArgs),
    /// List the daemon's torrents.
    List(remote::ListArgs),
    /// Show one of the daemon's torrents: files, trackers, peers.
    Show(remote::ShowArgs),
    /// List a torrent's files, or choose which to download and in what
    /// order.
    Files(remote::FilesArgs),
    /// Move a torrent's data to another folder: copied, checked against
    /// the piece hashes, switched to, then removed from the old folder.
    Move(remote::MoveArgs),
    /// Pause torrents of the daemon (kept paused across restarts).
    Pause(remote::IdsArgs),
    /// Resume paused torrents of the daemon.
    Resume(remote::IdsArgs),
    /// Check torrents' data again from scratch (resume data forgotten).
    Recheck(remote::IdsArgs),
    /// Announce torrents to their trackers now.
    Reannounce(remote::IdsArgs),
    /// Remove torrents from the daemon (their data stays unless
    /// --delete-data).
    Remove(remote::RemoveArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions(manual::CompletionsArgs),
    /// Print the manual page, or write one per command into a folder.
    #[command(hide = true)]
    Man(manual::ManArgs),
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
        Command::Daemon(args) => daemon::run(args),
        Command::Add(args) => remote::add(args),
        Command::List(args) => remote::list(args),
        Command::Show(args) => remote::show(args),
        Command::Files(args) => remote::files(args),
        Command::Move(args) => remote::move_data(args),
        Command::Pause(args) => remote::act(args, "pause"),
        Command::Resume(args) => remote::act(args, "resume"),
        Command::Recheck(args) => remote::act(args, "recheck"),
        Command::Reannounce(args) => remote::act(args, "reannounce"),
        Command::Remove(args) => remote::remove(args),
        Command::Completions(args) => manual::completions(args),
        Command::Man(args) => manual::man(args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Incomplete) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{} {}", error_prefix(), error_chain(&e));
            ExitCode::from(2)
        }
    }
}

/// `error:`, red and bold like clap's when stderr is a terminal and
/// `NO_COLOR` is not set (<https://no-color.org>), plain otherwise.
fn error_prefix() -> &'static str {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    if !no_color && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        "\x1b[1;31merror:\x1b[0m"
    } else {
        "error:"
    }
}

/// An error and its causes, `: `-separated, leaving out a cause whose text
/// the line already holds: some errors (io, walkdir, reqwest) repeat their
/// source in their own message, and a chain must say each thing once.
fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that shows its source in its message and also returns it
    /// as its `source`, as `walkdir::Error` does.
    #[derive(Debug)]
    struct Repeats(std::io::Error);

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "outer: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let inner = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(Repeats(inner)).context("cannot read x");
        assert_eq!(error_chain(&e), "cannot read x: outer: gone");
        let e = anyhow::anyhow!("a").context("b");
        assert_eq!(error_chain(&e), "b: a");
    }
}

//! `rivulet completions SHELL` and `rivulet man`: shell completions and
//! manual pages generated from the clap definitions, so they always list
//! the commands and flags the program has. Both are hidden from `--help`
//! (they are for packagers and dotfiles) and described in the README.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::{Cli, Outcome};

/// Arguments of `rivulet completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Arguments of `rivulet man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write rivulet.1 and one page per command (rivulet-download.1, ...)
    /// into this folder, instead of rivulet.1 to standard output.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: CompletionsArgs) -> Result<Outcome> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "rivulet", &mut out);
    std::io::stdout()
        .write_all(&out)
        .context("cannot write the completions")?;
    Ok(Outcome::Success)
}

/// Prints rivulet(1), or writes every page into `args.dir`.
pub fn man(args: ManArgs) -> Result<Outcome> {
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write manual pages in {}", dir.display()))?;
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .context("cannot render the manual page")?;
            std::io::stdout()
                .write_all(&out)
                .context("cannot write the manual page")?;
        }
    }
    Ok(Outcome::Success)
}

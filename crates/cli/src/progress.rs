//! Progress bars on stderr, shown only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-count progress bar for hashing work, or a hidden one when `quiet`
/// or when stderr is not a terminal (so logs and pipes stay clean).
pub fn bytes_bar(total: u64, verb: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total);
    let template = format!(
        "{verb:>9} [{{bar:30}}] {{percent:>3}}% {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} ETA {{eta}}"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The download status line: a bar plus a message with speeds, ETA, peers and
/// pieces; hidden when stderr is not a terminal.
pub fn status_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("[{bar:25}] {percent:>3}% {bytes}/{total_bytes} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

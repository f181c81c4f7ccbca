//! The parts of the `rivulet` program that are worth testing and fuzzing on
//! their own, without running a command: rendering what a torrent holds.

pub mod render;

/// Writes `text` to stdout. A reader that went away (`rivulet info x | head`)
/// is not an error: the output was not wanted any more. `println!` would
/// panic there.
pub fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

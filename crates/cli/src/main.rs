//! The `rivulet` command-line program.
fn main() {}

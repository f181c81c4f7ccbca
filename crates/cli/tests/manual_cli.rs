//! `rivulet completions SHELL` and `rivulet man`, run as a packager would:
//! the output names every command and the flags they take.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::{Command, Output};

/// Every command a user runs.
const COMMANDS: [&str; 5] = ["create", "download", "info", "seed", "verify"];

fn rivulet(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "rivulet {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn completions_for_every_shell_name_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = String::from_utf8(rivulet(&["completions", shell]).stdout).unwrap();
        assert!(script.len() > 1000, "{shell}: {script}");
        for command in COMMANDS {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
        for flag in ["seed-ratio", "scrape", "web-seed", "max-peers"] {
            assert!(script.contains(flag), "{shell} lacks --{flag}");
        }
    }
    let o = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn man_pages_cover_every_command() {
    let page = String::from_utf8(rivulet(&["man"]).stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH rivulet 1"),
        "{page}"
    );
    for command in COMMANDS {
        assert!(page.contains(&format!("rivulet\\-{command}(1)")), "{page}");
    }
    assert!(page.contains("Exit status"), "{page}");

    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    rivulet(&["man", "--dir", pages.to_str().unwrap()]);
    let read = |name: &str| std::fs::read_to_string(pages.join(name)).unwrap();
    assert!(read("rivulet.1").contains(".TH rivulet 1"));
    for command in COMMANDS {
        let page = read(&format!("rivulet-{command}.1"));
        assert!(page.contains(&format!(".TH rivulet-{command} 1")), "{page}");
    }
    assert!(read("rivulet-download.1").contains("\\-\\-seed\\-ratio"));
    assert!(read("rivulet-create.1").contains("\\-\\-force"));
    assert!(read("rivulet-info.1").contains("\\-\\-scrape"));
    // The hidden generators get no page of their own.
    assert!(!pages.join("rivulet-man.1").exists());
}

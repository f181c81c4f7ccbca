//! Turning the names and paths a .torrent carries into safe, usable paths
//! below the download folder, the way libtorrent 2.0 does it.
//!
//! Following libtorrent's rules rather than inventing ours means a folder
//! downloaded by any libtorrent-based client (qBittorrent, Deluge, ...) is
//! found as complete by rivulet and the other way round. The rules, per path
//! component (`crates/cli/tests/interop_conformance.rs` holds every one of
//! them against libtorrent 2.0.8):
//!
//! - `/` and `\` inside a component, and the Unicode controls that reverse
//!   the writing direction (U+202A–U+202E, U+200E, U+200F), are removed;
//! - control characters (below U+0020) and bytes that are not UTF-8 become `_`;
//! - a component that is then empty, `.` or `..` is dropped, so nothing can
//!   climb out of the folder or be absolute;
//! - a component that was empty to begin with becomes `_`;
//! - a component longer than 240 bytes is cut there, keeping a short extension;
//! - a file whose components all vanish is named `_`; a torrent `name` that
//!   vanishes is replaced by the info-hash in hex.
//!
//! Then two files may land on the same path (also when a file's path is
//! another file's folder, and comparing without ASCII case, as libtorrent
//! does so that a torrent means the same files on every system): the later
//! ones are renamed `stem.1.ext`, `stem.2.ext`, ... ([`resolve_duplicates`]).

use std::collections::HashSet;

/// Longest component kept before cutting, in bytes (libtorrent's figure;
/// file systems allow 255).
const MAX_COMPONENT: usize = 240;

/// Unicode controls that change the writing direction: they can make
/// `evil\u{202e}txt.exe` display as `evilexe.txt`.
const BIDI_CONTROLS: [char; 7] = [
    '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{200e}', '\u{200f}',
];

/// One path component made safe; `None` when it is dropped (it was `.`,
/// `..`, or nothing but separators).
pub fn component(raw: &[u8]) -> Option<String> {
    if raw == b"." {
        return None;
    }
    if raw.is_empty() {
        return Some("_".to_owned());
    }
    let mut out = String::with_capacity(raw.len().min(MAX_COMPONENT + 16));
    let mut rest = raw;
    let mut cut_at_extension = false;
    while !rest.is_empty() {
        let current = raw.len() - rest.len();
        let (c, len) = next_char(rest);
        let consumed = rest.get(len..).unwrap_or_default();
        match c {
            Some(c) if c == '/' || c == '\\' || BIDI_CONTROLS.contains(&c) => {}
            Some(c) if (c as u32) >= 32 => out.push(c),
            _ => out.push('_'),
        }
        rest = consumed;
        if out.len() >= MAX_COMPONENT && !cut_at_extension {
            // Keep an extension from the last 9 bytes of the raw name, so
            // that a cut `very long name.mkv` still ends in `.mkv`.
            let tail_start = raw.len().saturating_sub(10);
            let dot = raw
                .iter()
                .enumerate()
                .rev()
                .take_while(|(j, _)| *j > tail_start.max(current))
                .find(|(_, b)| **b == b'.')
                .map(|(j, _)| j);
            match dot {
                Some(j) => {
                    cut_at_extension = true;
                    rest = raw.get(j..).unwrap_or_default();
                }
                None => break,
            }
        }
    }
    if out.is_empty() || out == "." || out == ".." {
        return None;
    }
    Some(out)
}

/// The next character of `bytes` and how many bytes it took; `None` for an
/// invalid sequence. An invalid sequence consumes as many bytes as its lead
/// byte announces (a stray byte consumes one), as libtorrent's decoder does,
/// so that both name the file alike.
fn next_char(bytes: &[u8]) -> (Option<char>, usize) {
    let Some(&lead) = bytes.first() else {
        return (None, 1);
    };
    let width = match lead {
        0x00..=0x7f => 1,
        _ if lead >> 5 == 0b110 => 2,
        _ if lead >> 4 == 0b1110 => 3,
        _ if lead >> 3 == 0b11110 => 4,
        _ if lead >> 2 == 0b11_1110 => return (None, 5.min(bytes.len())),
        _ => return (None, 1),
    };
    match bytes.get(..width) {
        None => (None, bytes.len()),
        // std's decoder refuses overlong forms, surrogates and code points
        // past U+10FFFF, as libtorrent's does.
        Some(seq) => (
            std::str::from_utf8(seq).ok().and_then(|s| s.chars().next()),
            width,
        ),
    }
}

/// A file's path components made safe; never empty (a path whose components
/// all vanish becomes `_`).
pub fn path<'a>(raw: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    let mut out: Vec<String> = raw.into_iter().filter_map(component).collect();
    if out.is_empty() {
        out.push("_".to_owned());
    }
    out
}

/// The torrent's `name` made safe; `None` when nothing usable is left (the
/// caller then uses the info-hash in hex).
pub fn name(raw: &[u8]) -> Option<String> {
    component(raw)
}

/// Renames files that would land on the same path as an earlier file or on
/// a folder of another file: `a.txt` becomes `a.1.txt`, then `a.2.txt`, ...
/// Paths compare without ASCII case. `paths[i]` is file `i`'s components;
/// `exempt(i, j)` says file `i` may share a path with the earlier file `j`
/// (padding files of the same length, which are never written). Returns the
/// indices of the renamed files.
pub fn resolve_duplicates(
    paths: &mut [Vec<String>],
    exempt: impl Fn(usize, usize) -> bool,
) -> Vec<usize> {
    let key = |components: &[String]| components.join("/").to_ascii_lowercase();
    // Every folder first, so that no file may take a folder's path.
    let mut taken: HashSet<String> = HashSet::new();
    for p in paths.iter() {
        for end in 1..p.len() {
            taken.insert(key(p.get(..end).unwrap_or_default()));
        }
    }
    let mut owner: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut renamed = Vec::new();
    for i in 0..paths.len() {
        let Some(p) = paths.get_mut(i) else { break };
        let k = key(p);
        let clash = match owner.get(&k) {
            Some(&j) => !exempt(i, j),
            None => taken.contains(&k),
        };
        if !clash {
            owner.entry(k.clone()).or_insert(i);
            taken.insert(k);
            continue;
        }
        let Some(last) = p.last().cloned() else {
            continue;
        };
        let (stem, ext) = split_extension(&last);
        for n in 1u64.. {
            let candidate = format!("{stem}.{n}{ext}");
            if let Some(l) = p.last_mut() {
                *l = candidate;
            }
            let k = key(p);
            if !taken.contains(&k) {
                owner.insert(k.clone(), i);
                taken.insert(k);
                break;
            }
        }
        renamed.push(i);
    }
    renamed
}

/// `("a.tar", ".gz")` for `a.tar.gz`; `("", ".bashrc")` for `.bashrc`;
/// `("a", "")` for `a` (libtorrent's split, which numbering follows).
fn split_extension(file_name: &str) -> (&str, &str) {
    match file_name.rfind('.') {
        Some(i) => file_name.split_at(i),
        None => (file_name, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(raw: &str) -> Option<String> {
        component(raw.as_bytes())
    }

    #[test]
    fn components() {
        assert_eq!(c("a"), Some("a".into()));
        assert_eq!(c(""), Some("_".into()));
        assert_eq!(c("."), None);
        assert_eq!(c(".."), None);
        assert_eq!(c("/"), None);
        assert_eq!(c("/.."), None);
        assert_eq!(c("a/b"), Some("ab".into()));
        assert_eq!(c("a\\b"), Some("ab".into()));
        assert_eq!(c("/etc"), Some("etc".into()));
        assert_eq!(c("a\u{1}b"), Some("a_b".into()));
        assert_eq!(c("a\u{202e}b"), Some("ab".into()));
        assert_eq!(c("..."), Some("...".into()));
        assert_eq!(c(".hidden"), Some(".hidden".into()));
        assert_eq!(component(b"a\xffb"), Some("a_b".into()));
        assert_eq!(component(b"\xe2\x82"), Some("_".into()));
        assert_eq!(component(b"\xe2\x82x"), Some("_".into()));
        assert_eq!(component(b"\xc0\xafx"), Some("_x".into()));
        assert_eq!(c("é"), Some("é".into()));
    }

    #[test]
    fn long_components_are_cut_keeping_the_extension() {
        let long = format!("{}.txt", "x".repeat(300));
        let got = c(&long).unwrap();
        assert_eq!(got, format!("{}.txt", "x".repeat(240)));
        let got = c(&"y".repeat(300)).unwrap();
        assert_eq!(got, "y".repeat(240));
        // Multi-byte characters are never split.
        let got = c(&"é".repeat(200)).unwrap();
        assert!(got.len() <= 241 && got.chars().all(|ch| ch == 'é'));
    }

    #[test]
    fn paths_never_empty() {
        assert_eq!(path([b"..".as_slice(), b"."]), vec!["_"]);
        assert_eq!(path([b"..".as_slice(), b"a"]), vec!["a"]);
        assert_eq!(path([b"".as_slice(), b"a"]), vec!["_", "a"]);
    }

    fn renamed(paths: &[&str]) -> Vec<String> {
        let mut p: Vec<Vec<String>> = paths
            .iter()
            .map(|s| s.split('/').map(str::to_owned).collect())
            .collect();
        resolve_duplicates(&mut p, |_, _| false);
        p.iter().map(|c| c.join("/")).collect()
    }

    #[test]
    fn duplicates_renamed_like_libtorrent() {
        assert_eq!(
            renamed(&["t/a.txt", "t/a.txt", "t/a.txt"]),
            ["t/a.txt", "t/a.1.txt", "t/a.2.txt"]
        );
        assert_eq!(renamed(&["t/A.txt", "t/a.txt"]), ["t/A.txt", "t/a.1.txt"]);
        assert_eq!(renamed(&["t/a", "t/a/b"]), ["t/a.1", "t/a/b"]);
        assert_eq!(renamed(&["t/a/b", "t/a"]), ["t/a/b", "t/a.1"]);
        assert_eq!(
            renamed(&["t/.bashrc", "t/.bashrc"]),
            ["t/.bashrc", "t/.1.bashrc"]
        );
        assert_eq!(
            renamed(&["t/a.tar.gz", "t/a.tar.gz"]),
            ["t/a.tar.gz", "t/a.tar.1.gz"]
        );
        assert_eq!(renamed(&["t/d.d/f", "t/d.d/f"]), ["t/d.d/f", "t/d.d/f.1"]);
        assert_eq!(renamed(&["t/a.1", "t/a", "t/a"]), ["t/a.1", "t/a", "t/a.2"]);
    }
}

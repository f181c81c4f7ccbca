//! What `rivulet info` prints about a torrent or magnet link, as text and as
//! JSON. Everything shown comes from outside (a .torrent, a magnet link), so
//! nothing here trusts it: any value renders without a panic (the
//! `render` fuzz target holds this), dates that cannot be dates print as
//! their number, and control characters in names and comments are shown
//! escaped rather than sent to the terminal.

use std::borrow::Cow;
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use indicatif::HumanBytes;
use rivulet_core::{FileEntry, Magnet, Metainfo};
use serde_json::json;

/// Latest second `humantime` can print (9999-12-31T23:59:59Z): its RFC 3339
/// formatter panics on five-digit years.
const LAST_PRINTABLE_SECOND: u64 = 253_402_300_799;

/// A `creation date` for people: RFC 3339 when it is a date in seconds, its
/// raw number otherwise (with the date it would be in milliseconds, which
/// some tools write).
pub fn date(secs: i64) -> String {
    let as_date = |s: i64| {
        u64::try_from(s)
            .ok()
            .filter(|s| *s <= LAST_PRINTABLE_SECOND)
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
    };
    match as_date(secs) {
        Some(d) => d,
        None => match as_date(secs / 1000) {
            Some(d) if secs > 0 => {
                format!("{secs} (not a date in seconds; in milliseconds it is {d})")
            }
            _ => format!("{secs} (not a date)"),
        },
    }
}

/// `s` with control characters (and nothing else) escaped, so that a name or
/// comment cannot move the cursor, recolour or retitle the terminal.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| match c.is_control() {
                true => c.escape_default().to_string(),
                false => c.to_string(),
            })
            .collect(),
    )
}

/// "1 file", "2 files".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn format_name(m: &Metainfo) -> &'static str {
    match (m.info.v2_only, m.info.hybrid) {
        (true, _) => "v2",
        (false, true) => "hybrid",
        (false, false) => "v1",
    }
}

/// `rivulet info TORRENT` as text.
pub fn torrent_text(m: &Metainfo) -> String {
    let info = &m.info;
    let mut s = String::new();
    let total = info.total_length();
    let _ = writeln!(s, "Name:        {}", printable(&info.name));
    match (&m.info_hash_v2, info.v2_only) {
        (None, _) => {
            let _ = writeln!(s, "Info-hash:   {}", m.info_hash);
        }
        (Some(v2), true) => {
            let _ = writeln!(s, "Info-hash:   {v2} (v2)");
        }
        (Some(v2), false) => {
            let _ = writeln!(s, "Info-hash:   {} (v1)", m.info_hash);
            let _ = writeln!(s, "             {v2} (v2)");
        }
    }
    let _ = writeln!(s, "Size:        {} ({total} bytes)", HumanBytes(total));
    let _ = writeln!(
        s,
        "Pieces:      {} x {} ({} bytes)",
        info.num_pieces(),
        HumanBytes(info.piece_length),
        info.piece_length
    );
    let _ = writeln!(
        s,
        "Private:     {}",
        if info.private { "yes" } else { "no" }
    );
    match format_name(m) {
        "v2" => {
            let _ = writeln!(
                s,
                "Format:      v2 only (BEP 52; rivulet cannot download these yet)"
            );
        }
        "hybrid" => {
            let _ = writeln!(s, "Format:      hybrid v1+v2 (read through its v1 part)");
        }
        _ => {}
    }
    if let Some(c) = &m.created_by {
        let _ = writeln!(s, "Created by:  {}", printable(c));
    }
    if let Some(d) = m.creation_date {
        let _ = writeln!(s, "Created on:  {}", date(d));
    }
    if let Some(c) = &m.comment {
        let _ = writeln!(s, "Comment:     {}", printable(c));
    }
    if let Some(src) = &info.source {
        let _ = writeln!(s, "Source:      {}", printable(src));
    }
    let tiers = m.tracker_tiers();
    if tiers.is_empty() {
        let _ = writeln!(s, "Trackers:    none");
    } else {
        let _ = writeln!(s, "Trackers:");
        for (i, tier) in tiers.iter().enumerate() {
            for (j, url) in tier.iter().enumerate() {
                let label = if j == 0 {
                    format!("tier {}:", i + 1)
                } else {
                    String::new()
                };
                let _ = writeln!(s, "  {label:<8} {}", printable(url));
            }
        }
    }
    if !m.web_seeds.is_empty() {
        let _ = writeln!(s, "Web seeds:");
        for w in &m.web_seeds {
            let _ = writeln!(s, "  {}", printable(w));
        }
    }
    if !m.nodes.is_empty() {
        let _ = writeln!(s, "DHT nodes:");
        for (host, port) in &m.nodes {
            let _ = writeln!(s, "  {}:{port}", printable(host));
        }
    }
    // With their index in the torrent (padding counted), which is what
    // `rivulet add --files` and `rivulet files` take.
    let real: Vec<(usize, &FileEntry)> = info
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.padding)
        .collect();
    let padding = info.files.len() - real.len();
    let _ = write!(s, "Files ({})", real.len());
    if padding > 0 {
        let _ = write!(
            s,
            ", plus {} not shown",
            plural(padding, "padding file", "padding files")
        );
    }
    let _ = writeln!(s, ":");
    for (index, f) in real {
        let _ = write!(
            s,
            "  {index:>4}  {:>12}  {}",
            HumanBytes(f.length).to_string(),
            printable(&f.display_path())
        );
        if f.executable {
            let _ = write!(s, " (executable)");
        }
        if let Some(link) = &f.symlink {
            let _ = match &link.target {
                Some(t) => write!(s, " -> {}", printable(&t.join("/"))),
                None => write!(
                    s,
                    " -> {} (outside the torrent: not created)",
                    printable(&link.given)
                ),
            };
        }
        if let Some(given) = &f.torrent_path {
            let _ = write!(s, "  [torrent says {:?}]", given);
        }
        let _ = writeln!(s);
    }
    if !info.warnings.is_empty() {
        let _ = writeln!(s, "Changed to load safely:");
        for w in &info.warnings {
            let _ = writeln!(s, "  {}", printable(w));
        }
    }
    s
}

/// `rivulet info TORRENT --json`.
pub fn torrent_json(m: &Metainfo) -> serde_json::Value {
    let info = &m.info;
    json!({
        "name": info.name,
        "info_hash": (!info.v2_only).then(|| m.info_hash.to_hex()),
        "info_hash_v2": m.info_hash_v2.map(|h| h.to_hex()),
        "format": format_name(m),
        "total_size": info.total_length(),
        "piece_length": info.piece_length,
        "piece_count": info.num_pieces(),
        "private": info.private,
        "hybrid": info.hybrid,
        "multi_file": info.multi_file,
        "created_by": m.created_by,
        "creation_date": m.creation_date,
        "comment": m.comment,
        "source": info.source,
        "trackers": m.tracker_tiers(),
        "web_seeds": m.web_seeds,
        "nodes": m.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>(),
        "files": info.files.iter().map(|f| json!({
            "path": f.display_path(),
            "size": f.length,
            "padding": f.padding,
            "executable": f.executable,
            "hidden": f.hidden,
            "path_changed": f.torrent_path.is_some(),
            "torrent_path": f.torrent_path,
            "symlink": f.symlink.as_ref().map(|l| json!({
                "target": l.target.as_ref().map(|t| t.join("/")),
                "torrent_target": l.given,
            })),
        })).collect::<Vec<_>>(),
        "warnings": info.warnings,
    })
}

/// `rivulet info MAGNET` as text.
pub fn magnet_text(m: &Magnet) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Name:        {}",
        printable(m.display_name.as_deref().unwrap_or("(not given)"))
    );
    let _ = writeln!(s, "Info-hash:   {}", m.info_hash);
    if let Some(len) = m.exact_length {
        let _ = writeln!(s, "Size:        {} ({len} bytes)", HumanBytes(len));
    }
    let _ = writeln!(
        s,
        "Trackers:    {}",
        if m.trackers.is_empty() { "none" } else { "" }
    );
    for t in &m.trackers {
        let _ = writeln!(s, "  {}", printable(t));
    }
    if !m.web_seeds.is_empty() {
        let _ = writeln!(s, "Web seeds:");
        for w in &m.web_seeds {
            let _ = writeln!(s, "  {}", printable(w));
        }
    }
    let peers: Vec<String> = m
        .peers
        .iter()
        .map(ToString::to_string)
        .chain(m.peer_hosts.iter().map(|(h, p)| format!("{h}:{p}")))
        .collect();
    if !peers.is_empty() {
        let _ = writeln!(s, "Peers:");
        for p in peers {
            let _ = writeln!(s, "  {}", printable(&p));
        }
    }
    if !m.select_only.is_empty() {
        let sel: Vec<String> = m.select_only.iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "Selected:    files {}", sel.join(","));
    }
    let _ = writeln!(
        s,
        "(file list and sizes come with the metadata, from peers)"
    );
    s
}

/// `rivulet info MAGNET --json`.
pub fn magnet_json(m: &Magnet) -> serde_json::Value {
    json!({
        "name": m.display_name,
        "info_hash": m.info_hash.to_hex(),
        "total_size": m.exact_length,
        "trackers": m.trackers,
        "web_seeds": m.web_seeds,
        "peers": m.peers.iter().map(ToString::to_string)
            .chain(m.peer_hosts.iter().map(|(h, p)| format!("{h}:{p}")))
            .collect::<Vec<_>>(),
        "select_only": m.select_only.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "uri": m.to_uri(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_that_are_not_dates_print_as_numbers() {
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(1_449_730_287), "2015-12-10T06:51:27Z");
        assert_eq!(
            date(1_449_730_287_842),
            "1449730287842 (not a date in seconds; in milliseconds it is 2015-12-10T06:51:27Z)"
        );
        assert_eq!(date(-1), "-1 (not a date)");
        assert_eq!(date(i64::MAX), format!("{} (not a date)", i64::MAX));
        assert_eq!(date(i64::MIN), format!("{} (not a date)", i64::MIN));
        assert_eq!(date(253_402_300_799), "9999-12-31T23:59:59Z");
        assert!(date(253_402_300_800).starts_with("253402300800 (not a date in seconds"));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain é"), "plain é");
        assert_eq!(printable("a\u{1b}[31mred"), "a\\u{1b}[31mred");
        assert_eq!(printable("line\nbreak"), "line\\nbreak");
    }
}

//! Value parsers for command-line arguments. Each turns a mistake into a
//! message that says what is accepted; clap prints it as
//! `error: invalid value 'X' for '--flag <V>': MESSAGE` and exits with status
//! 2, before anything is read, written or connected.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Whether `s` starts with `prefix`, ignoring ASCII case.
fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// Why a web address is not a .torrent file: rivulet does not fetch them.
const URL_GIVEN: &str = "rivulet does not fetch .torrent files from the web: \
                         download it first (for example with `curl -O URL`), then give the file";

/// `--encryption`: whether peer connections are encrypted (MSE/PE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encryption {
    /// Encrypt where the peer can, plaintext where it cannot (falling back
    /// at once, and remembering the peer); take both from peers.
    Prefer,
    /// Encrypted (RC4) connections only, both ways.
    Require,
    /// Plaintext only, both ways.
    Off,
}

impl From<Encryption> for rivulet_engine::encryption::Encryption {
    fn from(e: Encryption) -> Self {
        match e {
            Encryption::Prefer => Self::Prefer,
            Encryption::Require => Self::Require,
            Encryption::Off => Self::Off,
        }
    }
}

/// What `download` and `seed` start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A .torrent file.
    File(PathBuf),
    /// A magnet link: the metadata comes from peers (or from an earlier run).
    Magnet(Box<rivulet_core::Magnet>),
}

/// The torrent of `download` and `seed`: a .torrent file or a magnet link
/// (checked here, so that a broken link is an error before anything starts),
/// not a web address.
pub fn torrent_source(s: &str) -> Result<Source, String> {
    if starts_with_ignore_case(s, "magnet:") {
        return rivulet_core::Magnet::parse(s)
            .map(|m| Source::Magnet(Box::new(m)))
            .map_err(|e| format!("invalid magnet link: {e}"));
    }
    torrent_file(s).map(Source::File)
}

/// The .torrent file of `verify`: a path, not a magnet link or a web
/// address (said plainly, rather than "No such file").
pub fn torrent_file(s: &str) -> Result<PathBuf, String> {
    if starts_with_ignore_case(s, "magnet:") {
        return Err(
            "verify needs the .torrent file; for a magnet link, give the one `rivulet download` \
             kept in DIR/.rivulet/<info-hash>.torrent (or save one with `rivulet info MAGNET --fetch --save FILE`)"
                .into(),
        );
    }
    if starts_with_ignore_case(s, "http://") || starts_with_ignore_case(s, "https://") {
        return Err(URL_GIVEN.into());
    }
    Ok(PathBuf::from(s))
}

/// The target of `info`: a .torrent file or a magnet link, not a web address.
pub fn torrent_or_magnet(s: &str) -> Result<String, String> {
    if starts_with_ignore_case(s, "http://") || starts_with_ignore_case(s, "https://") {
        return Err(URL_GIVEN.into());
    }
    Ok(s.to_owned())
}

/// A data folder (`-o DIR`): it may not exist yet (it is created), but it
/// must not be a file.
pub fn data_folder(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    match std::fs::metadata(&path) {
        Ok(meta) if !meta.is_dir() => Err(format!(
            "{s} is a file, not a folder; give the folder the data goes in"
        )),
        _ => Ok(path),
    }
}

/// `--seed-ratio R`: a finite number of at least 0. Negative numbers reach
/// this parser (the argument allows them), so that the message is about the
/// value rather than clap's "use '-- -1'" tip.
pub fn seed_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        Ok(r) if r.is_finite() => Err(
            "must be at least 0 (0 stops once complete; 1.5 uploads one and a half times the size)"
                .into(),
        ),
        _ => Err("expected a number of at least 0, such as 1 or 1.5".into()),
    }
}

/// `--seed-time DURATION`: `90s`, `30m`, `2h`, `1h 30m`; never negative.
pub fn seed_time(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Some(rest) = t.strip_prefix('-') {
        if humantime::parse_duration(rest.trim()).is_ok() {
            return Err("must be at least 0".into());
        }
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{e}; expected a duration such as 90s, 30m, 2h or 1h30m"))
}

/// `--max-peers N`: at least 1 (0 would never connect to anyone).
pub fn max_peers(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number of at least 1".into()),
    }
}

/// A `--peer` as given, with the addresses it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// What the user wrote.
    pub text: String,
    /// Its address, or every address its host name resolved to.
    pub addrs: Vec<SocketAddr>,
}

/// What `--peer` accepts, for messages.
const PEER_FORMS: &str = "expected IP:PORT, [IPv6]:PORT or HOST:PORT with a port from 1 to 65535";

/// `--peer`: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`; port 0 refused; a host
/// name is resolved here, when the command starts, and one that does not
/// resolve is an error rather than a peer that is silently never reached.
pub fn peer(s: &str) -> Result<Peer, String> {
    let text = s.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("port 0 is not a peer's port; {PEER_FORMS}"));
        }
        return Ok(Peer {
            text: text.to_owned(),
            addrs: vec![addr],
        });
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("no port; {PEER_FORMS}"));
    };
    // A colon left in the host is an IPv6 address without brackets (or
    // garbage): the port would be ambiguous.
    if host.is_empty() || host.contains(':') || host.contains('[') {
        return Err(PEER_FORMS.into());
    }
    let port = match port.parse::<u16>() {
        Ok(0) => return Err(format!("port 0 is not a peer's port; {PEER_FORMS}")),
        Ok(p) => p,
        Err(_) => return Err(format!("{port:?} is not a port; {PEER_FORMS}")),
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host name {host:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("host name {host:?} has no address"));
    }
    Ok(Peer {
        text: text.to_owned(),
        addrs,
    })
}

/// One tracker URL: what trackers speak, with a host (and, for UDP, a port,
/// since UDP trackers have no default one).
fn tracker_url(u: &str) -> Result<(), String> {
    const FORMS: &str = "a tracker URL starts with http://, https:// or udp:// and names a host, \
                         e.g. udp://tracker.example:6969/announce";
    let url = url::Url::parse(u).map_err(|e| format!("{u:?} is not a URL ({e}); {FORMS}"))?;
    if !matches!(url.scheme(), "http" | "https" | "udp") {
        return Err(format!("{u:?}: {FORMS}"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{u:?} names no host; {FORMS}"));
    }
    if url.scheme() == "udp" && url.port().is_none() {
        return Err(format!(
            "{u:?} has no port (UDP trackers have no default port), e.g. udp://tracker.example:6969/announce"
        ));
    }
    Ok(())
}

/// `create -t URL[,URL...]`: every URL of the tier must be a tracker URL.
/// Returns the text unchanged (the command splits the tier).
pub fn tracker_tier(s: &str) -> Result<String, String> {
    let urls: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err("expected a tracker URL, or several separated by commas".into());
    }
    for u in urls {
        tracker_url(u)?;
    }
    Ok(s.to_owned())
}

/// `create --web-seed URL`: web seeds (BEP 19) are served over HTTP(S).
pub fn web_seed(s: &str) -> Result<String, String> {
    let ok = url::Url::parse(s.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .is_some_and(|u| u.host_str().is_some_and(|h| !h.is_empty()));
    if ok {
        Ok(s.trim().to_owned())
    } else {
        Err(
            "expected an http:// or https:// URL of the data, e.g. https://mirror.example/files/"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torrent_files_are_not_links() {
        assert_eq!(torrent_file("a.torrent"), Ok(PathBuf::from("a.torrent")));
        let magnet = torrent_file("MAGNET:?xt=urn:btih:aa").unwrap_err();
        assert!(
            magnet.contains("verify needs the .torrent file"),
            "{magnet}"
        );
        let link = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567";
        assert!(matches!(torrent_source(link), Ok(Source::Magnet(_))));
        let bad = torrent_source("MAGNET:?xt=urn:btih:aa").unwrap_err();
        assert!(bad.starts_with("invalid magnet link: "), "{bad}");
        assert_eq!(
            torrent_source("a.torrent"),
            Ok(Source::File(PathBuf::from("a.torrent")))
        );
        let web = torrent_file("https://example.org/x.torrent").unwrap_err();
        assert!(web.contains("download it first"), "{web}");
        assert!(torrent_or_magnet("http://x/y").is_err());
        assert!(torrent_or_magnet("magnet:?xt=urn:btih:aa").is_ok());
    }

    #[test]
    fn a_file_is_not_a_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = data_folder(file.to_str().unwrap()).unwrap_err();
        assert!(e.contains("is a file, not a folder"), "{e}");
        assert!(data_folder(dir.path().to_str().unwrap()).is_ok());
        assert!(data_folder(dir.path().join("new").to_str().unwrap()).is_ok());
    }

    #[test]
    fn ratios_and_times_are_not_negative() {
        assert_eq!(seed_ratio("1.5"), Ok(1.5));
        assert_eq!(seed_ratio("0"), Ok(0.0));
        assert!(seed_ratio("-1")
            .unwrap_err()
            .starts_with("must be at least 0"));
        assert!(seed_ratio("NaN").unwrap_err().contains("expected a number"));
        assert!(seed_ratio("inf").is_err());
        assert!(seed_ratio("x").is_err());
        assert_eq!(seed_time("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(seed_time("-5m"), Err("must be at least 0".into()));
        assert!(seed_time("soon").unwrap_err().contains("90s"));
    }

    #[test]
    fn max_peers_is_at_least_one() {
        assert_eq!(max_peers("1"), Ok(1));
        assert_eq!(max_peers("0"), Err("must be at least 1".into()));
        assert!(max_peers("-3").is_err());
    }

    #[test]
    fn peers() {
        let p = peer("127.0.0.2:6881").unwrap();
        assert_eq!(p.addrs, ["127.0.0.2:6881".parse().unwrap()]);
        let p = peer("[::1]:7000").unwrap();
        assert_eq!(p.addrs, ["[::1]:7000".parse().unwrap()]);
        let p = peer("localhost:40001").unwrap();
        assert!(!p.addrs.is_empty());
        assert!(p
            .addrs
            .iter()
            .all(|a| a.port() == 40001 && a.ip().is_loopback()));
        assert!(peer("127.0.0.2:0").unwrap_err().contains("port 0"));
        assert!(peer("localhost:0").unwrap_err().contains("port 0"));
        assert!(peer("127.0.0.2").unwrap_err().contains("no port"));
        assert!(peer("::1").is_err());
        assert!(peer(":80").is_err());
        assert!(peer("host:http").unwrap_err().contains("not a port"));
        // `.invalid` never resolves (RFC 2606).
        let e = peer("nowhere.invalid:80").unwrap_err();
        assert!(e.contains("nowhere.invalid"), "{e}");
    }

    #[test]
    fn tracker_urls() {
        assert!(tracker_tier("http://t.example/announce").is_ok());
        assert!(tracker_tier("udp://t.example:6969/announce, https://t2.example/a").is_ok());
        assert!(tracker_tier("not a url").is_err());
        assert!(tracker_tier("ftp://t.example/announce").is_err());
        assert!(tracker_tier("udp://t.example/announce")
            .unwrap_err()
            .contains("no port"));
        assert!(tracker_tier("http://t.example/a,not a url").is_err());
        assert!(tracker_tier(",").is_err());
        assert!(web_seed("https://m.example/files/").is_ok());
        assert!(web_seed("udp://m.example:1/").is_err());
    }
}

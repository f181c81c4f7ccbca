//! `rivulet daemon`: the session with its torrents kept in a state folder,
//! driven over the HTTP API (see `rivulet_daemon::api`) and by `rivulet add`,
//! `list`, `show`, `pause`, `resume` and `remove`.
//!
//! Settings come from flags, then environment variables (`RIVULET_*`, named
//! beside each flag in `--help`), then the config file (TOML, `--config`,
//! by default `STATE_DIR/daemon.toml` when it exists), then defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rivulet_daemon::api::{self, ApiConfig};
use rivulet_daemon::store::{SessionSettings, Store};
use rivulet_daemon::{token, Daemon, DaemonOptions, DEFAULT_API_PORT};
use rivulet_engine::session::{Session, SessionConfig};
use serde::Deserialize;

use crate::{args, Outcome};

/// Arguments of `rivulet daemon`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the daemon keeps its torrents, their settings and the API
    /// token [default: $XDG_STATE_HOME/rivulet, else ~/.local/state/rivulet].
    #[arg(long, value_name = "DIR", env = "RIVULET_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The config file (TOML; keys as the long flags, with `_` for `-`)
    /// [default: STATE_DIR/daemon.toml, if it exists].
    #[arg(long, value_name = "FILE", env = "RIVULET_CONFIG")]
    config: Option<PathBuf>,
    /// Where torrents download to unless added with another folder
    /// [default: ~/Downloads].
    #[arg(long, value_name = "DIR", env = "RIVULET_DOWNLOAD_DIR")]
    download_dir: Option<PathBuf>,
    /// Where the HTTP API listens [default: 127.0.0.1:6880]. Anything but a
    /// loopback address exposes it to the network (the token still guards
    /// it).
    #[arg(long, value_name = "ADDR:PORT", env = "RIVULET_API")]
    api: Option<SocketAddr>,
    /// A host name the API answers to besides loopback names and IP
    /// addresses (the `Host` header); may be repeated.
    #[arg(long = "api-host", value_name = "NAME")]
    api_hosts: Vec<String>,
    /// Port to listen on for peers [default: 6881; the next free one when
    /// taken].
    #[arg(long, value_name = "N", env = "RIVULET_PORT")]
    port: Option<u16>,
    /// Local address to listen on and to connect and announce from.
    #[arg(long, value_name = "IP", env = "RIVULET_BIND")]
    bind: Option<IpAddr>,
    /// Encryption of peer connections (MSE/PE) [default: prefer].
    #[arg(long, value_enum, value_name = "POLICY", env = "RIVULET_ENCRYPTION")]
    encryption: Option<args::Encryption>,
    /// No uTP: TCP connections only, both ways.
    #[arg(long)]
    no_utp: bool,
    /// Most bytes per second received by all torrents together (suffixes
    /// K and M accepted; 0: no limit) [default: 0].
    #[arg(long, value_name = "BYTES", env = "RIVULET_DOWNLOAD_LIMIT", value_parser = crate::create::parse_size)]
    download_limit: Option<u64>,
    /// Most torrents downloading at once; the others wait their turn,
    /// `queued` (0: no limit) [default: 5].
    #[arg(long, value_name = "N", env = "RIVULET_MAX_ACTIVE_DOWNLOADS")]
    max_active_downloads: Option<usize>,
    /// Most peer connections open at once, all torrents together
    /// [default: 500].
    #[arg(long, value_name = "N", env = "RIVULET_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// Seeding goal of every torrent without its own: stop once uploaded
    /// this many times its size (0: once complete) [default: none].
    #[arg(long, value_name = "R", env = "RIVULET_SEED_RATIO", allow_negative_numbers = true, value_parser = args::seed_ratio)]
    seed_ratio: Option<f64>,
    /// Seeding goal of every torrent without its own: stop after seeding
    /// this long, e.g. 90s, 30m, 2h [default: none].
    #[arg(long, value_name = "DURATION", env = "RIVULET_SEED_TIME", allow_hyphen_values = true, value_parser = args::seed_time)]
    seed_time: Option<std::time::Duration>,
    /// Most bytes per second sent by all torrents together [default: 0].
    #[arg(long, value_name = "BYTES", env = "RIVULET_UPLOAD_LIMIT", value_parser = crate::create::parse_size)]
    upload_limit: Option<u64>,
    #[command(flatten)]
    discovery: crate::magnet::Discovery,
}

/// Torrents downloading at once by default (as Transmission's queue).
const DEFAULT_MAX_ACTIVE_DOWNLOADS: usize = 5;

/// The config file: each key as its flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    download_dir: Option<PathBuf>,
    api: Option<SocketAddr>,
    #[serde(default)]
    api_hosts: Vec<String>,
    port: Option<u16>,
    bind: Option<IpAddr>,
    encryption: Option<String>,
    #[serde(default)]
    no_utp: bool,
    #[serde(default)]
    no_dht: bool,
    #[serde(default)]
    dht_bootstrap: Vec<String>,
    #[serde(default)]
    no_pex: bool,
    #[serde(default)]
    no_lsd: bool,
    download_limit: Option<u64>,
    upload_limit: Option<u64>,
    max_active_downloads: Option<usize>,
    max_connections: Option<usize>,
    seed_ratio: Option<f64>,
    /// Seconds.
    seed_time: Option<u64>,
}

/// Everything the daemon runs with, settled.
struct Settings {
    state_dir: PathBuf,
    download_dir: PathBuf,
    api: SocketAddr,
    api_hosts: Vec<String>,
    port: u16,
    bind: Option<IpAddr>,
    encryption: args::Encryption,
    utp: bool,
    download_limit: u64,
    upload_limit: u64,
    max_active_downloads: usize,
    max_connections: usize,
    seed_ratio: Option<f64>,
    seed_time: Option<u64>,
    discovery: crate::magnet::Discovery,
}

fn read_config(path: &Path, required: bool) -> Result<FileConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("{} is not a valid config file", path.display())),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            Ok(FileConfig::default())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn settle(a: Args) -> Result<Settings> {
    let state_dir = match a.state_dir {
        Some(d) => d,
        None => crate::download::state_root()
            .context("no state folder: set XDG_STATE_HOME or HOME, or give --state-dir")?,
    };
    let file = match &a.config {
        Some(path) => read_config(path, true)?,
        None => read_config(&state_dir.join("daemon.toml"), false)?,
    };
    // What `PATCH /session` changed last time: below flags and the
    // environment, above the config file.
    let kept = SessionSettings::load(&state_dir)
        .with_context(|| {
            format!(
                "cannot read {}",
                state_dir.join(rivulet_daemon::store::SESSION).display()
            )
        })?
        .unwrap_or_default();
    let download_dir = match a.download_dir.or(file.download_dir) {
        Some(d) => d,
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join("Downloads"))
            .context("no download folder: set HOME, or give --download-dir")?,
    };
    let download_dir = std::path::absolute(&download_dir)
        .with_context(|| format!("cannot resolve {}", download_dir.display()))?;
    let encryption = match (a.encryption, file.encryption.as_deref()) {
        (Some(e), _) => e,
        (None, Some(text)) => {
            <args::Encryption as clap::ValueEnum>::from_str(text, true).map_err(|_| {
                anyhow::anyhow!(
                    "encryption = {text:?} in the config file: expected prefer, require or off"
                )
            })?
        }
        (None, None) => args::Encryption::Prefer,
    };
    let mut discovery = a.discovery;
    discovery.no_dht |= file.no_dht;
    discovery.no_pex |= file.no_pex;
    discovery.no_lsd |= file.no_lsd;
    if discovery.dht_bootstrap.is_empty() {
        discovery.dht_bootstrap = file.dht_bootstrap;
    }
    let mut api_hosts = a.api_hosts;
    api_hosts.extend(file.api_hosts);
    Ok(Settings {
        state_dir,
        download_dir,
        api: a
            .api
            .or(file.api)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT))),
        api_hosts,
        port: a.port.or(file.port).unwrap_or(6881),
        bind: a.bind.or(file.bind),
        encryption,
        utp: !(a.no_utp || file.no_utp),
        download_limit: a
            .download_limit
            .or(kept.download_limit)
            .or(file.download_limit)
            .unwrap_or(0),
        upload_limit: a
            .upload_limit
            .or(kept.upload_limit)
            .or(file.upload_limit)
            .unwrap_or(0),
        max_active_downloads: a
            .max_active_downloads
            .or(kept.max_active_downloads)
            .or(file.max_active_downloads)
            .unwrap_or(DEFAULT_MAX_ACTIVE_DOWNLOADS),
        max_connections: a
            .max_connections
            .map(|n| n as usize)
            .or(kept.max_connections)
            .or(file.max_connections)
            .unwrap_or(SessionConfig::default().max_connections)
            .max(1),
        seed_ratio: a.seed_ratio.or(kept.seed_ratio).or(file.seed_ratio),
        seed_time: a
            .seed_time
            .map(|d| d.as_secs())
            .or(kept.seed_time)
            .or(file.seed_time),
        discovery,
    })
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(args: Args) -> Result<Outcome> {
    let s = settle(args)?;
    std::fs::create_dir_all(&s.state_dir)
        .with_context(|| format!("cannot create {}", s.state_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(s))
}

async fn serve(s: Settings) -> Result<Outcome> {
    let token = token::load_or_create(&s.state_dir).context("cannot read or make the API token")?;
    let store = Store::open(&s.state_dir)
        .with_context(|| format!("cannot open the state folder {}", s.state_dir.display()))?;
    // The API's address is taken first: a second daemon on the same
    // address stops here, before touching the torrents.
    let listener = tokio::net::TcpListener::bind(s.api)
        .await
        .with_context(|| format!("cannot listen for the API on {}", s.api))?;
    let api_addr = listener.local_addr().unwrap_or(s.api);
    let session = Session::new(SessionConfig {
        listen_port: Some(s.port),
        bind: s.bind,
        dht: s.discovery.dht_config()?,
        lsd: s.discovery.lsd(),
        encryption: s.encryption.into(),
        utp: s.utp,
        download_limit: s.download_limit,
        upload_limit: s.upload_limit,
        max_connections: s.max_connections,
        ..SessionConfig::default()
    })?;
    if s.port != 0 && session.port() != s.port {
        eprintln!(
            "port {} is in use: listening on port {} instead",
            s.port,
            session.port()
        );
    }
    let (daemon, warnings) = Daemon::start(
        session,
        store,
        DaemonOptions {
            download_dir: s.download_dir.clone(),
            max_active_downloads: s.max_active_downloads,
            seed_ratio: s.seed_ratio,
            seed_time: s.seed_time,
        },
    );
    for w in &warnings {
        eprintln!("warning: a stored torrent cannot be read: {w}");
    }
    if !api_addr.ip().is_loopback() {
        eprintln!("warning: the API listens on {api_addr}, reachable from the network; only the token guards it");
    }
    println!(
        "rivulet daemon: API on http://{api_addr}/api/v1 (token in {}), peers on port {}, {}, state in {}, downloads to {}",
        s.state_dir.join(token::TOKEN_FILE).display(),
        daemon.session().port(),
        crate::progress::plural(daemon.ids().len() as u64, "torrent", "torrents"),
        s.state_dir.display(),
        s.download_dir.display(),
    );
    let router = api::router(
        daemon.clone(),
        ApiConfig {
            token,
            allowed_hosts: s.api_hosts,
        },
    );
    // At the signal, event streams end (they would keep the server's
    // graceful shutdown waiting), then the torrents stop.
    let stopping = daemon.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        crate::download::interrupted().await;
        stopping.begin_shutdown();
    });
    if let Err(e) = server.await {
        daemon.shutdown().await;
        bail!("the API server failed: {e}");
    }
    eprintln!("stopping: saving state, telling trackers");
    daemon.shutdown().await;
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: Args,
    }

    fn settle_from(argv: &[&str]) -> Result<Settings> {
        let w =
            Wrapper::try_parse_from(std::iter::once("rivulet-daemon").chain(argv.iter().copied()))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        settle(w.args)
    }

    #[test]
    fn flags_win_over_the_config_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_str().unwrap();
        let d = settle_from(&["--state-dir", state, "--download-dir", "/srv/d"]).unwrap();
        assert_eq!(d.api, SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)));
        assert_eq!(
            (d.port, d.encryption, d.utp),
            (6881, args::Encryption::Prefer, true)
        );
        std::fs::write(
            dir.path().join("daemon.toml"),
            "download_dir = \"/srv/file\"\nport = 7000\napi = \"127.0.0.1:7001\"\nencryption = \"require\"\nno_dht = true\nno_utp = true\napi_hosts = [\"box.lan\"]\n",
        )
        .unwrap();
        let s = settle_from(&["--state-dir", state, "--port", "7100"]).unwrap();
        assert_eq!(s.port, 7100);
        assert_eq!(s.download_dir, PathBuf::from("/srv/file"));
        assert_eq!(s.api, SocketAddr::from(([127, 0, 0, 1], 7001)));
        assert_eq!(s.encryption, args::Encryption::Require);
        assert!(s.discovery.no_dht && !s.utp);
        assert_eq!(s.api_hosts, ["box.lan"]);
        let s = settle_from(&["--state-dir", state, "--encryption", "off"]).unwrap();
        assert_eq!(s.encryption, args::Encryption::Off);
        // What the API changed last time (session.json) comes before the
        // file, after the flags.
        std::fs::write(
            dir.path().join("daemon.toml"),
            "download_limit = 100\nupload_limit = 200\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("session.json"),
            r#"{"download_limit": 300, "max_active_downloads": 2}"#,
        )
        .unwrap();
        let s = settle_from(&["--state-dir", state]).unwrap();
        assert_eq!(
            (s.download_limit, s.upload_limit, s.max_active_downloads),
            (300, 200, 2)
        );
        let s = settle_from(&["--state-dir", state, "--download-limit", "1M"]).unwrap();
        assert_eq!(s.download_limit, 1 << 20);
        std::fs::write(dir.path().join("session.json"), "{oops").unwrap();
        let e = settle_from(&["--state-dir", state]).err().unwrap();
        assert!(format!("{e:#}").contains("session.json"), "{e:#}");
        std::fs::remove_file(dir.path().join("session.json")).unwrap();
        // A mistake in the file is an error naming it, not a silent default.
        std::fs::write(dir.path().join("daemon.toml"), "prot = 7000\n").unwrap();
        let e = settle_from(&["--state-dir", state]).err().unwrap();
        assert!(
            format!("{e:#}").contains("daemon.toml is not a valid config file"),
            "{e:#}"
        );
        // A config file named but missing is an error too.
        let missing = dir.path().join("nope.toml");
        assert!(
            settle_from(&["--state-dir", state, "--config", missing.to_str().unwrap()]).is_err()
        );
    }
}

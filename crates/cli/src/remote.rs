//! The commands that drive a running daemon over its API: `add`, `list`,
//! `show`, `pause`, `resume`, `remove`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::HumanBytes;
use reqwest::{Method, StatusCode};
use rivulet_daemon::view::{AddReply, ErrorView, TorrentDetail, TorrentView};
use rivulet_daemon::DEFAULT_API_PORT;

use crate::Outcome;
use rivulet_cli::render::printable;

/// How to reach the daemon (shared by every command here).
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// The daemon's API [default: http://127.0.0.1:6880].
    #[arg(long, value_name = "URL", env = "RIVULET_API_URL", global = true)]
    api: Option<String>,
    /// The daemon's state folder, where its API token is (unless
    /// RIVULET_TOKEN gives it) [default: as the daemon's].
    #[arg(long, value_name = "DIR", env = "RIVULET_STATE_DIR", global = true)]
    state_dir: Option<PathBuf>,
    /// Print what the daemon answered, as JSON, for scripts.
    #[arg(long, global = true)]
    json: bool,
}

/// Arguments of `rivulet add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// .torrent files or magnet links.
    #[arg(value_name = "TORRENT|MAGNET", required = true)]
    torrents: Vec<String>,
    /// Download into this folder instead of the daemon's.
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Add paused.
    #[arg(long)]
    paused: bool,
    // Help text as an attribute: rustdoc would read "[IPv6]" as a link.
    #[arg(
        long = "peer",
        value_name = "IP:PORT",
        value_parser = crate::args::peer,
        help = "A peer to connect to besides those found (IP:PORT, [IPv6]:PORT or HOST:PORT); may be repeated"
    )]
    peers: Vec<crate::args::Peer>,
    /// Download only these files, by index (as `rivulet files` numbers
    /// them, from 0), e.g. `--files 0,2,5`; the others are skipped.
    #[arg(long, value_name = "INDICES", value_delimiter = ',')]
    files: Option<Vec<usize>>,
    #[command(flatten)]
    conn: Conn,
}

/// Arguments of `rivulet files`.
#[derive(Debug, clap::Args)]
pub struct FilesArgs {
    /// The torrent's id (its info-hash), or the start of it.
    id: String,
    /// Download these files (by index, e.g. 1,3).
    #[arg(long, value_name = "INDICES", value_delimiter = ',')]
    want: Vec<usize>,
    /// Skip these files: not downloaded (what they share of a piece with
    /// a wanted file is kept aside in a part file, not in the file).
    #[arg(long, value_name = "INDICES", value_delimiter = ',')]
    skip: Vec<usize>,
    /// Fetch these files first.
    #[arg(long, value_name = "INDICES", value_delimiter = ',')]
    high: Vec<usize>,
    /// Fetch these files at normal priority.
    #[arg(long, value_name = "INDICES", value_delimiter = ',')]
    normal: Vec<usize>,
    /// Fetch these files last.
    #[arg(long, value_name = "INDICES", value_delimiter = ',')]
    low: Vec<usize>,
    #[command(flatten)]
    conn: Conn,
}

/// Arguments of `rivulet move`.
#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// The torrent's id (its info-hash), or the start of it.
    id: String,
    /// The folder to move the data into (the torrent's file or folder goes
    /// in it).
    dir: PathBuf,
    /// Return at once rather than wait until the move is done.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    conn: Conn,
}

/// Arguments of `rivulet list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    conn: Conn,
}

/// Arguments of `rivulet show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The torrent's id (its info-hash), or the start of it.
    id: String,
    #[command(flatten)]
    conn: Conn,
}

/// Arguments of `rivulet pause` and `rivulet resume`.
#[derive(Debug, clap::Args)]
pub struct IdsArgs {
    /// Torrent ids (info-hashes), or the start of them.
    #[arg(required = true)]
    ids: Vec<String>,
    #[command(flatten)]
    conn: Conn,
}

/// Arguments of `rivulet remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// Torrent ids (info-hashes), or the start of them.
    #[arg(required = true)]
    ids: Vec<String>,
    /// Delete the torrents' downloaded files too.
    #[arg(long)]
    delete_data: bool,
    #[command(flatten)]
    conn: Conn,
}

/// A connection to the daemon's API.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(conn: &Conn) -> Result<Client> {
        let base = conn
            .api
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{DEFAULT_API_PORT}"));
        let base = base.trim_end_matches('/').to_owned();
        let token = match std::env::var("RIVULET_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                let dir = match &conn.state_dir {
                    Some(d) => d.clone(),
                    None => crate::download::state_root()
                        .context("no state folder: set RIVULET_TOKEN, or give --state-dir")?,
                };
                let path = dir.join(rivulet_daemon::token::TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "cannot read the API token {} (is the daemon started? set RIVULET_TOKEN or --state-dir otherwise)",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_owned()
            }
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .context("cannot make an HTTP client")?;
        Ok(Client { http, base, token })
    }

    /// Sends a request; returns the status and body of a 2xx answer, and
    /// the daemon's error as an error otherwise.
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<(StatusCode, String)> {
        let r = req.bearer_auth(&self.token).send().await.with_context(|| {
            format!(
                "cannot reach the daemon at {} (is `rivulet daemon` running?)",
                self.base
            )
        })?;
        let status = r.status();
        let body = r.text().await.context("the daemon's answer broke off")?;
        if status.is_success() {
            return Ok((status, body));
        }
        let text = serde_json::from_str::<ErrorView>(&body).map_or(body, |e| e.error);
        bail!("the daemon answered {status}: {}", printable(&text))
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.base))
    }

    async fn list(&self) -> Result<(String, Vec<TorrentView>)> {
        let (_, body) = self.call(self.request(Method::GET, "/torrents")).await?;
        let list = serde_json::from_str(&body)
            .context("the daemon's list is not what this rivulet reads")?;
        Ok((body, list))
    }

    /// The full id of the one torrent whose id starts with `prefix`.
    async fn resolve(&self, prefix: &str) -> Result<String> {
        let p = prefix.trim().to_ascii_lowercase();
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{prefix:?} is not a torrent id (hex digits of its info-hash; `rivulet list` shows them)");
        }
        let (_, list) = self.list().await?;
        let found: Vec<_> = list.iter().filter(|t| t.id.starts_with(&p)).collect();
        match found.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => bail!("no torrent's id starts with {p}"),
            many => bail!(
                "{} torrents' ids start with {p}: {}; give more digits",
                many.len(),
                many.iter()
                    .map(|t| &t.id[..12.min(t.id.len())])
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `rivulet add`.
pub fn add(a: AddArgs) -> Result<Outcome> {
    let client = Client::new(&a.conn)?;
    let dir = match &a.output {
        Some(d) => Some(
            std::path::absolute(d).with_context(|| format!("cannot resolve {}", d.display()))?,
        ),
        None => None,
    };
    let peers: Vec<String> = a
        .peers
        .iter()
        .flat_map(|p| p.addrs.iter().map(ToString::to_string))
        .collect();
    runtime()?.block_on(async {
        for t in &a.torrents {
            let req = if t
                .get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
            {
                let body = serde_json::json!({
                    "magnet": t, "paused": a.paused, "download_dir": dir, "peers": peers, "files": a.files
                });
                client.request(Method::POST, "/torrents").json(&body)
            } else {
                let bytes = std::fs::read(t).with_context(|| format!("cannot read {t}"))?;
                let mut query = vec![("paused", a.paused.to_string()), ("peers", peers.join(","))];
                if let Some(d) = &dir {
                    query.push(("download_dir", d.display().to_string()));
                }
                if let Some(files) = &a.files {
                    let list: Vec<String> = files.iter().map(ToString::to_string).collect();
                    query.push(("files", list.join(",")));
                }
                client
                    .request(Method::POST, "/torrents")
                    .query(&query)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-bittorrent")
                    .body(bytes)
            };
            let (_, body) = client
                .call(req)
                .await
                .with_context(|| format!("cannot add {t}"))?;
            if a.conn.json {
                println!("{body}");
                continue;
            }
            let reply: AddReply = serde_json::from_str(&body)
                .context("the daemon's answer is not what this rivulet reads")?;
            let what = if reply.created {
                "added"
            } else {
                "already there"
            };
            println!(
                "{what}: {} {}",
                short(&reply.torrent.id),
                printable(&reply.torrent.name)
            );
        }
        Ok(Outcome::Success)
    })
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn rate(bps: u64) -> String {
    if bps == 0 {
        "-".into()
    } else {
        format!("{}/s", HumanBytes(bps))
    }
}

/// `rivulet list`.
pub fn list(a: ListArgs) -> Result<Outcome> {
    let client = Client::new(&a.conn)?;
    let (body, list) = runtime()?.block_on(client.list())?;
    if a.conn.json {
        println!("{body}");
        return Ok(Outcome::Success);
    }
    if list.is_empty() {
        println!("no torrents (add some with `rivulet add FILE|MAGNET`)");
        return Ok(Outcome::Success);
    }
    println!(
        "{:<8}  {:<17}  {:>6}  {:>10}  {:>11}  {:>11}  {:>5}  NAME",
        "ID", "STATE", "DONE", "SIZE", "DOWN", "UP", "PEERS"
    );
    for t in &list {
        println!(
            "{:<8}  {:<17}  {:>5.1}%  {:>10}  {:>11}  {:>11}  {:>5}  {}",
            short(&t.id),
            t.state,
            t.progress * 100.0,
            HumanBytes(t.size).to_string(),
            rate(t.down_rate),
            rate(t.up_rate),
            t.peers,
            printable(&t.name)
        );
    }
    Ok(Outcome::Success)
}

/// `rivulet show`.
pub fn show(a: ShowArgs) -> Result<Outcome> {
    let client = Client::new(&a.conn)?;
    runtime()?.block_on(async {
        let id = client.resolve(&a.id).await?;
        let (_, body) = client
            .call(client.request(Method::GET, &format!("/torrents/{id}")))
            .await?;
        if a.conn.json {
            println!("{body}");
            return Ok(Outcome::Success);
        }
        let d: TorrentDetail = serde_json::from_str(&body)
            .context("the daemon's answer is not what this rivulet reads")?;
        let t = &d.torrent;
        println!("name:      {}", printable(&t.name));
        println!("id:        {}", t.id);
        println!("state:     {}", t.state);
        if let Some(e) = &t.error {
            println!("error:     {}", printable(e));
        }
        println!(
            "progress:  {:.1}% of {} ({}/{} pieces)",
            t.progress * 100.0,
            HumanBytes(t.size),
            d.pieces_have,
            d.pieces
        );
        println!("folder:    {}", printable(&t.download_dir));
        println!(
            "transfer:  {} down, {} up (ratio {:.2}); now {} down, {} up",
            HumanBytes(t.downloaded),
            HumanBytes(t.uploaded),
            t.ratio,
            rate(t.down_rate),
            rate(t.up_rate)
        );
        println!(
            "peers:     {} connected ({} seeds, {} incoming), {} known, {} banned",
            t.peers, t.seeds, d.peers_incoming, d.peers_known, d.peers_banned
        );
        for tr in &d.trackers {
            let status = match (&tr.peers, &tr.error) {
                (Some(n), _) => format!("working, {n} peers, tier {}", tr.tier),
                (_, Some(e)) => format!("failed, tier {}: {}", tr.tier, printable(e)),
                _ => tr.status.clone(),
            };
            println!("tracker:   {} ({status})", printable(&tr.url));
        }
        for p in &d.peer_list {
            let mut flags = Vec::new();
            if p.seed {
                flags.push("seed");
            }
            if p.incoming {
                flags.push("incoming");
            }
            if p.mse {
                flags.push("mse");
            }
            if p.utp {
                flags.push("utp");
            }
            println!(
                "peer:      {} {} ({}) has {:.0}%; {} down, {} up; now {} down, {} up",
                p.address,
                printable(p.client.as_deref().unwrap_or("unknown client")),
                flags.join(", "),
                p.progress * 100.0,
                HumanBytes(p.downloaded),
                HumanBytes(p.uploaded),
                rate(p.down_rate),
                rate(p.up_rate)
            );
        }
        println!("files:");
        print_files(&d.files);
        Ok(Outcome::Success)
    })
}

/// One line per file: index, size, progress, priority, path.
fn print_files(files: &[rivulet_daemon::view::FileView]) {
    for f in files {
        let priority = match f.priority {
            0 => "skip",
            1..=3 => "low",
            4 => "normal",
            _ => "high",
        };
        println!(
            "  {:>4}  {:>10}  {:>5.1}%  {:<6}  {}",
            f.index,
            HumanBytes(f.size).to_string(),
            f.progress * 100.0,
            priority,
            printable(&f.path)
        );
    }
}

/// `rivulet move`.
pub fn move_data(a: MoveArgs) -> Result<Outcome> {
    let client = Client::new(&a.conn)?;
    let dir = std::path::absolute(&a.dir)
        .with_context(|| format!("cannot resolve {}", a.dir.display()))?;
    runtime()?.block_on(async {
        let id = client.resolve(&a.id).await?;
        let (_, mut body) = client
            .call(
                client
                    .request(Method::PATCH, &format!("/torrents/{id}"))
                    .json(&serde_json::json!({ "download_dir": dir })),
            )
            .await?;
        let mut t: TorrentView = serde_json::from_str(&body)
            .context("the daemon's answer is not what this rivulet reads")?;
        // The copy and its check take a while: wait for the state to leave
        // `moving` (the daemon is asked every half second).
        while !a.no_wait && t.state == "moving" {
            tokio::time::sleep(Duration::from_millis(500)).await;
            body = client
                .call(client.request(Method::GET, &format!("/torrents/{id}")))
                .await?
                .1;
            t = serde_json::from_str(&body)
                .context("the daemon's answer is not what this rivulet reads")?;
        }
        if a.conn.json {
            println!("{body}");
        } else if let (false, Some(e)) = (a.no_wait, &t.error) {
            bail!("{}", printable(e));
        } else {
            println!(
                "{}: {} {} in {}",
                t.state,
                short(&t.id),
                printable(&t.name),
                printable(&t.download_dir)
            );
        }
        Ok(Outcome::Success)
    })
}

/// `rivulet files`.
pub fn files(a: FilesArgs) -> Result<Outcome> {
    let client = Client::new(&a.conn)?;
    // Applied in this order: a file both wanted and given a priority
    // gets it; a file skipped is skipped.
    let mut changes = Vec::new();
    for (list, key, value) in [
        (&a.want, "wanted", serde_json::json!(true)),
        (&a.normal, "priority", serde_json::json!(4)),
        (&a.low, "priority", serde_json::json!(1)),
        (&a.high, "priority", serde_json::json!(7)),
        (&a.skip, "wanted", serde_json::json!(false)),
    ] {
        for i in list {
            let mut c = serde_json::Map::new();
            c.insert("index".into(), serde_json::json!(i));
            c.insert(key.into(), value.clone());
            changes.push(serde_json::Value::Object(c));
        }
    }
    runtime()?.block_on(async {
        let id = client.resolve(&a.id).await?;
        let req = if changes.is_empty() {
            client.request(Method::GET, &format!("/torrents/{id}"))
        } else {
            client
                .request(Method::PATCH, &format!("/torrents/{id}"))
                .json(&serde_json::json!({ "files": changes }))
        };
        let (_, body) = client.call(req).await?;
        if a.conn.json {
            println!("{body}");
            return Ok(Outcome::Success);
        }
        let d: TorrentDetail = serde_json::from_str(&body)
            .context("the daemon's answer is not what this rivulet reads")?;
        println!(
            "{} {}: {} of {} wanted",
            short(&d.torrent.id),
            printable(&d.torrent.name),
            HumanBytes(d.torrent.size_wanted),
            HumanBytes(d.torrent.size)
        );
        print_files(&d.files);
        Ok(Outcome::Success)
    })
}

/// `rivulet pause`, `resume` and `recheck`: `verb` is the API's.
pub fn act(a: IdsArgs, verb: &str) -> Result<Outcome> {
    let client = Client::new(&a.conn)?;
    runtime()?.block_on(async {
        for given in &a.ids {
            let id = client.resolve(given).await?;
            let (_, body) = client
                .call(client.request(Method::POST, &format!("/torrents/{id}/{verb}")))
                .await?;
            if a.conn.json {
                println!("{body}");
                continue;
            }
            let t: TorrentView = serde_json::from_str(&body)
                .context("the daemon's answer is not what this rivulet reads")?;
            println!("{}: {} {}", t.state, short(&t.id), printable(&t.name));
        }
        Ok(Outcome::Success)
    })
}

/// `rivulet remove`.
pub fn remove(a: RemoveArgs) -> Result<Outcome> {
    let client = Client::new(&a.conn)?;
    runtime()?.block_on(async {
        for given in &a.ids {
            let id = client.resolve(given).await?;
            let (_, body) = client
                .call(
                    client
                        .request(Method::DELETE, &format!("/torrents/{id}"))
                        .query(&[("delete_data", a.delete_data.to_string())]),
                )
                .await?;
            if a.conn.json {
                println!("{body}");
            } else if a.delete_data {
                println!("removed, data deleted: {}", short(&id));
            } else {
                println!("removed (data kept): {}", short(&id));
            }
        }
        Ok(Outcome::Success)
    })
}

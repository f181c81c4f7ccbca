//! The HTTP API, under `/api/v1`, JSON in and out.
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /torrents` | every torrent ([`TorrentView`]) |
//! | `POST /torrents` | add: a .torrent (`Content-Type: application/x-bittorrent`) or `{"magnet": ..., "download_dir"?, "paused"?}`; 201 when new, 200 when it was there ([`AddReply`]) |
//! | `GET /torrents/{id}` | one torrent with files and trackers ([`TorrentDetail`]) |
//! | `POST /torrents/{id}/pause`, `/resume` | as said; the torrent after |
//! | `POST /torrents/{id}/recheck` | check the data again from scratch |
//! | `POST /torrents/{id}/reannounce` | announce to its trackers now |
//! | `GET /events` | server-sent events of what changed ([`EVENT_TICK`]) |
//! | `DELETE /torrents/{id}?delete_data=true` | remove it (and its data) |
//! | `PATCH /torrents/{id}` | `{"paused"?, "download_limit"?, "upload_limit"?}` (bytes per second, 0: none); the torrent after |
//! | `GET /session` | totals, rates, limits, port, DHT nodes ([`SessionView`]) |
//! | `PATCH /session` | `{"download_limit"?, "upload_limit"?, "max_active_downloads"?}` for all torrents together |
//!
//! `id` is the v1 info-hash in lowercase hex (any case accepted).
//!
//! Every call needs `Authorization: Bearer TOKEN` (401 without it), and a
//! `Host` header naming a loopback name, an IP literal or a configured
//! name (403 otherwise): a web page's script, through DNS rebinding, can
//! make a browser send requests to 127.0.0.1 under a host name its
//! attacker controls, but cannot make it send the token or that `Host`.
//! No CORS headers are sent, so browsers keep other origins from reading
//! answers. Errors are JSON (`{"error": "..."}`) with the fitting status;
//! bodies are bounded ([`MAX_BODY`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rivulet_core::InfoHash;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::service::{AddRequest, Daemon, DaemonError, TorrentChange};
use crate::store::SessionSettings;
use crate::view::{AddReply, ErrorView, TorrentDetail, TorrentView};

#[cfg(doc)]
use crate::view::SessionView;

/// The largest request body taken (a .torrent of a huge torrent is a few
/// MiB).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// What the API checks of every request.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The token every call must bear.
    pub token: String,
    /// Host names accepted in `Host` besides loopback names and IP
    /// literals (for a daemon reached under a name on a network).
    pub allowed_hosts: Vec<String>,
}

#[derive(Clone)]
struct AppState {
    daemon: Daemon,
    config: Arc<ApiConfig>,
}

/// The API's routes on `daemon`.
pub fn router(daemon: Daemon, config: ApiConfig) -> Router {
    let state = AppState {
        daemon,
        config: Arc::new(config),
    };
    let api = Router::new()
        .route("/torrents", get(list).post(add))
        .route("/torrents/{id}", get(detail).delete(remove).patch(change))
        .route("/torrents/{id}/pause", post(pause))
        .route("/torrents/{id}/resume", post(resume))
        .route("/torrents/{id}/recheck", post(recheck))
        .route("/torrents/{id}/reannounce", post(reannounce))
        .route("/events", get(events))
        .route("/session", get(session).patch(change_session));
    Router::new()
        .nest("/api/v1", api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such API endpoint".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn error(status: StatusCode, text: String) -> Response {
    (status, Json(ErrorView { error: text })).into_response()
}

impl IntoResponse for DaemonError {
    fn into_response(self) -> Response {
        let status = match &self {
            DaemonError::NotFound(_) => StatusCode::NOT_FOUND,
            DaemonError::BadInput(_) => StatusCode::BAD_REQUEST,
            DaemonError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            DaemonError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        };
        error(status, self.to_string())
    }
}

/// Whether `host` (a `Host` header's value) names this machine's loopback,
/// an IP literal, or one of `allowed`.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim();
    // "[v6]:port", "[v6]", "name:port", "v4:port", "name".
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) if tail.is_empty() || tail.starts_with(':') => v6,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            Some(_) => return false,
            None => host,
        }
    };
    if name.is_empty() {
        return false;
    }
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Host and token checks, before any handler.
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host, &state.config.allowed_hosts) {
        return error(
            StatusCode::FORBIDDEN,
            format!("Host {host:?} is not this daemon's (use 127.0.0.1, localhost, or a name given with --api-host)"),
        );
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool = given.as_bytes().ct_eq(state.config.token.as_bytes()).into();
    if !ok {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token (Authorization: Bearer TOKEN; the token is in the state folder's api-token file)".into(),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    next.run(req).await
}

fn parse_id(text: &str) -> Result<InfoHash, DaemonError> {
    crate::parse_id(text).ok_or_else(|| {
        DaemonError::BadInput(format!(
            "{text:?} is not a torrent id (40 hex digits, the v1 info-hash)"
        ))
    })
}

async fn list(State(s): State<AppState>) -> Response {
    Json(s.daemon.list()).into_response()
}

async fn detail(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TorrentDetail>, DaemonError> {
    Ok(Json(s.daemon.detail(&parse_id(&id)?)?))
}

/// The JSON form of an add.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddJson {
    magnet: String,
    download_dir: Option<std::path::PathBuf>,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    peers: Vec<String>,
    /// Indices of the files to download (the others are skipped); all
    /// when absent.
    files: Option<Vec<usize>>,
}

/// Query parameters of a .torrent add.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddQuery {
    download_dir: Option<std::path::PathBuf>,
    #[serde(default)]
    paused: bool,
    /// `IP:PORT,IP:PORT`.
    peers: Option<String>,
    /// `0,2,5`: indices of the files to download (all when absent).
    files: Option<String>,
}

/// File indices given as `0,2,5`.
fn parse_indices(given: &str) -> Result<Vec<usize>, DaemonError> {
    given
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<usize>()
                .map_err(|_| DaemonError::BadInput(format!("{p:?} is not a file index")))
        })
        .collect()
}

/// Peers given as `IP:PORT` (or `[IPv6]:PORT`).
fn parse_peers<'a>(
    given: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<SocketAddr>, DaemonError> {
    given
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<SocketAddr>()
                .ok()
                .filter(|a| a.port() != 0)
                .ok_or_else(|| {
                    DaemonError::BadInput(format!("{p:?} is not a peer (IP:PORT or [IPv6]:PORT)"))
                })
        })
        .collect()
}

async fn add(
    State(s): State<AppState>,
    query: Result<Query<AddQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let added = match kind.as_str() {
        "application/x-bittorrent" => {
            let Query(q) = match query {
                Ok(q) => q,
                Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
            };
            let peers = match parse_peers(q.peers.as_deref().unwrap_or("").split(',')) {
                Ok(p) => p,
                Err(e) => return e.into_response(),
            };
            let files = match q.files.as_deref().map(parse_indices).transpose() {
                Ok(f) => f,
                Err(e) => return e.into_response(),
            };
            s.daemon.add_torrent(
                body.to_vec(),
                AddRequest {
                    download_dir: q.download_dir,
                    paused: q.paused,
                    peers,
                    files,
                },
            )
        }
        "application/json" => {
            let parsed: Result<Json<AddJson>, JsonRejection> = Json::from_bytes(&body);
            let req = match parsed {
                Ok(Json(r)) => r,
                Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
            };
            let peers = match parse_peers(req.peers.iter().map(String::as_str)) {
                Ok(p) => p,
                Err(e) => return e.into_response(),
            };
            s.daemon.add_magnet(
                &req.magnet,
                AddRequest {
                    download_dir: req.download_dir,
                    paused: req.paused,
                    peers,
                    files: req.files,
                },
            )
        }
        _ => return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send a .torrent as application/x-bittorrent, or {\"magnet\": ...} as application/json"
                .into(),
        ),
    };
    match added {
        Ok((torrent, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(AddReply { created, torrent })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn pause(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TorrentView>, DaemonError> {
    Ok(Json(s.daemon.pause(&parse_id(&id)?).await?))
}

async fn reannounce(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TorrentView>, DaemonError> {
    Ok(Json(s.daemon.reannounce(&parse_id(&id)?)?))
}

async fn recheck(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TorrentView>, DaemonError> {
    Ok(Json(s.daemon.recheck(&parse_id(&id)?).await?))
}

/// How often the event stream looks for changes.
pub const EVENT_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Server-sent events: at once every torrent (`event: torrent`, its
/// [`TorrentView`] as data), then each torrent whose view changed, and
/// `event: removed` (`{"id": ...}`) for each one gone, checked every
/// [`EVENT_TICK`]; comments keep the connection alive. The stream ends when
/// the daemon shuts down.
async fn events(State(s): State<AppState>) -> Response {
    use futures_util::StreamExt;
    let stopping = s.daemon.stopping();
    let start = (s.daemon, BTreeMap::<String, TorrentView>::new(), true);
    let stream = futures_util::stream::unfold(start, move |(daemon, mut seen, first)| {
        let stopping = stopping.clone();
        async move {
            if !first {
                tokio::select! {
                    () = tokio::time::sleep(EVENT_TICK) => {}
                    () = stopping.cancelled() => return None,
                }
            }
            let mut out = Vec::new();
            let now: BTreeMap<String, TorrentView> = daemon
                .list()
                .into_iter()
                .map(|t| (t.id.clone(), t))
                .collect();
            for (id, t) in &now {
                if seen.get(id) != Some(t) {
                    if let Ok(e) = Event::default().event("torrent").json_data(t) {
                        out.push(Ok::<Event, Infallible>(e));
                    }
                }
            }
            for id in seen.keys().filter(|id| !now.contains_key(*id)) {
                if let Ok(e) = Event::default()
                    .event("removed")
                    .json_data(serde_json::json!({ "id": id }))
                {
                    out.push(Ok(e));
                }
            }
            seen = now;
            Some((futures_util::stream::iter(out), (daemon, seen, false)))
        }
    })
    .flatten();
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn resume(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TorrentView>, DaemonError> {
    Ok(Json(s.daemon.resume(&parse_id(&id)?).await?))
}

/// Query parameters of a removal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    #[serde(default)]
    delete_data: bool,
}

async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<RemoveQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match s.daemon.remove(&id, q.delete_data).await {
        Ok(()) => {
            Json(serde_json::json!({ "removed": id.to_hex(), "data_deleted": q.delete_data }))
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn change(State(s): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let parsed: Result<Json<TorrentChange>, JsonRejection> = Json::from_bytes(&body);
    let change = match parsed {
        Ok(Json(c)) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match s.daemon.change(&id, change).await {
        Ok(d) => Json(d).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn change_session(State(s): State<AppState>, body: Bytes) -> Response {
    let parsed: Result<Json<SessionSettings>, JsonRejection> = Json::from_bytes(&body);
    let change = match parsed {
        Ok(Json(c)) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if let Err(e) = s.daemon.change_session(change).await {
        return e.into_response();
    }
    Json(s.daemon.session_view().await).into_response()
}

async fn session(State(s): State<AppState>) -> Response {
    Json(s.daemon.session_view().await).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let none: &[String] = &[];
        for ok in [
            "127.0.0.1:6880",
            "127.0.0.1",
            "localhost:6880",
            "LOCALHOST",
            "[::1]:6880",
            "[::1]",
            "192.168.1.5:80",
        ] {
            assert!(host_allowed(ok, none), "{ok}");
        }
        for bad in [
            "",
            "evil.example:6880",
            "localhost.evil.example",
            "127.0.0.1.nip.io:6880",
            "[::1",
            "[::1]x",
            "a:b:c",
            ":6880",
        ] {
            assert!(!host_allowed(bad, none), "{bad}");
        }
        assert!(host_allowed("box.lan:6880", &["box.lan".into()]));
    }
}

//! The task that drives one torrent of a session: runs it while its handle
//! says so, stops it cleanly on a pause, a removal or the session's
//! shutdown, and takes it out of the session at the end.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::handle::{Control, Phase};
use super::{AddOptions, Inner, TorrentHandle};
use crate::download::Download;
use crate::torrent::{Outcome, Shared, TorrentError};

/// How often a torrent announces itself on the DHT (and looks for peers
/// there): BEP 5 peers expire after 30 minutes.
const DHT_REANNOUNCE: Duration = Duration::from_secs(15 * 60);
/// The first wait after a DHT lookup that found nobody (the node may still
/// be joining the DHT); it doubles up to [`DHT_REANNOUNCE`].
const DHT_RETRY: Duration = Duration::from_secs(5);

/// While a run lasts: announces the torrent on the session's DHT (looks up
/// its peers, for the connector, and tells the closest nodes we have it on
/// our listen port), at once and then every [`DHT_REANNOUNCE`]. Never for
/// a private torrent (BEP 27), nor without a DHT. Never ends by itself.
async fn dht_lookups(
    session: &Inner,
    shared: &Shared,
    peers: tokio::sync::mpsc::UnboundedSender<std::net::SocketAddr>,
) -> Outcome {
    let Some(dht) = session.dht.clone().filter(|_| !shared.info.private) else {
        return std::future::pending().await;
    };
    let port = session
        .listener
        .as_ref()
        .map(crate::listener::Listener::port);
    let mut retry = DHT_RETRY;
    loop {
        let mut found = dht.lookup(shared.info_hash, port);
        // Done once peers came, or our announce was taken: then the next
        // lookup is due in 15 minutes; sooner while the node finds nobody.
        let mut any = false;
        while let Some(f) = found.recv().await {
            match f {
                crate::dht::Found::Peer(p) => {
                    any = true;
                    let _ = peers.send(p);
                }
                crate::dht::Found::Done { announced } => any |= announced > 0,
            }
        }
        let wait = if any {
            retry = DHT_RETRY;
            DHT_REANNOUNCE
        } else {
            let w = retry;
            retry = (retry * 2).min(DHT_REANNOUNCE);
            w
        };
        tokio::time::sleep(wait).await;
    }
}

/// Runs `download` as `handle` asks until it is removed or the session
/// shuts down. Each run ends with all its tasks finished and its resume
/// data saved (see [`Download::run`]).
pub(super) async fn drive(
    session: Arc<Inner>,
    mut download: Download,
    handle: TorrentHandle,
    options: AddOptions,
) {
    let mut control = handle.control();
    let cancel = session.cancel.clone();
    loop {
        // Wait to be started (at once unless added paused or held).
        if *control.borrow() == Control::Pause {
            handle.settle();
        }
        let wanted = tokio::select! {
            c = control.wait_for(|c| *c != Control::Pause) => c.map_or(Control::Remove, |c| *c),
            () = cancel.cancelled() => Control::Remove,
        };
        if wanted == Control::Remove {
            break;
        }
        download.renew();
        let shared = Arc::clone(&download.shared);
        handle.set_shared(Some(&shared));
        // File priorities changed while it was stopped (after publishing
        // the run: a change from now on reaches the run itself).
        if let Err(e) =
            super::handle::apply_file_priorities(Arc::clone(&shared), handle.file_priorities())
                .await
        {
            shared.fail(TorrentError::write(e));
        }
        handle.set_phase(Phase::Running);
        if let Some(l) = &session.listener {
            l.add(&shared);
        }
        // Peers given when adding are tried again on every run.
        handle.add_peers(options.peers.iter().copied());
        let stop = {
            let mut control = control.clone();
            let cancel = cancel.clone();
            async move {
                tokio::select! {
                    _ = control.wait_for(|c| *c != Control::Run) => {}
                    () = cancel.cancelled() => {}
                }
            }
        };
        let mut outcome_rx = shared.outcome();
        let complete = async {
            if outcome_rx
                .wait_for(|o| *o == Outcome::Complete)
                .await
                .is_ok()
            {
                handle.set_complete();
            }
            // Only the run ends the select.
            std::future::pending::<Outcome>().await
        };
        let started = Instant::now();
        let dht = dht_lookups(&session, &shared, download.peer_sender());
        let outcome = tokio::select! {
            o = download.run(stop, options.seed) => o,
            o = complete => o,
            o = dht => o,
        };
        if let Some(l) = &session.listener {
            l.remove(&shared.info_hash);
        }
        tracing::debug!(parent: &shared.span, ?outcome, ran = ?started.elapsed(), "run ended");
        let failed = matches!(outcome, Outcome::Failed(_));
        if outcome == Outcome::Complete {
            handle.set_complete();
        }
        // The outcome first: a snapshot in between reads it, not a run.
        handle.set_outcome(outcome);
        handle.set_shared(None);
        let wanted = *control.borrow();
        if cancel.is_cancelled() || wanted == Control::Remove {
            break;
        }
        if wanted == Control::Pause {
            handle.set_phase(Phase::Paused);
            continue;
        }
        // Ended by itself: finished, or failed. It waits for a resume.
        handle.hold();
        handle.set_phase(if failed {
            Phase::Failed
        } else {
            Phase::Finished
        });
    }
    session.torrents().remove(&handle.key());
    // The data folder is unlocked when `download` goes.
    drop(download);
    handle.set_phase(Phase::Removed);
}

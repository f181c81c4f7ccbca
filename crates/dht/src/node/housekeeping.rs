//! What time brings: bucket refreshes, pings of questionable nodes,
//! re-bootstraps, and our external address from the votes of other nodes.

use super::*;

impl Node {
    pub(super) fn tick(&mut self, now: Instant) {
        self.tokens.rotate(now, &mut self.rng);
        self.store.expire(now);
        let ping_interval = self.config.ping_interval;
        self.recent_pings
            .retain(|_, t| now.saturating_duration_since(*t) < ping_interval);
        for v6 in [false, true] {
            if !self.family_enabled(v6) {
                continue;
            }
            // Bucket refreshes: a find_node of a random id in each stale
            // bucket's range.
            let interval = self.config.bucket_refresh;
            let targets = {
                let [v4t, v6t] = &mut self.tables;
                let t = if v6 { v6t } else { v4t };
                t.refresh_targets(now, interval, &mut self.rng)
            };
            for target in targets {
                let _ = self.start(now, LookupKind::FindNode, target, true, 0, false);
            }
            // Questionable nodes: ping a few per tick.
            for n in self.table_mut(v6).ping_candidates(now, 4) {
                let q = self.ping_query();
                self.enqueue(n.addr, Some(n.id), q, Purpose::Ping);
            }
        }
        // A table that is (nearly) empty goes back to the routers: after
        // 30 s, then after twice as long each time it stays small (up to
        // 32 min: an IPv6 table without IPv6 connectivity stays empty). A
        // node with no node at all keeps trying every 30 s: its packets may
        // just have been lost.
        let small = [false, true]
            .into_iter()
            .any(|v6| self.family_enabled(v6) && self.table(v6).len() < K);
        let empty = self.tables.iter().all(RoutingTable::is_empty);
        if !small || empty {
            self.bootstrap_backoff = 0;
        }
        let wait = Duration::from_secs(30) * (1u32 << self.bootstrap_backoff.min(6));
        let bootstrapping = self
            .searches
            .values()
            .any(|s| s.kind == LookupKind::Bootstrap);
        let due = self
            .last_bootstrap
            .is_none_or(|t| now.saturating_duration_since(t) >= wait);
        if small && !bootstrapping && due && !self.routers.is_empty() {
            self.last_bootstrap = Some(now);
            self.bootstrap_backoff = self.bootstrap_backoff.saturating_add(1);
            let target = self.id;
            let _ = self.start(now, LookupKind::Bootstrap, target, true, 0, false);
        }
    }

    /// When the transaction next needs attention.
    pub(super) fn tx_deadline(&self, tx: &Transaction) -> Instant {
        let slow = self.config.query_slow_after;
        let at = match tx.stage {
            0 => tx.sent + slow,
            1 => tx.sent + slow * 2,
            _ => tx.sent + self.config.query_timeout,
        };
        at.min(tx.sent + self.config.query_timeout)
    }

    /// Counts a responder's view of our address; a clear majority of distinct
    /// responders decides it.
    pub(super) fn vote_ip(&mut self, now: Instant, voter: IpAddr, ours: IpAddr) {
        if !self.ip_voters.insert(voter) {
            return;
        }
        *self.ip_votes.entry(ours).or_insert(0) += 1;
        let winner = self
            .ip_votes
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(ip, n)| (*ip, *n));
        let decided = winner.filter(|(_, n)| *n >= IP_VOTES_NEEDED);
        if decided.is_some() || self.ip_voters.len() >= IP_VOTERS {
            self.ip_voters.clear();
            self.ip_votes.clear();
        }
        let Some((ip, _)) = decided else {
            return;
        };
        if self.external_ip == Some(ip) {
            return;
        }
        self.external_ip = Some(ip);
        let id_changed = !self.id.is_valid_for(ip);
        if id_changed {
            let id = NodeId::bep42(ip, &mut self.rng);
            self.change_id(now, id);
        }
        self.push_event(Event::ExternalAddress { ip, id_changed });
    }

    /// Moves to a new id: the tables are rebuilt around it with the same
    /// nodes (they are still good contacts).
    pub(super) fn change_id(&mut self, now: Instant, id: NodeId) {
        self.id = id;
        let [v4t, v6t] = &mut self.tables;
        for t in [v4t, v6t] {
            let entries: Vec<_> = t.entries().cloned().collect();
            let mut fresh = t.clone_empty(id, now);
            for e in entries {
                fresh.insert(e.info, e.last_response, now);
            }
            *t = fresh;
        }
    }
}

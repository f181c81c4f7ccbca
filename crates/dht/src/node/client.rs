//! The client side: queries out (through the rate limit), answers in,
//! lookups moved forward, announces at their end.

use super::*;

impl Node {
    pub(super) fn ping_query(&self) -> Query {
        Query::Ping { id: self.id }
    }

    pub(super) fn want(&self) -> Option<Want> {
        // BEP 32: a dual-stack node asks for both families, which fills its
        // IPv6 table through IPv4 lookups and the other way round.
        (self.config.ipv4 && self.config.ipv6).then_some(Want { n4: true, n6: true })
    }

    pub(super) fn lookup_query(&self, kind: LookupKind, target: NodeId) -> Query {
        match kind {
            LookupKind::Bootstrap | LookupKind::FindNode => Query::FindNode {
                id: self.id,
                target,
                want: self.want(),
            },
            LookupKind::GetPeers | LookupKind::Announce => Query::GetPeers {
                id: self.id,
                info_hash: target,
                want: self.want(),
            },
        }
    }

    pub(super) fn enqueue(
        &mut self,
        addr: SocketAddr,
        expect: Option<NodeId>,
        query: Query,
        purpose: Purpose,
    ) -> bool {
        if self.queue.len() >= self.config.max_queued_queries {
            self.stats.queries_dropped += 1;
            return false;
        }
        self.queue.push_back(Pending {
            addr,
            expect,
            query,
            purpose,
        });
        true
    }

    /// Sends queued queries as far as the rate limit allows.
    pub(super) fn flush(&mut self, now: Instant) {
        while !self.queue.is_empty() && self.out_limit.try_take(now) {
            let Some(p) = self.queue.pop_front() else {
                break;
            };
            let mut tid: u32 = self.rng.gen();
            while self.transactions.contains_key(&tid) {
                tid = self.rng.gen();
            }
            let m = Message {
                transaction_id: tid.to_be_bytes().to_vec(),
                version: Some(VERSION.to_vec()),
                ip: None,
                read_only: self.config.read_only,
                body: Body::Query(p.query),
            };
            let packet = krpc::encode(&m);
            self.send(p.addr, packet.clone());
            self.stats.queries_sent += 1;
            self.transactions.insert(
                tid,
                Transaction {
                    addr: p.addr,
                    expect: p.expect,
                    purpose: p.purpose,
                    sent: now,
                    stage: 0,
                    packet,
                },
            );
        }
    }

    pub(super) fn handle_reply(&mut self, now: Instant, from: SocketAddr, m: Message) {
        let tid = <[u8; 4]>::try_from(m.transaction_id.as_slice())
            .ok()
            .map(u32::from_be_bytes);
        let known = tid.and_then(|t| self.transactions.get(&t).map(|tx| (t, tx.addr)));
        let Some((tid, addr)) = known else {
            self.stats.unexpected += 1;
            return;
        };
        if addr != from {
            self.stats.unexpected += 1;
            return;
        }
        let Some(tx) = self.transactions.remove(&tid) else {
            return;
        };
        let r = match m.body {
            Body::Response(r) => r,
            Body::Error(_) | Body::Query(_) => {
                // The node is alive but refused: the query failed, the node
                // did not.
                self.stats.errors += 1;
                self.finish_query(tx, None);
                return;
            }
        };
        self.stats.responses += 1;
        if let Some(expected) = tx.expect {
            if expected != r.id {
                // Not the node we knew at this address: the lookup does not
                // count it, and the table entry (if any) has failed.
                self.stats.id_mismatch += 1;
                self.failed(now, tx);
                return;
            }
        }
        let info = NodeInfo {
            id: r.id,
            addr: from,
        };
        if !m.read_only && self.acceptable(&info) {
            let v6 = from.is_ipv6();
            // Refused when the id is known elsewhere or a good node holds the
            // address; nothing else to do then.
            let _: Inserted = self.table_mut(v6).insert(info, Some(now), now);
        }
        if let Some(ip) = m.ip {
            self.vote_ip(now, from.ip(), ip.ip());
        }
        self.finish_query(tx, Some((info, r)));
    }

    /// A query ended with an answer (`Some`) or an error (`None`).
    pub(super) fn finish_query(&mut self, tx: Transaction, answer: Option<(NodeInfo, Response)>) {
        let search_id = match tx.purpose {
            Purpose::Ping => return,
            Purpose::Lookup { search } | Purpose::Announce { search } => search,
        };
        let Some(s) = self.searches.get_mut(&search_id) else {
            return;
        };
        if let Purpose::Announce { .. } = tx.purpose {
            if let Phase::Announcing { outstanding } = &mut s.phase {
                *outstanding = outstanding.saturating_sub(1);
            }
            if answer.is_some() {
                s.responses += 1;
                s.announced += 1;
            }
            return;
        }
        let Some((info, r)) = answer else {
            match tx.expect {
                Some(id) => {
                    let info = NodeInfo { id, addr: tx.addr };
                    for l in &mut s.lookups {
                        l.on_failed(&info);
                    }
                }
                None => {
                    for l in s
                        .lookups
                        .iter_mut()
                        .filter(|l| l.is_v6() == tx.addr.is_ipv6())
                    {
                        l.router_done();
                    }
                }
            }
            return;
        };
        s.responses += 1;
        for l in &mut s.lookups {
            if tx.expect.is_some() {
                l.on_response(&info, r.token.clone());
            } else if l.is_v6() == tx.addr.is_ipv6() {
                l.router_done();
            }
            let named = if l.is_v6() { &r.nodes6 } else { &r.nodes };
            for n in named {
                l.add(*n);
            }
        }
        if matches!(s.kind, LookupKind::GetPeers | LookupKind::Announce) && !r.values.is_empty() {
            let mut fresh = Vec::new();
            for p in r.values {
                let p = normalize(p);
                if p.port() == 0 || p.ip().is_unspecified() {
                    continue;
                }
                if s.peers_seen.len() < MAX_PEERS_PER_LOOKUP && s.peers_seen.insert(p) {
                    fresh.push(p);
                }
            }
            if !fresh.is_empty() {
                let ev = Event::Peers {
                    id: search_id,
                    info_hash: InfoHash(s.target.0),
                    peers: fresh,
                };
                self.push_event(ev);
            }
        }
    }

    /// A query timed out, or was answered by the wrong node.
    pub(super) fn failed(&mut self, now: Instant, tx: Transaction) {
        if let Some(id) = tx.expect {
            let info = NodeInfo { id, addr: tx.addr };
            self.table_mut(tx.addr.is_ipv6()).note_failure(&info, now);
        }
        if let Purpose::Lookup { search } | Purpose::Announce { search } = tx.purpose {
            if let Some(s) = self.searches.get_mut(&search) {
                s.timeouts += 1;
            }
        }
        self.finish_query(tx, None);
    }

    pub(super) fn push_event(&mut self, ev: Event) {
        if self.events.len() >= MAX_EVENT_QUEUE {
            self.stats.queue_overflow += 1;
            return;
        }
        self.events.push_back(ev);
    }

    /// Moves every lookup forward: new queries within alpha, announces once
    /// the search is over, the end event.
    pub(super) fn drive(&mut self, now: Instant) {
        let ids: Vec<LookupId> = self.searches.keys().copied().collect();
        for id in ids {
            let Some(mut s) = self.searches.remove(&id) else {
                continue;
            };
            let finished = self.drive_one(id, &mut s);
            if finished {
                self.finish(now, id, s);
            } else {
                self.searches.insert(id, s);
            }
        }
    }

    pub(super) fn drive_one(&mut self, id: LookupId, s: &mut Search) -> bool {
        match s.phase {
            Phase::Searching => {
                // Twice, so that a family lookup that waited for the other
                // one can end in the same pass.
                for i in (0..s.lookups.len()).chain(0..s.lookups.len()) {
                    let room = self
                        .config
                        .max_queued_queries
                        .saturating_sub(self.queue.len());
                    let others_running = s
                        .lookups
                        .iter()
                        .enumerate()
                        .any(|(j, l)| j != i && !l.is_done());
                    let Some(l) = s.lookups.get_mut(i) else {
                        continue;
                    };
                    let next = l.step(room, others_running);
                    for n in next {
                        let q = self.lookup_query(s.kind, s.target);
                        if self.enqueue(n.addr, Some(n.id), q, Purpose::Lookup { search: id }) {
                            s.queries += 1;
                        } else if let Some(l) = s.lookups.get_mut(i) {
                            l.on_not_sent(&n);
                        }
                    }
                }
                if !s.lookups.iter().all(Lookup::is_done) {
                    return false;
                }
                if s.kind != LookupKind::Announce {
                    return true;
                }
                // Announce to the K closest nodes per family that gave a token.
                let mut targets = Vec::new();
                for l in &s.lookups {
                    for (n, token) in l.closest_responded(K) {
                        if let Some(t) = token {
                            targets.push((n, t.to_vec()));
                        }
                    }
                }
                let mut outstanding = 0;
                for (n, token) in targets {
                    let q = Query::AnnouncePeer {
                        id: self.id,
                        info_hash: s.target,
                        port: s.announce_port,
                        implied_port: s.implied_port,
                        token,
                    };
                    if self.enqueue(n.addr, Some(n.id), q, Purpose::Announce { search: id }) {
                        outstanding += 1;
                        s.queries += 1;
                    }
                }
                s.phase = Phase::Announcing { outstanding };
                outstanding == 0
            }
            Phase::Announcing { outstanding } => outstanding == 0,
        }
    }

    pub(super) fn finish(&mut self, now: Instant, id: LookupId, s: Search) {
        if s.kind == LookupKind::Bootstrap {
            // The bootstrap filled the buckets near our id; look into the
            // others now.
            for v6 in [false, true] {
                if !self.family_enabled(v6) {
                    continue;
                }
                let targets = {
                    let [v4t, v6t] = &mut self.tables;
                    let t = if v6 { v6t } else { v4t };
                    t.sparse_targets(now, &mut self.rng)
                };
                for target in targets {
                    let _ = self.start(now, LookupKind::FindNode, target, true, 0, false);
                }
            }
        }
        if s.internal {
            return;
        }
        let closest = s
            .lookups
            .iter()
            .flat_map(|l| l.closest_responded(K).into_iter().map(|(n, _)| n))
            .collect();
        let done = LookupDone {
            id,
            kind: s.kind,
            target: s.target,
            elapsed: now.saturating_duration_since(s.started),
            queries: s.queries,
            responses: s.responses,
            timeouts: s.timeouts,
            closest,
            peers: s.peers_seen.len(),
            announced: s.announced,
        };
        self.push_event(Event::LookupDone(done));
    }
}

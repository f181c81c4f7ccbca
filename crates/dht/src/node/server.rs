//! The server side: answers to `ping`, `find_node`, `get_peers` and
//! `announce_peer`, and who of the queriers may enter the table.

use super::*;

impl Node {
    pub(super) fn handle_query(&mut self, now: Instant, from: SocketAddr, m: &Message, q: &Query) {
        if self.config.read_only {
            return;
        }
        if !self.in_limit.allow(now, from.ip()) {
            self.stats.queries_rate_limited += 1;
            return;
        }
        let sender = q.sender_id();
        if sender == self.id {
            return;
        }
        if !m.read_only {
            self.heard_query(
                now,
                NodeInfo {
                    id: sender,
                    addr: from,
                },
            );
        }
        let v6 = from.is_ipv6();
        let body = match q {
            Query::Ping { .. } => Body::Response(Response::id_only(self.id)),
            Query::FindNode { target, want, .. } => {
                let mut r = Response::id_only(self.id);
                self.fill_nodes(&mut r, target, *want, v6, now);
                Body::Response(r)
            }
            Query::GetPeers {
                info_hash, want, ..
            } => {
                self.tokens.rotate(now, &mut self.rng);
                let mut r = Response::id_only(self.id);
                r.token = Some(self.tokens.make(from.ip()));
                let max = if v6 {
                    self.config.max_values_v6
                } else {
                    self.config.max_values_v4
                };
                r.values = self.store.get(now, info_hash, v6, max, &mut self.rng);
                self.fill_nodes(&mut r, info_hash, *want, v6, now);
                Body::Response(r)
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
                ..
            } => {
                self.tokens.rotate(now, &mut self.rng);
                let port = if *implied_port { from.port() } else { *port };
                if !self.tokens.check(from.ip(), token) {
                    self.stats.bad_tokens += 1;
                    Body::Error(ErrorBody {
                        code: error_code::PROTOCOL,
                        message: b"bad token".to_vec(),
                    })
                } else if port == 0 {
                    Body::Error(ErrorBody {
                        code: error_code::PROTOCOL,
                        message: b"port 0".to_vec(),
                    })
                } else {
                    self.store
                        .insert(now, *info_hash, SocketAddr::new(from.ip(), port));
                    Body::Response(Response::id_only(self.id))
                }
            }
            Query::Unknown { .. } => Body::Error(ErrorBody {
                code: error_code::METHOD_UNKNOWN,
                message: b"method unknown".to_vec(),
            }),
        };
        self.stats.queries_answered += 1;
        self.reply(from, m.transaction_id.clone(), body);
    }

    pub(super) fn fill_nodes(
        &self,
        r: &mut Response,
        target: &NodeId,
        want: Option<Want>,
        v6: bool,
        now: Instant,
    ) {
        // BEP 32: without `want`, nodes of the querier's own family.
        let want = want.unwrap_or(Want { n4: !v6, n6: v6 });
        if want.n4 && self.config.ipv4 {
            r.nodes = self.table(false).closest(target, K, now);
        }
        if want.n6 && self.config.ipv6 {
            r.nodes6 = self.table(true).closest(target, K, now);
        }
    }

    pub(super) fn reply(&mut self, to: SocketAddr, transaction_id: Vec<u8>, body: Body) {
        let m = Message {
            transaction_id,
            version: Some(VERSION.to_vec()),
            ip: Some(to),
            read_only: self.config.read_only,
            body,
        };
        self.send(to, krpc::encode(&m));
    }

    pub(super) fn send(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if self.transmit.len() >= MAX_TRANSMIT_QUEUE {
            self.stats.queue_overflow += 1;
            return;
        }
        self.transmit.push_back((to, bytes));
    }

    /// A node queried us: note it if known, else ping it if the table has
    /// room for it (only nodes that answer us enter the table).
    pub(super) fn heard_query(&mut self, now: Instant, info: NodeInfo) {
        let v6 = info.addr.is_ipv6();
        if self.table_mut(v6).note_query(&info, now) {
            return;
        }
        if !self.acceptable(&info) || !self.table(v6).wants(&info.id, now) {
            return;
        }
        // Low priority: only when our queue is mostly empty.
        if self.recent_pings.contains_key(&info.addr)
            || self.recent_pings.len() >= MAX_RECENT_PINGS
            || self.queue.len() >= self.config.max_queued_queries / 2
        {
            return;
        }
        self.recent_pings.insert(info.addr, now);
        let q = self.ping_query();
        self.enqueue(info.addr, Some(info.id), q, Purpose::Ping);
    }

    /// Whether a node may enter the table at all.
    pub(super) fn acceptable(&mut self, info: &NodeInfo) -> bool {
        if info.id == self.id || self.routers.contains(&info.addr) || info.addr.port() == 0 {
            return false;
        }
        if self.config.enforce_node_id && !info.id.is_valid_for(info.addr.ip()) {
            self.stats.bep42_refused += 1;
            return false;
        }
        true
    }
}

//! Incoming STUN on the agent: checks answered (integrity, role conflict, peer-reflexive
//! discovery, triggered checks, nomination seen by the controlled side) and responses to
//! our checks and gathering requests.

use super::*;

impl Agent {
    pub(super) fn handle_stun(&mut self, now: u64, via: Via, raw: &[u8]) {
        let Ok(msg) = Message::decode(raw) else {
            self.stats.malformed += 1;
            return;
        };
        match msg.class {
            Class::Request => self.on_request(now, via, raw, &msg),
            Class::SuccessResponse | Class::ErrorResponse => self.on_response(now, via, raw, &msg),
            Class::Indication => {} // keepalives
        }
    }

    pub(super) fn on_request(&mut self, now: u64, via: Via, raw: &[u8], msg: &Message) {
        if !Message::check_fingerprint(raw) {
            self.stats.bad_fingerprint += 1;
            return;
        }
        let ours = msg
            .username()
            .and_then(|u| u.split_once(':'))
            .is_some_and(|(l, _)| l == self.ufrag);
        if !ours {
            self.stats.bad_username += 1;
            return;
        }
        let key = self.pwd.clone().into_bytes();
        if !msg.check_integrity(raw, &key) {
            self.stats.bad_integrity += 1;
            return;
        }
        let Some(req) = check::parse_request(msg) else {
            self.stats.malformed += 1;
            return self.reply(via, check::error(msg, stun::ErrorCode::BAD_REQUEST, &key));
        };
        // RFC 8445 §7.3.1.1 role conflict.
        match (self.controlling, req.controlling) {
            (true, Some(true)) if self.tie_breaker >= req.tie_breaker => {
                self.stats.role_conflicts_sent += 1;
                return self.reply(via, check::error(msg, check::ROLE_CONFLICT, &key));
            }
            (false, Some(false)) if self.tie_breaker < req.tie_breaker => {
                self.stats.role_conflicts_sent += 1;
                return self.reply(via, check::error(msg, check::ROLE_CONFLICT, &key));
            }
            (true, Some(true)) | (false, Some(false)) => self.switch_role(now),
            _ => {}
        }
        let mapped = match via {
            Via::Udp { from, .. } => from,
            Via::Tcp(c) => match self.conns.get(&c) {
                Some(conn) => conn.remote,
                None => return,
            },
        };
        self.stats.checks_answered += 1;
        self.reply(via, check::success(msg, mapped, &key));
        if self.state != State::Running {
            return;
        }
        let Some(p) = self.pair_for_request(via, mapped, req.priority) else {
            return;
        };
        if req.use_candidate && !self.controlling {
            // The controlling side sends data on the connection its nomination came on.
            // A peer-reflexive active remote stands for every connection from its
            // address, so the pair may hold another one (an earlier check's): bind it to
            // this one, or the two sides would select different connections.
            if let Via::Tcp(c) = via {
                self.pairs[p].conn = Some(c);
            }
            self.pairs[p].nominated = true;
            if self.pairs[p].state == PairState::Succeeded {
                return self.select(now, p);
            }
        }
        if !matches!(
            self.pairs[p].state,
            PairState::Succeeded | PairState::InProgress
        ) {
            self.pairs[p].state = PairState::Waiting;
            if !self.triggered.contains(&p) {
                self.triggered.push_back(p);
            }
            self.next_check_at = Some(self.next_check_at.map_or(now, |t| t.min(now)));
        }
    }

    /// The pair a check arrived on, creating a peer-reflexive remote candidate when the
    /// source is unknown (RFC 8445 §7.3.1.3-4, RFC 6544 §7.2).
    pub(super) fn pair_for_request(
        &mut self,
        via: Via,
        from: SocketAddr,
        priority: u32,
    ) -> Option<usize> {
        if let Via::Tcp(c) = via {
            if let Some(p) = self.pairs.iter().position(|p| p.conn == Some(c)) {
                return Some(p);
            }
        }
        let (li, rtransport) = match via {
            Via::Udp { local, .. } => {
                let li = self.locals.iter().position(|l| {
                    l.c.transport == Transport::Udp
                        && l.base == local
                        && matches!(l.c.typ, CandidateType::Host | CandidateType::Relay)
                })?;
                (li, Transport::Udp)
            }
            Via::Tcp(c) => {
                let conn_local = self.conns.get(&c)?.local;
                // The passive and the simultaneous-open candidate share the listener: a
                // connection from a peer's so candidate is for the so pair.
                let from_so = self
                    .remotes
                    .iter()
                    .any(|r| r.transport == Transport::TcpSo && r.addr == from);
                let local_of = |t: Transport| {
                    self.locals.iter().position(|l| {
                        l.base == conn_local
                            && l.c.transport == t
                            && matches!(l.c.typ, CandidateType::Host | CandidateType::Relay)
                    })
                };
                let li = from_so
                    .then(|| local_of(Transport::TcpSo))
                    .flatten()
                    .or_else(|| local_of(Transport::TcpPassive))
                    .or_else(|| local_of(Transport::TcpSo))?;
                let rt = if self.locals[li].c.transport == Transport::TcpSo {
                    Transport::TcpSo
                } else {
                    Transport::TcpActive
                };
                (li, rt)
            }
        };
        let matches_remote = |r: &Candidate| {
            r.transport == rtransport
                && if rtransport == Transport::TcpActive {
                    r.addr.ip() == from.ip()
                } else {
                    r.addr == from
                }
        };
        let ri = match self.remotes.iter().position(matches_remote) {
            Some(ri) => ri,
            None if self.remotes.len() < MAX_REMOTE_CANDIDATES => {
                let foundation = format!("P{:x}", self.rng.random::<u32>());
                self.remotes.push(Candidate {
                    foundation,
                    component: COMPONENT,
                    transport: rtransport,
                    priority,
                    addr: from,
                    typ: CandidateType::Prflx,
                });
                self.remotes.len() - 1
            }
            None => return None,
        };
        let p = match self
            .pairs
            .iter()
            .position(|p| p.local == li && p.remote == ri)
        {
            Some(p) => p,
            None if self.pairs.len() < MAX_PAIRS => {
                self.pairs.push(Pair {
                    local: li,
                    remote: ri,
                    state: PairState::Waiting,
                    conn: None,
                    nominated: false,
                    valid_local: None,
                    redials: 0,
                });
                self.pairs.len() - 1
            }
            None => return None,
        };
        if let Via::Tcp(c) = via {
            let own = self.pairs[p].conn.filter(|o| *o != c);
            let own_opening = own.is_some_and(|o| self.conns.get(&o).is_some_and(|o| !o.open));
            if own_opening {
                // Our connect for this pair (simultaneous open) is still opening, and the
                // peer's came in on our listener first: the kernel will refuse ours (the
                // 4-tuple is taken). Check on the connection that exists instead.
                if let Some(o) = own {
                    self.close(o);
                }
                self.pairs[p].conn = Some(c);
                self.pairs[p].state = PairState::Waiting;
            } else if !matches!(
                self.pairs[p].state,
                PairState::InProgress | PairState::Succeeded
            ) || self.pairs[p].conn.is_none()
            {
                self.pairs[p].conn = Some(c);
            }
        }
        Some(p)
    }

    pub(super) fn switch_role(&mut self, now: u64) {
        self.controlling = !self.controlling;
        self.stats.role_switches += 1;
        if self.controlling {
            if self.pairs.iter().any(|p| p.state == PairState::Succeeded) {
                self.nominate_at = Some(now + self.cfg.timing.nominated_check_delay);
            }
        } else {
            self.nominating = None;
            self.nominate_at = None;
        }
    }

    pub(super) fn on_response(&mut self, now: u64, via: Via, raw: &[u8], msg: &Message) {
        let Some(tx) = self.txs.get(&msg.txid).cloned() else {
            self.stats.unknown_transaction += 1;
            return;
        };
        match tx.kind {
            TxKind::Gather { base, tcp } => {
                self.txs.remove(&msg.txid);
                if let (Class::SuccessResponse, Some(mapped)) = (msg.class, msg.xor_mapped()) {
                    self.add_srflx(base, mapped, tcp);
                }
                if let (true, Dest::Tcp(c)) = (tcp, tx.dest) {
                    self.close(c);
                }
                self.gathered();
            }
            TxKind::Check {
                pair,
                use_candidate,
                controlling,
            } => {
                let key = self
                    .remote_creds
                    .as_ref()
                    .map(|c| c.1.clone().into_bytes())
                    .unwrap_or_default();
                if !Message::check_fingerprint(raw) {
                    self.stats.bad_fingerprint += 1;
                    return;
                }
                if !msg.check_integrity(raw, &key) {
                    self.stats.bad_integrity += 1;
                    return;
                }
                self.txs.remove(&msg.txid);
                // RFC 8445 §7.2.5.2.1: the response must come back on the reverse path.
                let symmetric = match (tx.dest, via) {
                    (Dest::Udp { local, remote }, Via::Udp { local: l, from }) => {
                        local == l && remote == from
                    }
                    (Dest::Tcp(a), Via::Tcp(b)) => a == b,
                    _ => false,
                };
                if msg.class == Class::ErrorResponse {
                    if msg.error_code().map(|e| e.code) == Some(check::ROLE_CONFLICT) {
                        if self.controlling == controlling {
                            self.switch_role(now);
                        }
                        self.pairs[pair].state = PairState::Waiting;
                        self.triggered.push_back(pair);
                        self.next_check_at = Some(self.next_check_at.map_or(now, |t| t.min(now)));
                    } else {
                        self.check_failed(now, pair);
                    }
                    return;
                }
                match msg.xor_mapped() {
                    Some(mapped) if symmetric => {
                        self.check_succeeded(now, pair, mapped, use_candidate)
                    }
                    _ => self.check_failed(now, pair),
                }
            }
        }
    }

    /// A mapped address learnt from the STUN server. Over TCP it is the listening port's
    /// mapping: a passive server-reflexive candidate, and, with `tcp_so`, a
    /// simultaneous-open one too (RFC 6544 §4.1: the S-O port's mapping; ours is the
    /// listening port), which the peer's S-O candidate connects to while ours connects
    /// to its.
    pub(super) fn add_srflx(&mut self, base: SocketAddr, mapped: SocketAddr, tcp: bool) {
        let transports: &[Transport] = match (tcp, self.cfg.tcp_so) {
            (false, _) => &[Transport::Udp],
            (true, false) => &[Transport::TcpPassive],
            (true, true) => &[Transport::TcpPassive, Transport::TcpSo],
        };
        if mapped == base {
            return;
        }
        for &transport in transports {
            if self
                .locals
                .iter()
                .any(|l| l.c.addr == mapped && l.c.transport == transport)
            {
                continue;
            }
            let n = self
                .locals
                .iter()
                .filter(|l| l.c.typ == CandidateType::Srflx)
                .count() as u16;
            self.add_local(CandidateType::Srflx, transport, mapped, base, 65535 - n);
            self.srflx_default = true;
        }
        self.refresh_priorities();
    }

    pub(super) fn gathered(&mut self) {
        self.gathering_pending = self.gathering_pending.saturating_sub(1);
        if self.gathering_pending == 0 {
            self.events.push_back(Event::GatheringDone);
        }
    }

    pub(super) fn check_succeeded(
        &mut self,
        now: u64,
        p: usize,
        mapped: SocketAddr,
        use_candidate: bool,
    ) {
        let li = self.pairs[p].local;
        let l = self.locals[li].clone();
        // The valid pair's local candidate: the one the peer saw (RFC 8445 §7.2.5.3.2).
        // For TCP the source port is ephemeral, so the address is matched on the IP.
        let same = |a: SocketAddr| {
            if l.c.transport.is_tcp() {
                a.ip() == mapped.ip()
            } else {
                a == mapped
            }
        };
        let valid = if same(if l.c.transport == Transport::TcpActive {
            l.base
        } else {
            l.c.addr
        }) {
            Some(li)
        } else if let Some(i) = self.locals.iter().position(|o| {
            o.c.transport == l.c.transport && o.c.typ != CandidateType::Host && same(o.c.addr)
        }) {
            Some(i)
        } else {
            let n = self
                .locals
                .iter()
                .filter(|o| o.c.typ == CandidateType::Prflx)
                .count() as u16;
            self.add_local(
                CandidateType::Prflx,
                l.c.transport,
                mapped,
                l.base,
                65535 - n,
            )
        };
        let pair = &mut self.pairs[p];
        pair.state = PairState::Succeeded;
        pair.valid_local = valid.or(Some(li));
        let f = {
            let (a, b) = self.foundation(p);
            (a.to_owned(), b.to_owned())
        };
        for q in 0..self.pairs.len() {
            if self.pairs[q].state == PairState::Frozen && {
                let (a, b) = self.foundation(q);
                a == f.0 && b == f.1
            } {
                self.pairs[q].state = PairState::Waiting;
            }
        }
        if (use_candidate && self.controlling) || (!self.controlling && self.pairs[p].nominated) {
            return self.select(now, p);
        }
        if self.controlling && self.nominating.is_none() {
            let at = if self.checks_done() {
                now
            } else if self.best_valid_is_relayed() {
                now + self.cfg.timing.relay_nomination_delay
            } else {
                now + self.cfg.timing.nominated_check_delay
            };
            self.nominate_at = Some(self.nominate_at.map_or(at, |t| t.min(at)));
        }
    }

    /// The pair nomination would pick has a relayed candidate at either end.
    fn best_valid_is_relayed(&self) -> bool {
        (0..self.pairs.len())
            .filter(|&p| self.pairs[p].state == PairState::Succeeded)
            .max_by_key(|&p| (self.pair_priority(p), std::cmp::Reverse(p)))
            .is_some_and(|p| {
                let pair = &self.pairs[p];
                self.locals[pair.local].c.typ == CandidateType::Relay
                    || self.remotes[pair.remote].typ == CandidateType::Relay
            })
    }

    pub(super) fn check_failed(&mut self, now: u64, p: usize) {
        self.pairs[p].state = PairState::Failed;
        if self.nominating == Some(p) {
            self.nominating = None;
        }
        if self.controlling
            && self.nominating.is_none()
            && self.pairs.iter().any(|q| q.state == PairState::Succeeded)
        {
            // Nothing left to wait for: nominate now.
            let at = if self.checks_done() {
                now
            } else {
                self.nominate_at.unwrap_or(now)
            };
            self.nominate_at = Some(at);
        }
        self.maybe_fail(now);
    }

    /// A dial to the peer's relayed candidate was refused: the relay may not have the
    /// peer's permission for us yet, so try again later ([`RELAY_REDIALS`]).
    fn redial_later(&mut self, now: u64, p: usize) -> bool {
        let remote = &self.remotes[self.pairs[p].remote];
        let pair = &mut self.pairs[p];
        if remote.typ != CandidateType::Relay
            || remote.transport != Transport::TcpPassive
            || pair.redials >= RELAY_REDIALS
        {
            return false;
        }
        let wait = (RELAY_REDIAL_MS << pair.redials).min(RELAY_REDIAL_MAX_MS);
        pair.redials += 1;
        self.redial_at.insert(p, now + wait);
        self.stats.relay_redials += 1;
        true
    }

    pub(super) fn tx_failed(&mut self, now: u64, txid: [u8; 12]) {
        let Some(tx) = self.txs.remove(&txid) else {
            return;
        };
        match tx.kind {
            TxKind::Gather { tcp, .. } => {
                if let (true, Dest::Tcp(c)) = (tcp, tx.dest) {
                    self.close(c);
                }
                self.gathered();
            }
            TxKind::Check { pair, .. } => {
                // The connection is already gone: the peer's side closed or refused it.
                let refused = matches!(tx.dest, Dest::Tcp(c) if !self.conns.contains_key(&c));
                if refused && self.redial_later(now, pair) {
                    self.pairs[pair].conn = None;
                    return;
                }
                if let Dest::Tcp(c) = tx.dest {
                    if self
                        .conns
                        .get(&c)
                        .is_some_and(|c| c.kind == ConnKind::Check)
                    {
                        self.close(c);
                        self.pairs[pair].conn = None;
                    }
                }
                self.check_failed(now, pair);
            }
        }
    }
}

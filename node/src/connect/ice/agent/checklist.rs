//! The checklist over time: transactions and their retransmissions, Ta pacing, regular
//! nomination, selection, failure and keepalives.

use super::*;

impl Agent {
    pub(super) fn start_tx(
        &mut self,
        now: u64,
        txid: [u8; 12],
        kind: TxKind,
        payload: Vec<u8>,
        dest: Dest,
    ) {
        let waiting = matches!(dest, Dest::Tcp(c) if !self.conns.get(&c).is_some_and(|c| c.open));
        let tx = Tx {
            kind,
            payload,
            dest,
            transmits: 0,
            // Until sent, only a connection still opening makes it wait.
            next_at: now + self.cfg.timing.tcp_connect_timeout,
            waiting,
        };
        self.txs.insert(txid, tx);
        if !waiting {
            self.send_tx(now, txid);
        }
    }

    pub(super) fn send_tx(&mut self, now: u64, txid: [u8; 12]) {
        let Some(tx) = self.txs.get_mut(&txid) else {
            return;
        };
        tx.transmits += 1;
        tx.waiting = false;
        let t = &self.cfg.timing;
        // Over TCP there are no retransmissions; the whole RFC 5389 budget is one wait.
        let total = t.rto * ((1u64 << t.max_transmits.saturating_sub(1).min(20)) - 1) + 16 * t.rto;
        match tx.dest {
            Dest::Udp { local, remote } => {
                tx.next_at = if tx.transmits < t.max_transmits {
                    now + (t.rto << (tx.transmits - 1).min(20))
                } else {
                    now + 16 * t.rto
                };
                self.transmits.push_back(Transmit::Udp {
                    local,
                    remote,
                    payload: tx.payload.clone(),
                });
            }
            Dest::Tcp(conn) => {
                tx.transmits = t.max_transmits;
                tx.next_at = now + total;
                let stun_stream = self
                    .conns
                    .get(&conn)
                    .is_some_and(|c| c.kind == ConnKind::Stun);
                let payload = if stun_stream {
                    tx.payload.clone()
                } else {
                    frame(&tx.payload)
                };
                self.transmits.push_back(Transmit::Tcp { conn, payload });
            }
        }
    }

    pub(super) fn start_check(&mut self, now: u64, p: usize, use_candidate: bool) {
        let Some((rufrag, rpwd)) = self.remote_creds.clone() else {
            return;
        };
        let pair = self.pairs[p].clone();
        let local = self.locals[pair.local].clone();
        let remote = self.remotes[pair.remote].clone();
        self.txs
            .retain(|_, t| !matches!(t.kind, TxKind::Check { pair, .. } if pair == p));
        let dest = if local.c.transport == Transport::Udp {
            Dest::Udp {
                local: local.base,
                remote: remote.addr,
            }
        } else {
            match pair.conn.filter(|c| self.conns.contains_key(c)) {
                Some(c) => Dest::Tcp(c),
                None if local.c.transport == Transport::TcpPassive => return,
                None => {
                    let c = self.connect(ConnKind::Check, local.base, remote.addr);
                    self.pairs[p].conn = Some(c);
                    Dest::Tcp(c)
                }
            }
        };
        let req = CheckRequest {
            priority: cand::check_priority(pair.local, self.srflx_default),
            use_candidate: use_candidate && self.controlling,
            controlling: Some(self.controlling),
            tie_breaker: self.tie_breaker,
        };
        let txid = self.txid();
        let payload = check::request(
            txid,
            &format!("{rufrag}:{}", self.ufrag),
            rpwd.as_bytes(),
            &req,
        );
        self.pairs[p].state = PairState::InProgress;
        let kind = TxKind::Check {
            pair: p,
            use_candidate: req.use_candidate,
            controlling: self.controlling,
        };
        self.start_tx(now, txid, kind, payload, dest);
    }

    /// No check left to run or waiting for an answer.
    pub(super) fn checks_done(&self) -> bool {
        self.triggered.is_empty()
            && self.redial_at.is_empty()
            && (0..self.pairs.len()).all(|p| match self.pairs[p].state {
                PairState::Frozen | PairState::Waiting => !self.startable(p),
                PairState::InProgress => false,
                PairState::Succeeded | PairState::Failed => true,
            })
    }

    pub(super) fn maybe_fail(&mut self, now: u64) {
        if self.state != State::Running || self.remote_creds.is_none() || self.gathering_pending > 0
        {
            return;
        }
        // A passive candidate can still be reached by the peer until the deadline, and so
        // can a simultaneous-open one: when the peer's SYN reaches our listener before we
        // connect, the kernel refuses our own connect (the 4-tuple is taken: Linux
        // EADDRNOTAVAIL) and the pair's check comes in on the accepted connection.
        let has = |locals: Transport, remotes: Transport| {
            self.locals.iter().any(|l| l.c.transport == locals)
                && self.remotes.iter().any(|r| r.transport == remotes)
        };
        let can_be_reached = has(Transport::TcpPassive, Transport::TcpActive)
            || has(Transport::TcpSo, Transport::TcpSo);
        let any_valid = self.pairs.iter().any(|p| p.state == PairState::Succeeded);
        let nothing_left = self.checks_done() && !any_valid && !can_be_reached;
        if nothing_left || self.fail_at.is_some_and(|t| now >= t) {
            self.fail();
        }
    }

    pub(super) fn fail(&mut self) {
        if self.state == State::Failed {
            return;
        }
        self.state = State::Failed;
        self.events.push_back(Event::Failed);
        self.stop_checks();
        for c in self.conns.keys().copied().collect::<Vec<_>>() {
            self.close(c);
        }
        self.path = None;
        self.keepalive_at = None;
    }

    pub(super) fn stop_checks(&mut self) {
        self.txs
            .retain(|_, t| matches!(t.kind, TxKind::Gather { .. }));
        self.triggered.clear();
        self.redial_at.clear();
        self.next_check_at = None;
        self.nominate_at = None;
        self.fail_at = None;
    }

    pub(super) fn select(&mut self, now: u64, p: usize) {
        if self.state != State::Running {
            return;
        }
        self.state = State::Connected;
        self.selected = Some(p);
        self.stop_checks();
        let pair = self.pairs[p].clone();
        let local = &self.locals[pair.valid_local.unwrap_or(pair.local)];
        let checked = &self.locals[pair.local];
        let remote = &self.remotes[pair.remote];
        let path = match pair.conn {
            Some(conn) if checked.c.transport.is_tcp() => Path::Tcp { conn },
            _ => Path::Udp {
                local: checked.base,
                remote: remote.addr,
            },
        };
        self.path = Some(path);
        let ev = Event::Selected {
            local: super::Endpoint {
                typ: local.c.typ,
                transport: checked.c.transport,
                addr: local.c.addr,
            },
            remote: Endpoint {
                typ: remote.typ,
                transport: remote.transport,
                addr: remote.addr,
            },
            path,
        };
        self.events.push_back(ev);
        // The other check connections stay open until the connection ends (the manager
        // then closes them all), as pjnath keeps its own. Closing them hurt jamid: its
        // epoll ioqueue (pjlib) leaves a peer-closed socket registered, the EOF stays
        // readable, and each poll then sleeps out its whole 500 ms timeout ("epoll
        // returned > 0 but no descriptor is set"), so every text we sent jamid waited
        // about 500 ms (strace of jamid 20230206; jamid to jamid: 2 ms).
        self.schedule_keepalive(now);
    }

    pub(super) fn schedule_keepalive(&mut self, now: u64) {
        let t = &self.cfg.timing;
        let jitter = if t.keepalive_rand > 0 {
            self.rng.random_range(0..t.keepalive_rand)
        } else {
            0
        };
        self.keepalive_at = Some(now + t.keepalive_min + jitter);
    }

    /// Starts one check (triggered first, then the best waiting, then the best frozen
    /// pair); false when none is left.
    pub(super) fn pace_check(&mut self, now: u64) -> bool {
        if self.remote_creds.is_none() {
            return false;
        }
        while let Some(p) = self.triggered.pop_front() {
            if self.pairs[p].state == PairState::Waiting && self.startable(p) {
                self.start_check(now, p, false);
                return true;
            }
        }
        let best = |state| {
            (0..self.pairs.len())
                .filter(|&p| self.pairs[p].state == state && self.startable(p))
                .max_by_key(|&p| (self.pair_priority(p), std::cmp::Reverse(p)))
        };
        match best(PairState::Waiting).or_else(|| best(PairState::Frozen)) {
            Some(p) => {
                self.start_check(now, p, false);
                true
            }
            None => false,
        }
    }

    /// Regular nomination (pjnath with `aggressive = PJ_FALSE`): re-check the best valid
    /// pair with USE-CANDIDATE.
    pub(super) fn nominate(&mut self, now: u64) {
        if !self.controlling || self.nominating.is_some() {
            return;
        }
        let best = (0..self.pairs.len())
            .filter(|&p| self.pairs[p].state == PairState::Succeeded)
            .max_by_key(|&p| (self.pair_priority(p), std::cmp::Reverse(p)));
        if let Some(p) = best {
            self.nominating = Some(p);
            self.start_check(now, p, true);
        }
    }
}

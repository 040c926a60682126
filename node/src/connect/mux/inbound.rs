//! What the peer sends: frames routed to the control, protocol and data channels,
//! channel requests checked against the caps, and data delivered under flow control.

use super::control::{self, ChannelRequest, ChannelState, ControlError, ControlMsg};
use super::frame::Frame;
use super::{
    Channel, Event, Mux, ShutdownReason, State, CHANNEL_RECV_BUFFER, CONTROL_CHANNEL, MAX_CHANNELS,
    MAX_CHANNEL_NAME, MAX_PENDING_REQUESTS, MAX_REFUSALS, MUX_RECV_BUFFER, PROTOCOL_CHANNEL,
};

impl Mux {
    pub(super) fn on_frame(&mut self, f: Frame) {
        match f.channel {
            None => self.stats.bad_channel_frames += 1,
            Some(CONTROL_CHANNEL) | Some(PROTOCOL_CHANNEL) => self.on_control(&f.data),
            Some(ch) => self.on_data(ch, f.data),
        }
    }

    pub(super) fn on_control(&mut self, data: &[u8]) {
        let msgs: Vec<Result<ControlMsg, ControlError>> = control::parse_all(data).collect();
        for m in msgs {
            if self.closed {
                return;
            }
            match m {
                Ok(ControlMsg::Version(v)) => self.peer_version = Some(v),
                Ok(ControlMsg::Beacon(true)) => self.send_protocol(&ControlMsg::Beacon(false)),
                Ok(ControlMsg::Beacon(false)) => {
                    if self.beacons.pop_front().is_none() {
                        self.stats.unexpected_answers += 1;
                    }
                }
                Ok(ControlMsg::Channel(req)) => self.on_channel_request(req),
                Err(_) => self.stats.malformed_control += 1,
            }
        }
    }

    pub(super) fn on_channel_request(&mut self, req: ChannelRequest) {
        let id = req.channel;
        match req.state {
            ChannelState::Request => self.on_request(req),
            ChannelState::Accept => match self.channels.get_mut(&id) {
                Some(c) if c.state == State::Requested => {
                    c.state = State::Open;
                    let name = c.name.clone();
                    self.events
                        .push_back(Event::ChannelOpened { channel: id, name });
                }
                _ => self.stats.unexpected_answers += 1,
            },
            // jamid stops and erases whatever socket has that id.
            ChannelState::Decline => match self.channels.get(&id).map(|c| c.state) {
                Some(State::Requested) => {
                    if let Some(c) = self.channels.remove(&id) {
                        self.recv_total -= c.recv.len();
                        let name = c.name;
                        self.events
                            .push_back(Event::ChannelDeclined { channel: id, name });
                    }
                }
                Some(State::Open) => self.remote_close(id),
                _ => self.stats.unexpected_answers += 1,
            },
        }
        self.unstall();
    }

    pub(super) fn on_request(&mut self, req: ChannelRequest) {
        let id = req.channel;
        let invalid = id == CONTROL_CHANNEL
            || id == PROTOCOL_CHANNEL
            || req.name.len() > MAX_CHANNEL_NAME
            || self.channels.contains_key(&id);
        let pending = self
            .channels
            .values()
            .filter(|c| c.state == State::Pending)
            .count();
        let counter = if invalid {
            &mut self.stats.refused_invalid
        } else if self.channels.len() >= MAX_CHANNELS {
            &mut self.stats.refused_channel_cap
        } else if pending >= MAX_PENDING_REQUESTS {
            &mut self.stats.refused_pending_cap
        } else {
            self.channels
                .insert(id, Channel::new(&req.name, State::Pending));
            self.events.push_back(Event::ChannelRequested {
                channel: id,
                name: req.name,
            });
            return;
        };
        *counter += 1;
        self.refusals += 1;
        if self.refusals > MAX_REFUSALS {
            self.fail(ShutdownReason::TooManyRefusals);
            return;
        }
        // A name over the limit is not echoed back in full.
        let name = if req.name.len() > MAX_CHANNEL_NAME {
            ""
        } else {
            &req.name
        };
        self.send_request(name, id, ChannelState::Decline);
    }

    pub(super) fn on_data(&mut self, id: u16, data: Vec<u8>) {
        let state = self.channels.get(&id).map(|c| c.state);
        match (state, data.is_empty()) {
            (Some(State::Open | State::Requested), true) => self.remote_close(id),
            // The requester gave up before we answered.
            (Some(State::Pending), true) => {
                self.channels.remove(&id);
                self.events.push_back(Event::ChannelClosed { channel: id });
            }
            (Some(State::Open | State::Requested), false) => {
                self.stalled = Some((id, data));
                self.unstall();
                if self.stalled.is_some() {
                    self.stats.flow_stalls += 1;
                }
            }
            // jamid: "Non existing channel"; an EOF for an unknown channel is silent.
            (_, false) => self.stats.unknown_channel_frames += 1,
            (_, true) => {}
        }
    }

    pub(super) fn remote_close(&mut self, id: u16) {
        if let Some(c) = self.channels.get_mut(&id) {
            c.state = State::RemoteClosed;
            self.events.push_back(Event::ChannelClosed { channel: id });
        }
    }

    /// Deliver the stalled frame if its channel has room now (or is gone).
    pub(super) fn unstall(&mut self) {
        let Some((id, data)) = self.stalled.take() else {
            return;
        };
        let Some(c) = self.channels.get_mut(&id) else {
            self.stats.unknown_channel_frames += 1;
            return;
        };
        if !matches!(c.state, State::Open | State::Requested) {
            self.stats.unknown_channel_frames += 1;
            return;
        }
        if c.recv.len() + data.len() > CHANNEL_RECV_BUFFER
            || self.recv_total + data.len() > MUX_RECV_BUFFER
        {
            self.stalled = Some((id, data));
            return;
        }
        self.recv_total += data.len();
        c.recv.extend(data);
        if !c.signalled {
            c.signalled = true;
            self.events.push_back(Event::Readable { channel: id });
        }
    }
}

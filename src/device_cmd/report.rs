//! How `node device` shows what its device reports: one line of text, or one JSON
//! object per line with `--json`.

use crate::node_cmd::Printer;
use node::connect::manager::ConnectionEvent;
use node::contacts::{ContactEvent, TrustEvent};
use node::device::jami::JamiEvent;
use node::device::{Device, DeviceEvent, PresenceState};
use node::dht::engine::Event;
use node::dht::InfoHash;
use node::presence::PresenceEvent;
use serde_json::json;

pub fn state_json(account: &InfoHash, state: PresenceState) -> serde_json::Value {
    json!({"account": account.to_string(), "state": state.to_string()})
}

pub fn report(out: &Printer, dev: &mut Device, e: DeviceEvent) {
    match e {
        DeviceEvent::Dht(Event::Connected) => {
            out.say("connected", "Connected to the DHT".into(), json!({}))
        }
        DeviceEvent::Dht(_) => {}
        DeviceEvent::Presence(PresenceEvent::Online(a) | PresenceEvent::Offline(a)) => {
            let state = dev.presence_of(&a).unwrap_or(PresenceState::None);
            out.say("presence", format!("{a}: {state}"), state_json(&a, state));
        }
        DeviceEvent::Presence(PresenceEvent::DeviceVerified { account, device }) => out.say(
            "device_verified",
            format!(
                "{account}: device {} verified",
                hex::encode(device.device_id)
            ),
            json!({"account": account.to_string(), "device": hex::encode(device.device_id),
                "device_short": hex::encode(device.device_short_id)}),
        ),
        DeviceEvent::Presence(PresenceEvent::Rejected { account, reason }) => out.say(
            "rejected",
            format!("{account}: refused: {reason}"),
            json!({"account": account.to_string(), "reason": format!("{reason:?}")}),
        ),
        DeviceEvent::Jami(j) => jami(out, dev, j),
        DeviceEvent::Nearby(n) => nearby(out, n),
    }
}

fn jami(out: &Printer, dev: &mut Device, e: JamiEvent) {
    match e {
        JamiEvent::Connection(c) => connection(out, dev, c),
        JamiEvent::Trust(t) => trust(out, t),
        JamiEvent::Message {
            account,
            device,
            id,
            mime,
            body,
            via,
        } => {
            let text = String::from_utf8_lossy(&body).into_owned();
            out.say(
                "message",
                format!("{account} ({via}): {text}"),
                json!({"from": account.to_string(), "device": device.to_string(), "id": id,
                    "mime": mime, "body": text, "via": via.to_string()}),
            )
        }
        JamiEvent::Delivered { token, via } => out.say(
            "delivered",
            format!("message {token} delivered ({via})"),
            json!({"token": token, "via": via.to_string()}),
        ),
        JamiEvent::SendFailed { token, reason } => out.say(
            "send_failed",
            format!("message {token} not delivered: {reason}"),
            json!({"token": token, "reason": reason}),
        ),
    }
}

fn connection(out: &Printer, dev: &Device, e: ConnectionEvent) {
    match e {
        ConnectionEvent::Connected {
            device,
            account,
            local,
            remote,
            initiator,
            setup_ms,
        } => {
            let pair = |e: &node::connect::ice::Endpoint| json!({"type": e.typ.as_str(), "transport": transport(e.transport), "addr": e.addr.to_string()});
            out.say(
                "peer_connected",
                format!(
                    "connected to {account} (device {device}) in {setup_ms} ms: {} {} {} <-> {} {} {}",
                    local.typ.as_str(),
                    transport(local.transport),
                    local.addr,
                    remote.typ.as_str(),
                    transport(remote.transport),
                    remote.addr
                ),
                json!({"account": account.to_string(), "device": device.to_string(),
                    "initiator": initiator, "setup_ms": setup_ms,
                    "local": pair(&local), "remote": pair(&remote),
                    "state": dev.presence_of(&account).map(|s| s.to_string())}),
            )
        }
        ConnectionEvent::Closed { device, reason } => out.say(
            "peer_closed",
            format!("connection to device {device} closed: {reason}"),
            json!({"device": device.to_string(), "reason": reason}),
        ),
        ConnectionEvent::Refused { device, reason } => out.say(
            "peer_refused",
            format!("refused device {device}: {reason}"),
            json!({"device": device.to_string(), "reason": reason}),
        ),
        ConnectionEvent::ChannelOpened {
            device,
            channel,
            name,
        } => out.say(
            "channel_opened",
            format!("channel {name} ({channel}) open with device {device}"),
            json!({"device": device.to_string(), "channel": channel, "name": name}),
        ),
        ConnectionEvent::ChannelRequested {
            device,
            channel,
            name,
        } => out.say(
            "channel_requested",
            format!("device {device} opens channel {name} ({channel})"),
            json!({"device": device.to_string(), "channel": channel, "name": name}),
        ),
        ConnectionEvent::ChannelDeclined {
            device,
            channel,
            name,
        } => out.say(
            "channel_declined",
            format!("device {device} declined channel {name} ({channel})"),
            json!({"device": device.to_string(), "channel": channel, "name": name}),
        ),
        ConnectionEvent::ChannelData { .. } | ConnectionEvent::ChannelClosed { .. } => {}
    }
}

fn trust(out: &Printer, t: TrustEvent) {
    match t {
        TrustEvent::Contact(ContactEvent::ContactAdded { account, confirmed }) => out.say(
            "contact_added",
            format!("contact {account} added (confirmed: {confirmed})"),
            json!({"account": account.to_string(), "confirmed": confirmed}),
        ),
        TrustEvent::Contact(ContactEvent::ContactRemoved { account, banned }) => out.say(
            "contact_removed",
            format!("contact {account} removed (banned: {banned})"),
            json!({"account": account.to_string(), "banned": banned}),
        ),
        TrustEvent::Contact(ContactEvent::IncomingRequest {
            from,
            conversation_id,
            payload,
            ..
        }) => out.say(
            "trust_request",
            format!("trust request from {from} (accept {from} / decline {from})"),
            json!({"from": from.to_string(), "conversation": conversation_id,
                "payload": String::from_utf8_lossy(&payload)}),
        ),
        TrustEvent::Contact(ContactEvent::Confirmed { from, .. }) => out.say(
            "confirmed",
            format!("{from} accepted our request"),
            json!({"from": from.to_string()}),
        ),
        TrustEvent::Sent {
            to,
            confirm,
            devices,
        } => out.say(
            "request_sent",
            format!(
                "{} sent to {devices} device(s) of {to}",
                if confirm {
                    "confirmation"
                } else {
                    "trust request"
                }
            ),
            json!({"to": to.to_string(), "confirm": confirm, "devices": devices}),
        ),
        TrustEvent::Refused { reason } => out.say(
            "trust_refused",
            format!("inbox value refused: {reason}"),
            json!({"reason": reason.to_string()}),
        ),
    }
}

/// RFC 6544 names: `udp`, `tcp-active`, `tcp-passive`, `tcp-so`.
fn transport(t: node::connect::ice::Transport) -> &'static str {
    use node::connect::ice::Transport as T;
    match t {
        T::Udp => "udp",
        T::TcpActive => "tcp-active",
        T::TcpPassive => "tcp-passive",
        T::TcpSo => "tcp-so",
    }
}

fn nearby(out: &Printer, n: node::discovery::Event) {
    use node::discovery::Event as N;
    match n {
        N::JamiPeer {
            account,
            name,
            addr,
        } => out.say(
            "nearby",
            format!("nearby: {account} ({name}) at {addr}"),
            json!({"account": account.to_string(), "name": name, "addr": addr.to_string()}),
        ),
        N::JamiPeerLost { account, name } => out.say(
            "nearby_lost",
            format!("no longer nearby: {account} ({name})"),
            json!({"account": account.to_string(), "name": name}),
        ),
        N::DhtPeer { .. } => {}
    }
}

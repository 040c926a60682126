//! The stdin commands of `node device`.

use super::report::state_json;
use crate::node_cmd::Printer;
use node::device::{Device, PresenceState};
use node::dht::InfoHash;
use node::driver::unix_ms;
use serde_json::json;

pub const HELP: &str = "commands: add <id> [vcard], accept <id>, decline <id>, ban <id>, \
remove <id>, contacts, requests, connect <id>, msg <id> <text>, connections, track <id>, \
untrack <id>, presence, ll (node info), x (quit); <id> is a 40-hex Jami ID or jami:<id>";

fn account(w: Option<&str>) -> Option<InfoHash> {
    w.and_then(|s| s.trim_start_matches("jami:").parse::<InfoHash>().ok())
}

fn usage(out: &Printer, what: &str) {
    out.say(
        "error",
        format!("usage: {what}"),
        json!({"error": format!("usage: {what}")}),
    );
}

/// One stdin line; false to quit.
pub fn command(dev: &mut Device, line: &str, out: &Printer) -> bool {
    let line = line.trim();
    let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let mut words = rest.split_whitespace();
    let now = unix_ms();
    match verb {
        "" => {}
        "x" | "q" | "quit" => return false,
        "track" => match account(words.next()) {
            Some(a) => {
                dev.track(now, a);
                let state = dev.presence_of(&a).unwrap_or(PresenceState::None);
                out.say(
                    "tracking",
                    format!("tracking {a}: {state}"),
                    state_json(&a, state),
                );
            }
            None => usage(out, "track <id>"),
        },
        "untrack" => match account(words.next()) {
            Some(a) => {
                dev.untrack(&a);
                out.say(
                    "untracked",
                    format!("no longer tracking {a}"),
                    json!({"account": a.to_string()}),
                );
            }
            None => usage(out, "untrack <id>"),
        },
        "presence" => {
            let all: Vec<(InfoHash, PresenceState)> = dev.tracked().collect();
            let text: Vec<String> = all.iter().map(|(a, s)| format!("{a}: {s}")).collect();
            let json: Vec<serde_json::Value> = all.iter().map(|(a, s)| state_json(a, *s)).collect();
            out.say("presence_list", text.join("\n"), json!({"contacts": json}));
        }
        "add" => match account(words.next()) {
            Some(a) => {
                let vcard = words.collect::<Vec<_>>().join(" ").into_bytes();
                let ok = dev.send_trust_request(now, a, vcard);
                out.say(
                    "adding",
                    format!(
                        "trust request to {a}: {}",
                        if ok { "sending" } else { "busy, try again" }
                    ),
                    json!({"account": a.to_string(), "ok": ok}),
                );
            }
            None => usage(out, "add <id> [vcard]"),
        },
        "accept" => match account(words.next()) {
            Some(a) => {
                let ok = dev.accept_trust_request(now, a);
                out.say(
                    "accepting",
                    format!(
                        "accept {a}: {}",
                        if ok { "ok" } else { "no request from it" }
                    ),
                    json!({"account": a.to_string(), "ok": ok}),
                );
            }
            None => usage(out, "accept <id>"),
        },
        "decline" => match account(words.next()) {
            Some(a) => {
                let ok = dev.decline_trust_request(now, &a);
                out.say(
                    "declining",
                    format!(
                        "decline {a}: {}",
                        if ok { "ok" } else { "no request from it" }
                    ),
                    json!({"account": a.to_string(), "ok": ok}),
                );
            }
            None => usage(out, "decline <id>"),
        },
        "ban" | "remove" => match account(words.next()) {
            Some(a) => {
                let ban = verb == "ban";
                let ok = dev.remove_contact(now, a, ban);
                out.say(
                    "removing",
                    format!("{verb} {a}: {}", if ok { "ok" } else { "not a contact" }),
                    json!({"account": a.to_string(), "ban": ban, "ok": ok}),
                );
            }
            None => usage(out, &format!("{verb} <id>")),
        },
        "contacts" => contacts(dev, out),
        "requests" => requests(dev, out),
        "connect" => match account(words.next()) {
            Some(a) => {
                let n = dev.connect(now, a).unwrap_or(0);
                out.say(
                    "connecting",
                    format!("connecting to {a} ({n} device(s) known so far)"),
                    json!({"account": a.to_string(), "devices": n}),
                );
            }
            None => usage(out, "connect <id>"),
        },
        "msg" => match account(words.next()) {
            Some(a) => {
                let text = rest
                    .split_once(char::is_whitespace)
                    .map(|r| r.1.trim())
                    .unwrap_or("");
                match dev.send_message(now, a, "text/plain", text.as_bytes()) {
                    Some(token) => out.say(
                        "sending",
                        format!("message {token} to {a}"),
                        json!({"account": a.to_string(), "token": token}),
                    ),
                    None => usage(out, "msg <id> <text>"),
                }
            }
            None => usage(out, "msg <id> <text>"),
        },
        "connections" => {
            let list = dev
                .services()
                .map(|s| s.connection_list())
                .unwrap_or_default();
            let text: Vec<String> = list
                .iter()
                .map(|(d, a, s)| {
                    format!(
                        "device {d} of {}: {s}",
                        a.map(|a| a.to_string()).unwrap_or_default()
                    )
                })
                .collect();
            let json: Vec<serde_json::Value> = list
                .iter()
                .map(|(d, a, s)| json!({"device": d.to_string(), "account": a.map(|a| a.to_string()), "stage": s.to_string()}))
                .collect();
            out.say("connections", text.join("\n"), json!({"connections": json}));
        }
        "ll" => {
            // The CLI device runs its own UDP node.
            let Some(d) = dev.dht() else {
                return true;
            };
            out.say(
                "info",
                format!(
                    "node {} connected: {}, {} nodes known, announced {} times",
                    d.id(),
                    dev.is_connected(),
                    d.routing_table().len(),
                    dev.announcements()
                ),
                json!({"node": d.id().to_string(), "connected": dev.is_connected(),
                    "nodes": d.routing_table().len(), "announcements": dev.announcements()}),
            );
        }
        other => out.say(
            "error",
            format!("unknown command `{other}`; {HELP}"),
            json!({"error": format!("unknown command `{other}`")}),
        ),
    }
    true
}

fn contacts(dev: &mut Device, out: &Printer) {
    let list: Vec<(InfoHash, bool, bool)> = dev
        .contacts_mut()
        .map(|l| {
            l.contacts()
                .iter()
                .map(|(a, c)| (*a, c.is_active(), c.is_banned()))
                .collect()
        })
        .unwrap_or_default();
    let rows: Vec<(InfoHash, bool, bool, PresenceState)> = list
        .into_iter()
        .map(|(a, active, banned)| {
            (
                a,
                active,
                banned,
                dev.presence_of(&a).unwrap_or(PresenceState::None),
            )
        })
        .collect();
    let text: Vec<String> = rows
        .iter()
        .map(|(a, active, banned, s)| {
            let what = if *banned {
                "banned"
            } else if *active {
                "contact"
            } else {
                "removed"
            };
            format!("{a}: {what}, {s}")
        })
        .collect();
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|(a, active, banned, s)| json!({"account": a.to_string(), "active": active, "banned": banned, "state": s.to_string()}))
        .collect();
    out.say("contacts", text.join("\n"), json!({"contacts": json}));
}

fn requests(dev: &mut Device, out: &Printer) {
    let list: Vec<(InfoHash, String)> = dev
        .contacts_mut()
        .map(|l| {
            l.requests()
                .iter()
                .map(|(a, r)| (*a, r.conversation_id.clone()))
                .collect()
        })
        .unwrap_or_default();
    let text: Vec<String> = list
        .iter()
        .map(|(a, c)| format!("{a} (conversation {c})"))
        .collect();
    let json: Vec<serde_json::Value> = list
        .iter()
        .map(|(a, c)| json!({"from": a.to_string(), "conversation": c}))
        .collect();
    out.say("requests", text.join("\n"), json!({"requests": json}));
}

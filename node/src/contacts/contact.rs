//! jamid's contact list rules (`jami_contact.h` `Contact`, `contact_list.cpp`
//! `ContactList` @ 13.7): contacts with their added/removed times, the incoming trust
//! requests, and what a new request does to them. Pure state: times are unix seconds
//! given by the caller, nothing here touches the DHT or the disk.

use crate::dht::infohash::InfoHash;
use std::collections::BTreeMap;

/// A contact as jamid keeps it. `added`/`removed` are unix seconds (`time_t`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    pub added: i64,
    pub removed: i64,
    /// The peer accepted us too (we got its confirmation, or we accepted its request).
    pub confirmed: bool,
    /// Removed with ban: its requests and messages are dropped.
    pub banned: bool,
    /// The 1:1 conversation linked to the contact (empty when none).
    pub conversation_id: String,
}

impl Contact {
    /// `isActive`: added after its last removal.
    pub fn is_active(&self) -> bool {
        self.added > self.removed
    }

    /// `isBanned`: removed with ban and not added again.
    pub fn is_banned(&self) -> bool {
        !self.is_active() && self.banned
    }

    /// `toMap` plus `id`, as D-Bus `getContacts` lists it; `None` for a contact that is
    /// neither active nor banned (jamid leaves those out).
    pub fn details(&self, id: &InfoHash) -> Option<BTreeMap<String, String>> {
        if !self.is_active() && !self.is_banned() {
            return None;
        }
        let mut m = BTreeMap::new();
        m.insert("id".to_string(), id.to_string());
        m.insert("added".to_string(), self.added.to_string());
        m.insert("conversationId".to_string(), self.conversation_id.clone());
        if self.is_active() {
            m.insert("confirmed".to_string(), self.confirmed.to_string());
        } else {
            m.insert("banned".to_string(), "true".to_string());
        }
        Some(m)
    }
}

/// An incoming trust request kept until the user answers (jamid's `TrustRequest` of
/// `jami_contact.h`, one per peer account).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncomingRequest {
    /// DER SPKI of the device that sent it (`None` when jamid stored a null key).
    pub device: Option<Vec<u8>>,
    pub conversation_id: String,
    /// Unix seconds.
    pub received: i64,
    /// The sender's vCard, as sent.
    pub payload: Vec<u8>,
}

/// Most incoming requests kept at once. jamid sets no bound; a flood of requests from
/// fresh accounts (each costs only a key pair) must not grow memory or the file
/// without limit. Requests from accounts already listed still update.
pub const MAX_INCOMING_REQUESTS: usize = 512;

/// What [`ContactList`] tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactEvent {
    /// `contactAdded(uri, confirmed)`.
    ContactAdded { account: InfoHash, confirmed: bool },
    /// `contactRemoved(uri, banned)`.
    ContactRemoved { account: InfoHash, banned: bool },
    /// `incomingTrustRequest(convId, from, payload, received)`: a request to show the user.
    IncomingRequest {
        from: InfoHash,
        conversation_id: String,
        payload: Vec<u8>,
        received: i64,
    },
    /// A contact confirmed our request (`onConfirmation`).
    Confirmed {
        from: InfoHash,
        conversation_id: String,
    },
}

/// What [`ContactList::on_trust_request`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// From a banned contact: nothing changes.
    Banned,
    /// Kept (or updated) as an incoming request.
    Stored,
    /// Not kept: [`MAX_INCOMING_REQUESTS`] reached.
    Full,
    /// From an active contact: jamid answers with a confirmation (when the request is
    /// not one itself), with this conversation id.
    Known { confirm_with: Option<String> },
}

/// The contacts and incoming requests of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactList {
    pub(crate) contacts: BTreeMap<InfoHash, Contact>,
    pub(crate) requests: BTreeMap<InfoHash, IncomingRequest>,
    events: Vec<ContactEvent>,
    /// Set by every change that jamid saves to disk; cleared by the owner after saving.
    pub dirty: bool,
}

impl ContactList {
    pub fn new() -> Self {
        Self::default()
    }

    /// From what was saved (jamid's `load`: contacts, then requests).
    pub fn from_parts(
        contacts: BTreeMap<InfoHash, Contact>,
        requests: BTreeMap<InfoHash, IncomingRequest>,
    ) -> Self {
        let requests = requests.into_iter().take(MAX_INCOMING_REQUESTS).collect();
        ContactList {
            contacts,
            requests,
            events: Vec::new(),
            dirty: false,
        }
    }

    pub fn contacts(&self) -> &BTreeMap<InfoHash, Contact> {
        &self.contacts
    }

    pub fn contact(&self, account: &InfoHash) -> Option<&Contact> {
        self.contacts.get(account)
    }

    pub fn requests(&self) -> &BTreeMap<InfoHash, IncomingRequest> {
        &self.requests
    }

    pub fn is_banned(&self, account: &InfoHash) -> bool {
        self.contacts.get(account).is_some_and(Contact::is_banned)
    }

    /// D-Bus `getContacts`: active and banned contacts, by id.
    pub fn details(&self) -> Vec<BTreeMap<String, String>> {
        self.contacts
            .iter()
            .filter_map(|(id, c)| c.details(id))
            .collect()
    }

    /// Events since the last call, oldest first.
    pub fn drain_events(&mut self) -> Vec<ContactEvent> {
        std::mem::take(&mut self.events)
    }

    /// `addContact`: (re)activate `account`; `confirmed` only ever turns on. Returns
    /// false when nothing changed (already active with the same state).
    pub fn add_contact(
        &mut self,
        now_s: i64,
        account: InfoHash,
        confirmed: bool,
        conversation_id: &str,
    ) -> bool {
        let c = self.contacts.entry(account).or_default();
        if c.is_active() && c.confirmed == confirmed && c.conversation_id == conversation_id {
            return false;
        }
        c.added = now_s;
        // Re-adding in the same second as a removal must still make it active.
        c.removed = 0;
        c.conversation_id = conversation_id.to_string();
        c.confirmed |= confirmed;
        let confirmed = c.confirmed;
        self.dirty = true;
        self.events
            .push(ContactEvent::ContactAdded { account, confirmed });
        true
    }

    /// `removeContact`: deactivate (and maybe ban) `account`, drop its pending request.
    /// Returns false when it was already removed with the same ban state.
    pub fn remove_contact(&mut self, now_s: i64, account: InfoHash, ban: bool) -> bool {
        let unchanged = self
            .contacts
            .get(&account)
            .is_some_and(|c| !c.is_active() && c.banned == ban);
        if unchanged {
            return false;
        }
        let c = self.contacts.entry(account).or_default();
        c.removed = now_s;
        c.confirmed = false;
        c.banned = ban;
        self.requests.remove(&account);
        self.dirty = true;
        self.events.push(ContactEvent::ContactRemoved {
            account,
            banned: ban,
        });
        true
    }

    /// `onTrustRequest`, after the sender's device chain was checked: `account` is the
    /// verified issuer of `device`.
    pub fn on_trust_request(
        &mut self,
        now_s: i64,
        account: InfoHash,
        device: &[u8],
        confirm: bool,
        conversation_id: &str,
        payload: Vec<u8>,
    ) -> RequestOutcome {
        let mut outcome = None;
        if let Some(c) = self.contacts.get_mut(&account) {
            if c.is_banned() {
                return RequestOutcome::Banned;
            }
            if c.is_active() {
                if !c.confirmed {
                    c.confirmed = true;
                    self.dirty = true;
                    self.events.push(ContactEvent::ContactAdded {
                        account,
                        confirmed: true,
                    });
                }
                // jamid's listener: answer a request from a contact with a confirmation,
                // carrying the contact's own conversation when it has one — and none at
                // all when the request names that same conversation.
                let confirm_with = match (confirm, c.conversation_id.as_str()) {
                    (true, _) => None,
                    (false, "") => Some(conversation_id.to_string()),
                    (false, old) if old == conversation_id => None,
                    (false, old) => Some(old.to_string()),
                };
                outcome = Some(RequestOutcome::Known { confirm_with });
            }
        }
        let outcome = match outcome {
            Some(o) => o,
            None => {
                // Not an active contact: keep the request, even a confirmation (jamid
                // stores those too, without telling the user).
                let full = self.requests.len() >= MAX_INCOMING_REQUESTS;
                match self.requests.get_mut(&account) {
                    Some(r) => {
                        // Only an older request replaces the stored one.
                        if now_s < r.received {
                            r.device = Some(device.to_vec());
                            r.received = now_s;
                            r.payload = payload.clone();
                        }
                        self.dirty = true;
                        RequestOutcome::Stored
                    }
                    None if full => return RequestOutcome::Full,
                    None => {
                        self.requests.insert(
                            account,
                            IncomingRequest {
                                device: Some(device.to_vec()),
                                conversation_id: conversation_id.to_string(),
                                received: now_s,
                                payload: payload.clone(),
                            },
                        );
                        self.dirty = true;
                        RequestOutcome::Stored
                    }
                }
            }
        };
        // jamid hands every non-confirm request to its conversation module, which
        // shows it only when no 1:1 conversation with the sender exists; here: only
        // when it was kept for the user to answer.
        if !confirm && outcome == RequestOutcome::Stored {
            self.events.push(ContactEvent::IncomingRequest {
                from: account,
                conversation_id: conversation_id.to_string(),
                payload,
                received: now_s,
            });
        } else if confirm && matches!(outcome, RequestOutcome::Known { .. }) {
            self.events.push(ContactEvent::Confirmed {
                from: account,
                conversation_id: conversation_id.to_string(),
            });
        }
        outcome
    }

    /// `acceptTrustRequest`: the requester becomes a confirmed contact with the
    /// request's conversation; returns that conversation id, `None` without a request.
    pub fn accept_request(&mut self, now_s: i64, from: &InfoHash) -> Option<String> {
        let req = self.requests.get(from)?.clone();
        self.add_contact(now_s, *from, true, &req.conversation_id);
        self.requests.remove(from);
        self.dirty = true;
        Some(req.conversation_id)
    }

    /// `discardTrustRequest`: forget the request; the sender is not told.
    pub fn discard_request(&mut self, from: &InfoHash) -> bool {
        let removed = self.requests.remove(from).is_some();
        self.dirty |= removed;
        removed
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    const T: i64 = 1_790_000_000;

    fn h(b: u8) -> InfoHash {
        InfoHash([b; 20])
    }

    fn request(
        list: &mut ContactList,
        now: i64,
        from: InfoHash,
        confirm: bool,
        conv: &str,
    ) -> RequestOutcome {
        list.on_trust_request(now, from, b"dev", confirm, conv, b"vcard".to_vec())
    }

    #[test]
    fn re_adding_in_the_second_of_a_removal_is_active() {
        let mut l = ContactList::new();
        assert!(l.add_contact(T, h(1), false, "c"));
        assert!(l.remove_contact(T, h(1), false));
        assert!(
            !l.contact(&h(1)).unwrap().is_active(),
            "added == removed: not active"
        );
        assert!(l.add_contact(T, h(1), false, "c"));
        let c = l.contact(&h(1)).unwrap();
        assert!(c.is_active(), "removed reset to 0");
        assert_eq!(c.removed, 0);
        // Breaking the model: without the reset the contact would stay inactive.
        let broken = Contact {
            added: T,
            removed: T,
            ..c.clone()
        };
        assert!(!broken.is_active());
    }

    #[test]
    fn add_is_idempotent_and_confirmed_only_turns_on() {
        let mut l = ContactList::new();
        assert!(l.add_contact(T, h(1), true, "c"));
        assert!(
            !l.add_contact(T + 5, h(1), true, "c"),
            "same state: no change"
        );
        assert!(l.add_contact(T + 5, h(1), false, "c"));
        assert!(l.contact(&h(1)).unwrap().confirmed, "|= confirmed");
        let ev = l.drain_events();
        assert_eq!(ev.len(), 2);
        assert!(ev.iter().all(|e| *e
            == ContactEvent::ContactAdded {
                account: h(1),
                confirmed: true
            }));
    }

    #[test]
    fn unknown_sender_is_stored_and_shown() {
        let mut l = ContactList::new();
        assert_eq!(
            request(&mut l, T, h(2), false, "conv"),
            RequestOutcome::Stored
        );
        let r = &l.requests()[&h(2)];
        assert_eq!(
            (r.received, r.conversation_id.as_str(), r.payload.as_slice()),
            (T, "conv", &b"vcard"[..])
        );
        assert_eq!(r.device.as_deref(), Some(&b"dev"[..]));
        assert_eq!(
            l.drain_events(),
            vec![ContactEvent::IncomingRequest {
                from: h(2),
                conversation_id: "conv".into(),
                payload: b"vcard".to_vec(),
                received: T
            }]
        );
        assert!(l.dirty);
    }

    #[test]
    fn only_an_older_request_replaces_the_stored_one() {
        let mut l = ContactList::new();
        request(&mut l, T, h(2), false, "conv");
        l.on_trust_request(T + 10, h(2), b"dev2", false, "conv", b"newer".to_vec());
        assert_eq!(l.requests()[&h(2)].payload, b"vcard");
        l.on_trust_request(T - 10, h(2), b"dev3", false, "conv", b"older".to_vec());
        let r = &l.requests()[&h(2)];
        assert_eq!((r.payload.as_slice(), r.received), (&b"older"[..], T - 10));
    }

    #[test]
    fn banned_sender_is_dropped() {
        let mut l = ContactList::new();
        request(&mut l, T, h(3), false, "conv");
        assert!(l.remove_contact(T, h(3), true));
        assert!(l.requests().is_empty(), "ban drops the pending request");
        l.drain_events();
        assert_eq!(
            request(&mut l, T + 1, h(3), false, "conv"),
            RequestOutcome::Banned
        );
        assert!(l.requests().is_empty() && l.drain_events().is_empty());
        // Removed without ban: requests are kept again.
        assert!(l.remove_contact(T + 2, h(3), false));
        assert!(
            !l.remove_contact(T + 2, h(3), false),
            "same state twice: no change"
        );
        assert_eq!(
            request(&mut l, T + 3, h(3), false, "conv"),
            RequestOutcome::Stored
        );
        // Re-adding a banned contact un-bans it.
        l.remove_contact(T + 4, h(3), true);
        l.add_contact(T + 5, h(3), false, "");
        assert!(!l.is_banned(&h(3)));
    }

    #[test]
    fn known_contact_is_confirmed_and_answered_as_jamid_does() {
        let mut l = ContactList::new();
        l.add_contact(T, h(4), false, "");
        l.drain_events();
        assert_eq!(
            request(&mut l, T, h(4), false, "new"),
            RequestOutcome::Known {
                confirm_with: Some("new".into())
            },
            "no conversation of ours: confirm with theirs"
        );
        assert!(l.contact(&h(4)).unwrap().confirmed);
        assert_eq!(
            l.drain_events(),
            vec![ContactEvent::ContactAdded {
                account: h(4),
                confirmed: true
            }]
        );
        assert!(l.requests().is_empty(), "nothing to answer for the user");
        l.add_contact(T, h(5), false, "ours");
        assert_eq!(
            request(&mut l, T, h(5), false, "theirs"),
            RequestOutcome::Known {
                confirm_with: Some("ours".into())
            }
        );
        assert_eq!(
            request(&mut l, T, h(5), false, "ours"),
            RequestOutcome::Known { confirm_with: None }
        );
        assert_eq!(
            request(&mut l, T, h(5), true, "ours"),
            RequestOutcome::Known { confirm_with: None }
        );
    }

    #[test]
    fn confirmation_from_a_contact_confirms_it() {
        let mut l = ContactList::new();
        l.add_contact(T, h(6), false, "conv");
        l.drain_events();
        assert!(matches!(
            request(&mut l, T, h(6), true, "conv"),
            RequestOutcome::Known { .. }
        ));
        assert!(l.contact(&h(6)).unwrap().confirmed);
        assert_eq!(
            l.drain_events(),
            vec![
                ContactEvent::ContactAdded {
                    account: h(6),
                    confirmed: true
                },
                ContactEvent::Confirmed {
                    from: h(6),
                    conversation_id: "conv".into()
                }
            ]
        );
        // From a stranger, a confirmation is kept as a request but not shown (jamid).
        assert_eq!(request(&mut l, T, h(7), true, "x"), RequestOutcome::Stored);
        assert!(l.requests().contains_key(&h(7)));
        assert!(l.drain_events().is_empty());
    }

    #[test]
    fn accept_and_discard() {
        let mut l = ContactList::new();
        request(&mut l, T, h(8), false, "conv8");
        request(&mut l, T, h(9), false, "conv9");
        assert_eq!(l.accept_request(T + 1, &h(8)).as_deref(), Some("conv8"));
        let c = l.contact(&h(8)).unwrap();
        assert!(c.confirmed && c.is_active() && c.conversation_id == "conv8");
        assert_eq!(l.accept_request(T + 1, &h(8)), None, "request consumed");
        assert!(l.discard_request(&h(9)));
        assert!(!l.discard_request(&h(9)));
        assert!(l.contact(&h(9)).is_none(), "declining adds no contact");
    }

    #[test]
    fn requests_are_bounded() {
        let mut l = ContactList::new();
        for i in 0..MAX_INCOMING_REQUESTS {
            let mut id = [0u8; 20];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            assert_eq!(
                request(&mut l, T, InfoHash(id), false, ""),
                RequestOutcome::Stored
            );
        }
        l.drain_events();
        assert_eq!(request(&mut l, T, h(0xff), false, ""), RequestOutcome::Full);
        assert!(l.drain_events().is_empty());
        assert_eq!(l.requests().len(), MAX_INCOMING_REQUESTS);
        // A listed sender still updates.
        let first = *l.requests().keys().next().unwrap();
        assert_eq!(
            request(&mut l, T - 1, first, false, ""),
            RequestOutcome::Stored
        );
    }

    #[test]
    fn details_are_jamids_get_contacts_maps() {
        let mut l = ContactList::new();
        l.add_contact(T, h(1), true, "c1");
        l.add_contact(T, h(2), false, "");
        l.remove_contact(T + 1, h(2), true);
        l.add_contact(T, h(3), false, "");
        l.remove_contact(T + 1, h(3), false);
        let d = l.details();
        assert_eq!(d.len(), 2, "removed (not banned) contacts are not listed");
        let m = |kv: &[(&str, String)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            d[0],
            m(&[
                ("id", h(1).to_string()),
                ("added", T.to_string()),
                ("conversationId", "c1".into()),
                ("confirmed", "true".into())
            ])
        );
        assert_eq!(
            d[1],
            m(&[
                ("id", h(2).to_string()),
                ("added", T.to_string()),
                ("conversationId", String::new()),
                ("banned", "true".into())
            ])
        );
    }
}

//! Long-term credentials (RFC 5389 §10.2): the first request goes unsigned, the 401
//! brings realm and nonce, every later request carries USERNAME, REALM, NONCE and
//! MESSAGE-INTEGRITY keyed with MD5(username:realm:password); a 438 brings a new nonce.

use stun::{Attribute, Message};

#[derive(Debug, Clone)]
pub(super) struct Auth {
    username: String,
    password: String,
    realm: Option<String>,
    nonce: Option<String>,
    key: Option<[u8; 16]>,
}

impl Auth {
    pub(super) fn new(username: &str, password: &str) -> Self {
        Auth {
            username: username.into(),
            password: password.into(),
            realm: None,
            nonce: None,
            key: None,
        }
    }

    /// Takes realm and nonce from a 401/438 answer. False when they are missing.
    pub(super) fn challenge(&mut self, msg: &Message) -> bool {
        let Some(nonce) = msg.nonce() else {
            return false;
        };
        let realm = match (msg.realm(), &self.realm) {
            (Some(r), _) => r.to_string(),
            (None, Some(r)) => r.clone(),
            (None, None) => return false,
        };
        self.key = Some(stun::long_term_key(&self.username, &realm, &self.password));
        self.realm = Some(realm);
        self.nonce = Some(nonce.to_string());
        true
    }

    pub(super) fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    pub(super) fn key(&self) -> Option<&[u8; 16]> {
        self.key.as_ref()
    }

    /// Encodes `msg`, signed when credentials are known. Returns the bytes and whether
    /// they were signed.
    pub(super) fn encode(&self, msg: &Message) -> (Vec<u8>, bool) {
        match (&self.key, &self.realm, &self.nonce) {
            (Some(key), Some(realm), Some(nonce)) => {
                let mut m = msg.clone();
                m.add(Attribute::Username(self.username.clone()));
                m.add(Attribute::Realm(realm.clone()));
                m.add(Attribute::Nonce(nonce.clone()));
                (m.encode_with(Some(key), true), true)
            }
            _ => (msg.encode_with(None, true), false),
        }
    }
}

//! Contacts and trust requests (PROTOCOLS §4.6): jamid's contact rules, its account
//! files, and the sans-IO manager that sends, receives, accepts and refuses requests
//! over the DHT.

pub mod contact;
pub mod manager;
pub mod store;

pub use contact::{
    Contact, ContactEvent, ContactList, IncomingRequest, RequestOutcome, MAX_INCOMING_REQUESTS,
};
pub use manager::{
    check_sender, inbox_key, ContactManager, Refusal, TrustEvent, TrustStats, MAX_PAYLOAD, SERVICE,
};
pub use store::{load, save, StoreError, CONTACTS_FILE, REQUESTS_FILE};

#[cfg(test)]
mod tests;

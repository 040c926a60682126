//! Device announcements and presence (PROTOCOLS §4.2, §9.5): how a device tells the
//! DHT it belongs to an account, and how a peer decides that account is online.

pub mod announcement;
pub mod receipt;
pub mod tracker;

pub use announcement::{
    announcement_value, check_announcement, check_device, device_chain, Claim, DeviceAnnouncement,
    Rejection, ANNOUNCEMENT_EXPIRATION_MS, ANNOUNCEMENT_TYPE,
};
pub use receipt::{Receipt, ReceiptError};
pub use tracker::{
    DeviceAnnouncer, InboxDht, PresenceDht, PresenceEvent, PresenceStats, PresenceTracker,
};

#[cfg(test)]
mod tests;

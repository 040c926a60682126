//! Local peer discovery (PROTOCOLS.md §9.6): OpenDHT's multicast `PeerDiscovery`, which
//! lets a DHT node bootstrap from another on the same LAN without any internet, and lets
//! Jami accounts see who is nearby. Sans-IO: the driver binds UDP port 8888 (with
//! `SO_REUSEADDR`, as OpenDHT does), joins the group, and moves datagrams and time in
//! and transmits and events out.
//!
//! Behaviour checked in OpenDHT 2.4.12 (`src/peer_discovery.cpp`, `src/dhtrunner.cpp`,
//! `tools/tools_common.h`) and jamid 20230206 (`src/jamidht/jamiaccount.cpp`), and where
//! marked, against the real `dhtnode -D` (`conformance/tests/dhtnode_discovery.rs`) and
//! jamid 13.7 with peer discovery on (`conformance/tests/jamid_discovery.rs`):
//! * Query = msgpack str `"q"` (`a1 71`), sent to the group once when discovery starts
//!   and again on `connectivityChanged`. Nothing else sends it.
//! * Announcement = one msgpack map `{service: payload}` holding **every** published
//!   service, keys in `std::map` (sorted) order. Sent to the group when a service is
//!   published and on `connectivityChanged`; **no periodic re-announcement** (there is
//!   no timer in `peer_discovery.cpp`; dhtnode: silent for 4 s after start until asked).
//! * A query is answered **by unicast** to the querier's source address and port
//!   (`publish(receiveFrom_)`), by anyone publishing, even to its own looped-back query
//!   (dhtnode: it answers a query sent from an ephemeral port to that port).
//! * `"dht"` payload `[nodeId bin20, port, netId]` (`NodeInsertionPack`), the port of the
//!   DHT socket of that address family. A receiver that discovers `"dht"` calls
//!   `bootstrap(nodeId, senderIP:port)` unless `nodeId` is its own (that is how its own
//!   looped-back announcement is ignored: by id, not by address) or the net id differs.
//!   dhtnode's `-D` turns on both discovery and publishing of `"dht"`.
//! * `"jami"` payload `[accountId bin20, displayName str]` (`AccountPeerInfo`); jamid
//!   ignores its own account, keeps the others one minute after the last announcement
//!   (`PEER_DISCOVERY_EXPIRATION`) and ignores the sender address. Since nothing is
//!   re-announced, a Jami peer expires a minute after it was heard unless the network
//!   changes or someone queries again. (jamid: one PeerDiscovery per account carries
//!   both services, so its announcement is `{"dht": …, "jami": …}`; the "dht" port is the
//!   DHT socket's real, OS-chosen port, not the `DHT.port` setting; jamid lists our
//!   account in `getNearbyPeers` after our unicast answer to its startup query.)
//! * Receiving: bytes after the msgpack document are ignored (msgpack-c's `unpack`;
//!   dhtnode answers `"q"` followed by junk); a str other than `"q"` is ignored; map
//!   entries whose key is not a str are skipped; the first payload of a discovered
//!   service that does not convert ends the datagram. Payload arrays shorter than the
//!   struct leave msgpack-c's fields uninitialised: we refuse them instead.
//!
//! Multicast in a test network namespace: joining and sending need a route for the
//! group (`ip route add 239.0.0.0/8 dev IF`); the `multicast` flag on `lo` alone does
//! not help. On `lo` the route also needs `src 127.0.0.1`, or announcements leave from
//! 0.0.0.0. The conformance test uses two namespaces joined by a veth pair instead.

pub mod codec;
pub mod peer_discovery;
#[cfg(test)]
mod tests;

pub use codec::{DecodeError, DhtPayload, JamiPayload, DHT_SERVICE, JAMI_SERVICE};
pub use peer_discovery::{Config, Discover, Event, PeerDiscovery, PublishError, Stats};

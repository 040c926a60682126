//! Account details that keep a jamid account on loopback. jamid's `RING` template
//! points at jami.net servers (bootstrap, TURN, DHT proxy, name server, config lists)
//! and turns UPnP on; these overrides replace every one of them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};

/// Account details as jamid's D-Bus API passes them (`a{ss}`), in key order.
pub type Details = BTreeMap<String, String>;

/// Name server URI used when a test has none: loopback port 9 inside the namespace,
/// where nothing listens. jamid treats an empty `RingNS.uri` as `https://ns.jami.net`,
/// so the key must never be empty.
pub const NO_NAME_SERVER: &str = "http://127.0.0.1:9";

static NEXT_DHT_PORT: AtomicU16 = AtomicU16::new(0);

/// What varies between the loopback accounts a test creates.
#[derive(Debug, Clone)]
pub struct AccountSetup {
    /// DHT bootstrap nodes (`Account.hostname`, `;`-separated); usually the test's dhtnode.
    pub bootstrap: Vec<SocketAddr>,
    /// `RingNS.uri`: a loopback name server, or [`NO_NAME_SERVER`].
    pub name_server: String,
    /// `DHT.port`: distinct per account in one namespace.
    pub dht_port: u16,
    /// `Account.alias`, also sent as `Account.deviceName` (jamid 13.7 ignores that at
    /// creation and names the device after the host name).
    pub alias: String,
    /// Further details applied last (e.g. `Account.archivePath` to import an archive).
    pub extra: Details,
}

impl AccountSetup {
    /// A setup bootstrapping from `bootstrap`, with no name server and a DHT port not
    /// handed out before by this process (4300 and up).
    pub fn new(alias: &str, bootstrap: SocketAddr) -> AccountSetup {
        AccountSetup {
            bootstrap: vec![bootstrap],
            name_server: NO_NAME_SERVER.to_string(),
            dht_port: 4300 + NEXT_DHT_PORT.fetch_add(1, Ordering::SeqCst) % 1000,
            alias: alias.to_string(),
            extra: Details::new(),
        }
    }

    /// Import an existing account instead of creating one: `Account.archivePath` (a file
    /// from `exportToFile`) and its password (`""` for none). jamid gives the imported
    /// account a new device and keeps the Jami id.
    pub fn with_archive(mut self, archive: &std::path::Path, password: &str) -> AccountSetup {
        self.extra.insert(
            "Account.archivePath".into(),
            archive.to_string_lossy().into_owned(),
        );
        self.extra
            .insert("Account.archivePassword".into(), password.into());
        self
    }

    /// Link to an existing account over the DHT (§4.4): `Account.archivePIN` (jamid
    /// 13.7's key; `Account.archivePin` is ignored and a new account is created) and the
    /// archive password the exporter used.
    pub fn with_pin(mut self, pin: &str, password: &str) -> AccountSetup {
        self.extra.insert("Account.archivePIN".into(), pin.into());
        self.extra
            .insert("Account.archivePassword".into(), password.into());
        self
    }

    /// `template` (from `getAccountTemplate("RING")`) with the loopback overrides applied.
    pub fn details(&self, template: &Details) -> Details {
        let mut d = template.clone();
        let hosts: Vec<String> = self.bootstrap.iter().map(|a| a.to_string()).collect();
        let name_server = if self.name_server.trim().is_empty() {
            NO_NAME_SERVER.to_string()
        } else {
            self.name_server.clone()
        };
        let set: [(&str, String); 20] = [
            ("Account.type", "RING".into()),
            ("Account.hostname", hosts.join(";")),
            ("Account.upnpEnabled", "false".into()),
            ("TURN.enable", "false".into()),
            ("TURN.server", String::new()),
            ("Account.proxyEnabled", "false".into()),
            ("Account.proxyServer", String::new()),
            ("Account.dhtProxyListUrl", String::new()),
            ("Account.bootstrapListUrl", String::new()),
            ("Account.peerDiscovery", "false".into()),
            ("Account.accountDiscovery", "false".into()),
            ("Account.accountPublish", "false".into()),
            ("RingNS.uri", name_server),
            ("Account.archivePassword", String::new()),
            ("Account.archiveHasPassword", "false".into()),
            ("DHT.port", self.dht_port.to_string()),
            ("Account.videoEnabled", "false".into()),
            ("Account.ringtoneEnabled", "false".into()),
            ("Account.alias", self.alias.clone()),
            ("Account.deviceName", self.alias.clone()),
        ];
        for (k, v) in set {
            d.insert(k.to_string(), v);
        }
        d.extend(self.extra.clone());
        d
    }
}

/// Hosts outside loopback that jamid's defaults name; a created account's details must
/// mention none of them.
pub const INTERNET_HOSTS: [&str; 3] = ["jami.net", "ring.cx", "savoirfairelinux"];

/// The `(key, value)` pairs of `details` that mention an [`INTERNET_HOSTS`] entry.
pub fn internet_refs(details: &Details) -> Vec<(String, String)> {
    details
        .iter()
        .filter(|(_, v)| INTERNET_HOSTS.iter().any(|h| v.contains(h)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod unit {
    use super::*;

    fn template() -> Details {
        [
            ("Account.hostname", "bootstrap.jami.net"),
            ("TURN.server", "turn.jami.net"),
            ("RingNS.uri", ""),
            ("Account.upnpEnabled", "true"),
            ("Account.displayName", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn overrides_remove_every_internet_default_and_keep_other_keys() {
        let mut s = AccountSetup::new("a", "127.0.0.1:4222".parse().unwrap());
        s.name_server = String::new();
        let d = s.details(&template());
        assert!(internet_refs(&d).is_empty(), "{:?}", internet_refs(&d));
        assert_eq!(d["Account.hostname"], "127.0.0.1:4222");
        assert_eq!(
            d["RingNS.uri"], NO_NAME_SERVER,
            "empty would mean ns.jami.net"
        );
        assert_eq!(d["Account.upnpEnabled"], "false");
        assert_eq!(d["Account.displayName"], "x");
        assert_eq!(internet_refs(&template()).len(), 2);
    }

    #[test]
    fn extra_details_win_and_ports_differ() {
        let mut a = AccountSetup::new("a", "127.0.0.1:1".parse().unwrap());
        let b = AccountSetup::new("b", "127.0.0.1:1".parse().unwrap());
        assert_ne!(a.dht_port, b.dht_port);
        a.extra
            .insert("Account.archivePath".into(), "/tmp/x.gz".into());
        a.bootstrap.push("127.0.0.1:2".parse().unwrap());
        let d = a.details(&Details::new());
        assert_eq!(d["Account.archivePath"], "/tmp/x.gz");
        assert_eq!(d["Account.hostname"], "127.0.0.1:1;127.0.0.1:2");
    }
}

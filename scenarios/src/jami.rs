//! Jami accounts on netsim hosts: identities drawn from the scenario seed, and a forging
//! device behind a DHT proxy (its certificate, announcement or CRL spoiled on purpose) for
//! the tests that show peers refuse forged presence. Honest devices, over UDP or through
//! a proxy, are `node::device::Device` (see [`crate::glue::DhtApp`]).

use crate::glue::EPOCH_MS;
use netsim::{App, ConnId, Ctx, SimTime, TcpEvent};
use node::dht::proxy::json;
use node::dht::secure::certificate_value;
use node::dht::{InfoHash, Value};
use node::identity::{AccountIdentity, CertSigner, DeviceIdentity, RevocationList, Revoked};
use node::presence::announcement_value;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// RSA size of simulated accounts: jamid uses 4096 bits, but a simulation measures
/// topology, not key strength, and 1024-bit keys keep a case under a second.
pub const SIM_KEY_BITS: usize = 1024;

/// Certificates are made at simulated time zero (identity times are unix seconds).
const NOW_S: u64 = EPOCH_MS / 1000;

/// One Jami account with one device.
#[derive(Clone, Debug)]
pub struct JamiIdentity {
    pub account: AccountIdentity,
    pub device: DeviceIdentity,
}

impl JamiIdentity {
    /// The identity of `host`'s account (`role` tells apart several accounts of one
    /// host): keys drawn from the scenario seed, so a seed replays the same ids.
    pub fn derive(seed: u64, host: &str, role: &str) -> anyhow::Result<JamiIdentity> {
        let mut h: u64 = seed ^ 0x6a61_6d69_6964;
        for b in host.bytes().chain([0]).chain(role.bytes()) {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        let mut rng = ChaCha20Rng::seed_from_u64(h);
        let account = AccountIdentity::generate(SIM_KEY_BITS, NOW_S, &mut rng)?;
        let device = account.new_device(SIM_KEY_BITS, NOW_S, &mut rng)?;
        Ok(JamiIdentity { account, device })
    }

    pub fn account_id(&self) -> InfoHash {
        InfoHash(self.account.account_id())
    }

    /// The value id of this device's announcement (from its short id, so a restart
    /// announces under the same id).
    pub fn announcement_id(&self) -> u64 {
        u64::from_be_bytes(self.device.short_id()[..8].try_into().unwrap_or_default()) | 1
    }
}

/// How a device's announcement is spoiled on purpose, to show peers refuse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forgery {
    None,
    /// The announcement at our account id is signed by another account's key.
    Signer,
    /// Our device certificate is issued by another account.
    Issuer,
    /// The account revokes the device and publishes its CRL at the account id.
    Revoked,
}

impl std::str::FromStr for Forgery {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => Forgery::None,
            "signer" => Forgery::Signer,
            "issuer" => Forgery::Issuer,
            "revoked" => Forgery::Revoked,
            o => {
                return Err(format!(
                    "`forge` is none, signer, issuer or revoked, not `{o}`"
                ))
            }
        })
    }
}

/// The values a device puts, in order, at their keys.
pub fn device_puts(
    me: &JamiIdentity,
    other: &JamiIdentity,
    forge: Forgery,
) -> anyhow::Result<Vec<(&'static str, InfoHash, Value)>> {
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from_be_bytes(
        me.account_id().0[..8].try_into().unwrap_or_default(),
    ));
    let mut chain = me.device.chain().to_vec();
    if forge == Forgery::Issuer {
        let cert = other
            .account
            .issue_device(&me.device.key().public_key(), NOW_S, &mut rng)?;
        chain = std::iter::once(cert)
            .chain(other.account.chain().iter().cloned())
            .collect();
    }
    let pem = node::identity::chain::encode_pem_chain(&chain);
    let signer = if forge == Forgery::Signer {
        &other.account
    } else {
        &me.account
    };
    let id = me.announcement_id();
    let mut puts = vec![
        (
            "certificate",
            InfoHash(me.device.short_id()),
            certificate_value(pem.as_bytes()),
        ),
        (
            "announcement",
            me.account_id(),
            announcement_value(signer, &chain[0], id)?,
        ),
    ];
    if forge == Forgery::Revoked {
        let crl = RevocationList::sign(
            CertSigner::Rsa(me.account.account_key()),
            me.account.certificate(),
            &[Revoked {
                serial: chain[0].serial().to_vec(),
                at: NOW_S,
            }],
            None,
            NOW_S,
            &mut rng,
        )?;
        puts.push((
            "crl",
            me.account_id(),
            Value::plain(id ^ 2, 0, crl.to_value_data()),
        ));
    }
    Ok(puts)
}

/// One HTTP exchange with the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyExchange {
    pub what: &'static str,
    pub at: Duration,
    /// `None`: the connection failed or closed without an answer.
    pub status: Option<u16>,
    /// The proxy echoed the value we put.
    pub echoed: bool,
}

/// A forging Jami device behind a proxy, for the tests that show peers refuse forged
/// presence: from `announce_at` it POSTs its certificate, then its device announcement
/// (permanent), then (revoked) its account's CRL, one connection each, spoiled as
/// [`Forgery`] says. An honest device behind a proxy is the one [`node::device::Device`]
/// (a `dht-node` with `proxy`); this app only exists to put what no honest device puts.
pub struct JamiDeviceApp {
    proxy: SocketAddr,
    announce_at: Duration,
    puts: Vec<(&'static str, InfoHash, Value)>,
    open: BTreeMap<ConnId, (usize, Vec<u8>)>,
    pub exchanges: Vec<ProxyExchange>,
}

impl JamiDeviceApp {
    pub fn new(
        proxy: SocketAddr,
        announce_at: Duration,
        puts: Vec<(&'static str, InfoHash, Value)>,
    ) -> Self {
        JamiDeviceApp {
            proxy,
            announce_at,
            puts,
            open: BTreeMap::new(),
            exchanges: Vec::new(),
        }
    }

    /// Every put was answered 200 with our value.
    pub fn announced(&self) -> bool {
        self.exchanges.len() == self.puts.len()
            && self
                .exchanges
                .iter()
                .all(|e| e.status == Some(200) && e.echoed)
    }

    /// Start the next put, if any is left and the last one succeeded. One at a time, in
    /// order: as with jamid, the certificate is on the DHT before the announcement that
    /// makes peers look for it.
    fn next_put(&mut self, cx: &mut Ctx<'_>) {
        let i = self.exchanges.len();
        if i >= self.puts.len() || self.exchanges.last().is_some_and(|e| e.status != Some(200)) {
            return;
        }
        match cx.tcp_connect(self.proxy) {
            Ok(conn) => {
                self.open.insert(conn, (i, Vec::new()));
            }
            Err(_) => self.exchanges.push(ProxyExchange {
                what: self.puts[i].0,
                at: cx.sim_now().since(SimTime::ZERO),
                status: None,
                echoed: false,
            }),
        }
    }

    fn finish(&mut self, cx: &mut Ctx<'_>, conn: netsim::ConnId) {
        let Some((i, buf)) = self.open.remove(&conn) else {
            return;
        };
        let (what, _, value) = &self.puts[i];
        let (status, echoed) = match crate::http::parse_response(&buf) {
            Some((s, body)) => (
                Some(s),
                json::from_json(&body).is_ok_and(|pv| pv.value == *value),
            ),
            None => (None, false),
        };
        cx.trace(&format!("jami-device: {what} -> {status:?}"));
        self.exchanges.push(ProxyExchange {
            what,
            at: cx.sim_now().since(SimTime::ZERO),
            status,
            echoed,
        });
        self.next_put(cx);
    }
}

impl App for JamiDeviceApp {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let age = cx.sim_now().since(SimTime::ZERO);
        cx.set_timer(self.announce_at.saturating_sub(age), 0);
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, _token: u64) {
        self.next_put(cx);
    }

    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        match ev {
            TcpEvent::Connected { conn } => {
                let Some((i, _)) = self.open.get(&conn) else {
                    return;
                };
                let (_, key, value) = &self.puts[*i];
                let mut body = json::to_json(value);
                if let serde_json::Value::Object(m) = &mut body {
                    // jamid's puts through a proxy are all permanent.
                    m.insert("permanent".into(), true.into());
                }
                let req = crate::http::request(
                    "POST",
                    "proxy",
                    &format!("/key/{key}"),
                    Some(&body.to_string()),
                );
                let _ = cx.tcp_send(conn, &req);
            }
            TcpEvent::Data { conn, data } => {
                if let Some((_, buf)) = self.open.get_mut(&conn) {
                    buf.extend_from_slice(&data);
                }
            }
            TcpEvent::PeerClosed { conn } => {
                self.finish(cx, conn);
                cx.tcp_close(conn);
            }
            TcpEvent::Reset { conn, .. } => self.finish(cx, conn),
            TcpEvent::Accepted { .. } => {}
        }
    }

    netsim::app_any!();
}

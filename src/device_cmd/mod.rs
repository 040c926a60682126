//! `jamisim node device`: a Jami device from an account directory (jamid's layout, as
//! `node account` writes it) on real sockets: the same sans-IO [`Device`] the simulator
//! runs, driven by [`DeviceDriver`] (the DHT on UDP, connections on TCP). Commands on
//! stdin, `--json` for scripts; contacts are kept in the directory as jamid keeps them.

mod commands;
mod report;

use crate::account_cmd::{read_archive, ARCHIVE_FILE, DEVICE_CRT_FILE, DEVICE_KEY_FILE};
use crate::node_cmd::Printer;
use anyhow::{Context, Result};
use node::connect::manager::ManagerConfig;
use node::device::{Device, JamiIdentity};
use node::dht::engine::Config;
use node::dht::InfoHash;
use node::driver::{unix_ms, DeviceDriver};
use node::identity::DeviceIdentity;
use rand::{Rng, RngExt};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// Options of `jamisim node device`.
pub struct DeviceOpts {
    pub dir: PathBuf,
    pub password: String,
    pub port: u16,
    pub bind: std::net::IpAddr,
    pub bootstrap: Vec<SocketAddr>,
    pub json: bool,
    /// Addresses offered as ICE host candidates (default: the bind address, or the
    /// address the default route leaves from).
    pub ice_ips: Vec<IpAddr>,
    /// STUN server for server-reflexive candidates.
    pub stun: Option<SocketAddr>,
    /// Accept connections only from contacts (jamid's allowPublicIncoming = false).
    pub contacts_only: bool,
    /// jamid's TURN keys: a relay candidate on each connection.
    pub turn: Option<node::connect::turn::TurnAccountConfig>,
    /// Reach the DHT only through this OpenDHT proxy (HOST:PORT), over TCP.
    pub proxy: Option<SocketAddr>,
    /// OpenDHT's multicast peer discovery on the LAN (port 8888, 239.192.0.1), announcing
    /// the DHT node and the account under this display name.
    pub discovery: Option<String>,
}

/// The TURN client settings from jamid's keys, with `TURN.server` resolved (jamid
/// resolves it too, and uses the first address).
fn turn_client(
    t: &node::connect::turn::TurnAccountConfig,
    seed: u64,
) -> Result<node::connect::turn::ClientConfig> {
    use std::net::ToSocketAddrs;
    let (host, port) = t.host_port().context("--turn")?;
    let server = (host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("resolving the TURN server {host}"))?
        .next()
        .with_context(|| format!("the TURN server {host} has no address"))?;
    let tcp = node::connect::turn::Transport::Tcp;
    Ok(node::connect::turn::ClientConfig::from_account(
        t, server, tcp, tcp, seed,
    ))
}

pub fn run(opts: DeviceOpts) -> Result<()> {
    let archive = read_archive(&opts.dir.join(ARCHIVE_FILE), &opts.password)?;
    let account = archive.account().context("the archive's account")?;
    let key = std::fs::read(opts.dir.join(DEVICE_KEY_FILE)).context(DEVICE_KEY_FILE)?;
    let chain = std::fs::read(opts.dir.join(DEVICE_CRT_FILE)).context(DEVICE_CRT_FILE)?;
    let device = DeviceIdentity::from_pem(&key, &chain).context("the device key and chain")?;
    let mut rng = rand::rng();
    let jami = JamiIdentity {
        account: &account,
        device: &device,
        // As jamid: a random value id for its announcement.
        announcement_id: rng.random::<u64>() | 1,
    };
    let cfg = Config::verifying(InfoHash(rng.random()), rng.next_u64());
    // Through a DHT proxy (jamid's `proxyEnabled`/`proxyServer`): no UDP DHT node at all,
    // as behind Tor, where only TCP leaves.
    let backend = match opts.proxy {
        Some(p) => node::device::DhtBackend::Proxy(p),
        None => node::device::DhtBackend::Udp,
    };
    let mut dev = Device::with_backend(cfg, Some(jami), backend, unix_ms())?;
    let contacts = node::contacts::load(&opts.dir).context("the contacts files")?;
    let ice_ips = if opts.ice_ips.is_empty() {
        vec![default_ip(opts.bind)]
    } else {
        opts.ice_ips.clone()
    };
    let turn = match &opts.turn {
        Some(t) => Some(turn_client(t, rng.next_u64())?),
        None => None,
    };
    let mcfg = ManagerConfig {
        host_ips: ice_ips.clone(),
        stun_server: opts.stun,
        turn: turn.clone(),
        allow_public: !opts.contacts_only,
        seed: rng.next_u64(),
        ..ManagerConfig::default()
    };
    dev.enable_services(unix_ms(), mcfg, contacts);
    let mut d = DeviceDriver::bind(dev, SocketAddr::new(opts.bind, opts.port))
        .with_context(|| format!("binding {}:{}", opts.bind, opts.port))?;
    let out = Printer { json: opts.json };
    let local = d.local_addr()?;
    out.say(
        "started",
        format!(
            "Jami device {} of account {} on {local}",
            hex::encode(device.device_id()),
            account.uri()
        ),
        serde_json::json!({"account": InfoHash(account.account_id()).to_string(), "uri": account.uri(), "device": hex::encode(device.device_id()),
            "addr": local.to_string(), "node": d.dht.dht().map(|n| n.id().to_string()),
            "device_short": hex::encode(device.short_id()),
            "ice_ips": ice_ips.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            "turn": turn.as_ref().map(|t| t.server.to_string())}),
    );
    for b in &opts.bootstrap {
        d.dht.bootstrap(unix_ms(), *b);
    }
    let disc = match &opts.discovery {
        Some(name) => {
            let s = discovery_socket().context("the discovery socket (UDP 8888)")?;
            d.dht.enable_discovery(unix_ms(), local.port(), name);
            Some(s)
        }
        None => None,
    };
    let mut dbuf = vec![0u8; 65_536];
    let lines = crate::node_cmd::stdin_lines();
    loop {
        d.turn(Duration::from_millis(50), &mut |dev, e| {
            report::report(&out, dev, e)
        })?;
        if let Some(s) = &disc {
            while let Ok((n, from)) = s.recv_from(&mut dbuf) {
                d.dht.handle_discovery_datagram(unix_ms(), from, &dbuf[..n]);
            }
            while let Some(t) = d.dht.poll_discovery_transmit() {
                // A lost announcement is what multicast does anyway.
                let _ = s.send_to(&t.bytes, t.to);
            }
        }
        let quit = match lines.try_recv() {
            Ok(line) => !commands::command(&mut d.dht, &line, &out),
            Err(mpsc::TryRecvError::Empty) => false,
            Err(mpsc::TryRecvError::Disconnected) => true,
        };
        save_contacts(&mut d.dht, &opts.dir, &out);
        if quit {
            return Ok(());
        }
    }
}

/// Write the contact files when the list changed (as jamid saves after each change).
fn save_contacts(dev: &mut Device, dir: &std::path::Path, out: &Printer) {
    if let Some(list) = dev.contacts_mut().filter(|l| l.dirty) {
        if let Err(e) = node::contacts::save(dir, list) {
            out.say(
                "error",
                format!("saving contacts: {e}"),
                serde_json::json!({"error": format!("saving contacts: {e}")}),
            );
        }
    }
}

/// UDP 8888 shared with other programs (jamid, dhtnode), in the discovery group,
/// non-blocking: the device loop polls it between turns.
fn discovery_socket() -> Result<UdpSocket> {
    use node::discovery::peer_discovery::{DEFAULT_PORT, GROUP_V4};
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)).into())?;
    s.join_multicast_v4(&GROUP_V4, &std::net::Ipv4Addr::UNSPECIFIED)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// The address to offer as host candidate: the bind address, else the one the default
/// route leaves from (a UDP connect sends nothing), else loopback.
fn default_ip(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

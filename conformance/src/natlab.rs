//! A real-NAT lab of network namespaces: an "internet" bridge, two hosts, and between
//! them nftables NAT routers of the RFC 4787/5382 kinds, so the official programs and
//! our device meet through real Linux NAT (port of the team's reference `nat-lab.sh`).
//!
//! Every namespace is created by [`Lab::build`] and deleted when the [`Lab`] is dropped
//! (its veths and nft tables go with it): nothing outside the lab's own namespaces is
//! touched. IPv6 is off everywhere, and an nft guard in each namespace drops (and counts)
//! any packet addressed outside 127/8 and the lab's documentation ranges.
//!
//! Addresses: the internet 203.0.113.0/24 (dhtnode at .1, STUN at .2; host or router of
//! A at .10, of B at .20); A's LAN 198.51.100.0/24, B's LAN 192.0.2.0/24 (router .1,
//! host .10). `lan`: both hosts on 198.51.100.0/24 (.10, .11) behind one prc router;
//! `hairpin`: both behind one fullcone router on separate LAN ports it does not route
//! between, so only hairpinned traffic (to its public address) passes.

use crate::netns::Netns;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::Stdio;

/// The DHT bootstrap node's address on the lab internet.
pub const DHT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The STUN server's address on the lab internet.
pub const STUN_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// Every destination a lab packet may have; the guard drops the rest.
pub const LAB_NETS: &str = "127.0.0.0/8, 203.0.113.0/24, 198.51.100.0/24, 192.0.2.0/24";

/// One side's NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No NAT: the host is on the internet.
    Public,
    /// Port-restricted cone: masquerade (port-preserving) = endpoint-independent
    /// mapping, address-and-port-dependent filtering.
    Prc,
    /// Symmetric: masquerade fully-random = address-and-port-dependent mapping.
    Sym,
    /// Full cone: masquerade plus a dynamic DNAT map = endpoint-independent mapping and
    /// filtering; hairpins.
    Fullcone,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Public, Kind::Prc, Kind::Sym, Kind::Fullcone];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Public => "public",
            Kind::Prc => "prc",
            Kind::Sym => "sym",
            Kind::Fullcone => "fullcone",
        }
    }

    /// Endpoint-independent mapping (RFC 4787 REQ-1).
    fn eim(self) -> bool {
        matches!(self, Kind::Prc | Kind::Fullcone)
    }

    /// Endpoint-independent filtering.
    fn eif(self) -> bool {
        self == Kind::Fullcone
    }
}

/// A cell of the matrix: A's NAT and B's NAT, or both hosts behind one NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Pair(Kind, Kind),
    /// Both hosts on one LAN behind one prc router.
    Lan,
    /// Both hosts behind one fullcone router that only hairpins between them.
    Hairpin,
}

impl Cell {
    /// Every cell: the 4×4 pairs, then `lan` and `hairpin`.
    pub fn all() -> Vec<Cell> {
        let mut v: Vec<Cell> = Kind::ALL
            .iter()
            .flat_map(|a| Kind::ALL.iter().map(move |b| Cell::Pair(*a, *b)))
            .collect();
        v.extend([Cell::Lan, Cell::Hairpin]);
        v
    }

    pub fn name(self) -> String {
        match self {
            Cell::Pair(a, b) => format!("{}×{}", a.name(), b.name()),
            Cell::Lan => "lan".into(),
            Cell::Hairpin => "hairpin".into(),
        }
    }

    /// Whether a direct TCP path exists for agents like ours (server-reflexive
    /// candidates from STUN, simultaneous-open on the listening port), by the rules of
    /// `netsim::oracle::tcp_path_so_on_listen_port` (RFC 4787/5382):
    /// - a public side, or one LAN: host candidates;
    /// - passive srflx: the listener's NAT maps AND filters endpoint-independently
    ///   (fullcone) — or, once its S-O SYN left through its listening port's mapping,
    ///   maps endpoint-independently and filters at most by address (none of our kinds
    ///   besides fullcone);
    /// - simultaneous open: both NATs map endpoint-independently (prc/fullcone) and drop
    ///   unsolicited SYNs silently (all our routers do: forward policy drop);
    /// - behind one NAT: only through hairpinning, then as for two sides behind it.
    pub fn direct_tcp(self) -> bool {
        match self {
            Cell::Lan => true,
            Cell::Hairpin => Cell::Pair(Kind::Fullcone, Kind::Fullcone).direct_tcp(),
            Cell::Pair(a, b) => {
                a == Kind::Public || b == Kind::Public || a.eif() || b.eif() || (a.eim() && b.eim())
            }
        }
    }

    /// Where jamid ↔ jamid connects with TURN off (the team's measured reference,
    /// jamid 13.7: host and peer-reflexive candidates only, no srflx, no S-O): one side
    /// public, or one LAN.
    pub fn jamid_reference(self) -> bool {
        match self {
            Cell::Lan => true,
            Cell::Hairpin => false,
            Cell::Pair(a, b) => a == Kind::Public || b == Kind::Public,
        }
    }
}

/// The lab's namespaces for one cell. Drop order = field order: hosts, routers, the
/// internet (each namespace deletion takes its veths and nft tables along).
pub struct Lab {
    pub cell: Cell,
    /// Host A's namespace and the address our host candidates use.
    pub a: Netns,
    pub a_ip: Ipv4Addr,
    pub b: Netns,
    pub b_ip: Ipv4Addr,
    routers: Vec<Netns>,
    /// The internet: a bridge with the dhtnode and STUN addresses.
    pub wan: Netns,
}

fn ip(ns: &Netns, args: &[&str]) -> Result<()> {
    let out = ns
        .command("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "{}: ip {}: {}",
            ns.name(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn sysctl(ns: &Netns, kv: &str) -> Result<()> {
    let st = ns.command("sysctl").args(["-qw", kv]).status()?;
    if !st.success() {
        bail!("{}: sysctl {kv} failed", ns.name());
    }
    Ok(())
}

/// Load an nft ruleset into `ns`.
pub fn nft(ns: &Netns, rules: &str) -> Result<()> {
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{}: nft: {}\n{rules}",
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A veth pair from `a` (`an`) to `b` (`bn`), created inside the namespaces, both up.
fn veth(a: &Netns, an: &str, b: &Netns, bn: &str) -> Result<()> {
    ip(
        a,
        &[
            "link",
            "add",
            an,
            "type",
            "veth",
            "peer",
            "name",
            bn,
            "netns",
            b.name(),
        ],
    )?;
    sysctl(a, &format!("net.ipv6.conf.{an}.disable_ipv6=1"))?;
    sysctl(b, &format!("net.ipv6.conf.{bn}.disable_ipv6=1"))?;
    ip(a, &["link", "set", an, "up"])?;
    ip(b, &["link", "set", bn, "up"])
}

/// The guard: output and forwarded packets to a non-lab destination are counted and dropped.
fn guard(ns: &Netns) -> Result<()> {
    nft(
        ns,
        &format!(
            "table ip natlab_guard {{
  chain guard_out {{ type filter hook output priority 0; policy accept;
    ip daddr {{ {LAB_NETS} }} accept
    counter drop comment \"not a lab address\"
  }}
  chain guard_fwd {{ type filter hook forward priority -10; policy accept;
    ip daddr {{ {LAB_NETS} }} accept
    counter drop comment \"not a lab address\"
  }}
}}"
        ),
    )
}

/// Packets the guard of `ns` dropped (non-lab destinations).
pub fn guard_drops(ns: &Netns) -> u64 {
    let out = ns
        .command("nft")
        .args(["list", "table", "ip", "natlab_guard"])
        .output();
    let Ok(out) = out else { return 0 };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.position(|x| x == "packets")?;
            w.next()?.parse::<u64>().ok()
        })
        .sum()
}

/// The router's NAT of `kind` between `wan0` and its `lan*` ports. `hairpin_only`: LAN
/// ports do not route to each other, only hairpinned (DNATed) traffic passes.
fn nat_rules(ns: &Netns, kind: Kind, public: Ipv4Addr, hairpin_only: bool) -> Result<()> {
    let masq = if kind == Kind::Sym {
        "masquerade fully-random"
    } else {
        "masquerade"
    };
    let (mut maps, mut pre, mut upd, mut fwd, mut hp) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    if kind == Kind::Fullcone {
        maps = "
  map fc_udp { type inet_service : ipv4_addr; flags dynamic,timeout; timeout 300s; }
  map fc_tcp { type inet_service : ipv4_addr; flags dynamic,timeout; timeout 300s; }"
            .into();
        // Endpoint-independent filtering: anything sent to a mapping goes to its owner
        // (masquerade keeps a lone host's port, so external port = internal port).
        pre = format!(
            "
    ip daddr {public} dnat ip to udp dport map @fc_udp
    ip daddr {public} dnat ip to tcp dport map @fc_tcp"
        );
        upd = "
    iifname \"lan*\" oifname \"wan0\" update @fc_udp { udp sport timeout 300s : ip saddr }
    iifname \"lan*\" oifname \"wan0\" update @fc_tcp { tcp sport timeout 300s : ip saddr }
    iifname \"lan*\" ct status dnat update @fc_udp { udp sport timeout 300s : ip saddr }
    iifname \"lan*\" ct status dnat update @fc_tcp { tcp sport timeout 300s : ip saddr }"
            .into();
        fwd = "
    ct status dnat accept"
            .into();
        // Hairpinning (RFC 4787 REQ-9): LAN -> own public address -> LAN, from it.
        hp = format!(
            "
    iifname \"lan*\" oifname \"lan*\" ct status dnat snat ip to {public}"
        );
    }
    let mut lanfwd = "iifname \"lan*\" oifname \"wan0\" accept".to_string();
    if !hairpin_only {
        lanfwd.push_str("\n    iifname \"lan*\" oifname \"lan*\" accept");
    }
    sysctl(ns, "net.ipv4.ip_forward=1")?;
    nft(
        ns,
        &format!(
            "table ip natlab {{{maps}
  chain nat_pre {{ type nat hook prerouting priority -100; policy accept;{pre}
  }}
  chain filter_fwd {{ type filter hook forward priority 0; policy drop;{upd}
    ct state established,related accept{fwd}
    {lanfwd}
    counter comment \"dropped (filtering)\"
  }}
  chain nat_post {{ type nat hook postrouting priority 100; policy accept;
    oifname \"wan0\" {masq}{hp}
  }}
  chain filter_in {{ type filter hook input priority 0; policy accept;
    ct state established,related accept
    icmp type echo-request accept
    iifname \"wan0\" counter drop comment \"unsolicited, silently dropped\"
  }}
}}"
        ),
    )
}

/// A new namespace with IPv4 forwarding off and the guard loaded.
fn mkns(prefix: &str) -> Result<Netns> {
    let ns = Netns::create(prefix)?;
    sysctl(&ns, "net.ipv4.ip_forward=0")?;
    Ok(ns)
}

impl Lab {
    /// Build the namespaces of `cell`.
    pub fn build(cell: Cell) -> Result<Lab> {
        let wan = mkns("nlwan")?;
        ip(
            &wan,
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        )?;
        sysctl(&wan, "net.ipv6.conf.br0.disable_ipv6=1")?;
        ip(
            &wan,
            &["addr", "add", &format!("{DHT_IP}/24"), "dev", "br0"],
        )?;
        ip(
            &wan,
            &["addr", "add", &format!("{STUN_IP}/24"), "dev", "br0"],
        )?;
        ip(&wan, &["link", "set", "br0", "up"])?;
        guard(&wan)?;
        // Attach `ns` to the internet: `ifname` there at `addr`, `wname` on the bridge.
        let attach = |ns: &Netns, ifname: &str, wname: &str, addr: Ipv4Addr| -> Result<()> {
            veth(ns, ifname, &wan, wname)?;
            ip(&wan, &["link", "set", wname, "master", "br0"])?;
            ip(ns, &["addr", "add", &format!("{addr}/24"), "dev", ifname])?;
            ip(ns, &["route", "add", "default", "via", &DHT_IP.to_string()])
        };
        // Host `h` behind router `r`: `rif` in the router, eth0 in the host.
        let behind = |h: &Netns, r: &Netns, rif: &str, net: [u8; 3]| -> Result<Ipv4Addr> {
            let [x, y, z] = net;
            let (hip, rip) = (Ipv4Addr::new(x, y, z, 10), Ipv4Addr::new(x, y, z, 1));
            veth(r, rif, h, "eth0")?;
            ip(r, &["addr", "add", &format!("{rip}/24"), "dev", rif])?;
            ip(h, &["addr", "add", &format!("{hip}/24"), "dev", "eth0"])?;
            ip(h, &["route", "add", "default", "via", &rip.to_string()])?;
            Ok(hip)
        };
        let pub_a = Ipv4Addr::new(203, 0, 113, 10);
        let pub_b = Ipv4Addr::new(203, 0, 113, 20);
        let (a, b) = (mkns("nlha")?, mkns("nlhb")?);
        let mut routers = Vec::new();
        let (a_ip, b_ip);
        match cell {
            Cell::Lan | Cell::Hairpin => {
                let r = mkns("nlr")?;
                attach(&r, "wan0", "r-w", pub_a)?;
                if cell == Cell::Lan {
                    ip(
                        &r,
                        &[
                            "link",
                            "add",
                            "lan0",
                            "type",
                            "bridge",
                            "mcast_snooping",
                            "0",
                        ],
                    )?;
                    sysctl(&r, "net.ipv6.conf.lan0.disable_ipv6=1")?;
                    ip(&r, &["addr", "add", "198.51.100.1/24", "dev", "lan0"])?;
                    ip(&r, &["link", "set", "lan0", "up"])?;
                    a_ip = Ipv4Addr::new(198, 51, 100, 10);
                    b_ip = Ipv4Addr::new(198, 51, 100, 11);
                    for (h, port, hip) in [(&a, "lanp-a", a_ip), (&b, "lanp-b", b_ip)] {
                        veth(&r, port, h, "eth0")?;
                        ip(&r, &["link", "set", port, "master", "lan0"])?;
                        ip(h, &["addr", "add", &format!("{hip}/24"), "dev", "eth0"])?;
                        ip(h, &["route", "add", "default", "via", "198.51.100.1"])?;
                    }
                    nat_rules(&r, Kind::Prc, pub_a, false)?;
                } else {
                    a_ip = behind(&a, &r, "lan-a", [198, 51, 100])?;
                    b_ip = behind(&b, &r, "lan-b", [192, 0, 2])?;
                    nat_rules(&r, Kind::Fullcone, pub_a, true)?;
                }
                guard(&r)?;
                routers.push(r);
            }
            Cell::Pair(ka, kb) => {
                let mut addrs = [Ipv4Addr::UNSPECIFIED; 2];
                for (i, (h, kind, public, lan, tag)) in [
                    (&a, ka, pub_a, [198, 51, 100], "a"),
                    (&b, kb, pub_b, [192, 0, 2], "b"),
                ]
                .into_iter()
                .enumerate()
                {
                    if kind == Kind::Public {
                        attach(h, "eth0", &format!("h{tag}-w"), public)?;
                        addrs[i] = public;
                    } else {
                        let r = mkns(&format!("nlr{tag}"))?;
                        attach(&r, "wan0", &format!("r{tag}-w"), public)?;
                        addrs[i] = behind(h, &r, "lan0", lan)?;
                        nat_rules(&r, kind, public, false)?;
                        guard(&r)?;
                        routers.push(r);
                    }
                }
                (a_ip, b_ip) = (addrs[0], addrs[1]);
            }
        }
        guard(&a)?;
        guard(&b)?;
        Ok(Lab {
            cell,
            a,
            a_ip,
            b,
            b_ip,
            routers,
            wan,
        })
    }

    /// Packets any guard of the lab dropped (something tried to leave the lab).
    pub fn guard_drops(&self) -> u64 {
        [&self.a, &self.b, &self.wan]
            .into_iter()
            .chain(self.routers.iter())
            .map(guard_drops)
            .sum()
    }
}

/// Whether the lab can run here (root, `ip`, `nft`); applies the skip rule when not.
pub fn natlab_or_skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        crate::skip_or_fail("SKIP: the NAT lab needs root (network namespaces, nftables)");
        return false;
    }
    for (prog, arg) in [("ip", "-V"), ("nft", "--version")] {
        let ok = std::process::Command::new(prog)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            crate::skip_or_fail(&format!(
                "SKIP: the NAT lab needs `{prog}` (apt-get install iproute2 nftables)"
            ));
            return false;
        }
    }
    true
}

#[cfg(test)]
mod unit {
    use super::*;
    use Kind::*;

    #[test]
    fn direct_tcp_follows_the_rfc_rules() {
        let yes = [
            (Public, Sym),
            (Sym, Public),
            (Prc, Prc),
            (Prc, Fullcone),
            (Sym, Fullcone),
            (Fullcone, Sym),
        ];
        let no = [(Sym, Sym), (Prc, Sym), (Sym, Prc)];
        for (a, b) in yes {
            assert!(Cell::Pair(a, b).direct_tcp(), "{a:?} {b:?}");
        }
        for (a, b) in no {
            assert!(!Cell::Pair(a, b).direct_tcp(), "{a:?} {b:?}");
        }
        assert!(Cell::Lan.direct_tcp() && Cell::Hairpin.direct_tcp());
        // jamid (no srflx, no S-O) needs a public side or one LAN.
        assert!(!Cell::Pair(Prc, Prc).jamid_reference());
        assert!(Cell::Pair(Prc, Public).jamid_reference() && Cell::Lan.jamid_reference());
        assert!(!Cell::Hairpin.jamid_reference());
        assert_eq!(Cell::all().len(), 18);
    }
}

//! Our pcaps must be real captures: tshark (Wireshark's decoder) reads them, finds valid
//! IP/UDP/TCP checksums, dissects the STUN traffic as STUN and sees the same packets
//! we recorded. Skips without tshark unless JAMISIM_REQUIRE_PEERS=1.

use netsim::apps::discovery::NatDiscovery;
use netsim::apps::echo::Echo;
use netsim::apps::probe::TcpProbe;
use netsim::apps::stun_server::StunServer;
use netsim::{HostOpts, NatConfig, Sim, SimConfig};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

fn tshark() -> Option<&'static str> {
    let found = Command::new("tshark")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        return Some("tshark");
    }
    let msg = "SKIP: tshark not installed (apt-get install tshark)";
    if std::env::var("JAMISIM_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{msg}, and JAMISIM_REQUIRE_PEERS=1 requires it");
    }
    eprintln!("{msg}");
    None
}

fn fields(file: &std::path::Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args([
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
    ]);
    if !filter.is_empty() {
        cmd.args(["-Y", filter]);
    }
    cmd.args(["-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn tshark_decodes_our_captures() {
    let Some(_) = tshark() else { return };
    let mut sim = Sim::new(SimConfig {
        seed: 5,
        capture: true,
        ..Default::default()
    });
    let stun = sim.add_host(
        "stun",
        HostOpts {
            extra_addrs: 1,
            ..Default::default()
        },
    );
    let echo = sim.add_host("echo", HostOpts::default());
    let nat = sim.add_nat(
        "home",
        NatConfig::default(),
        None,
        Default::default(),
        Default::default(),
    );
    let client = sim.add_host(
        "client",
        HostOpts {
            behind: Some(nat),
            ..Default::default()
        },
    );
    let stun_addr = SocketAddr::new(sim.host(stun).unwrap().addrs[0], 3478);
    let echo_addr = SocketAddr::new(sim.host(echo).unwrap().addrs[0], 7);
    sim.add_app(stun, || Box::new(StunServer::new(3478, 3479)));
    sim.add_app(echo, || Box::new(Echo::new(7)));
    sim.add_app(client, move || Box::new(NatDiscovery::new(stun_addr)));
    sim.add_app(client, move || Box::new(TcpProbe::new(echo_addr, 20_000)));
    sim.run_for(Duration::from_secs(15));

    let dir = std::env::temp_dir().join(format!("jamisim-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (host, pcap) in sim.pcaps() {
        let file = dir.join(format!("{host}.pcap"));
        std::fs::write(&file, pcap.bytes()).unwrap();
        let all = fields(&file, "", &["frame.number"]);
        assert_eq!(
            all.len() as u64,
            pcap.packets,
            "{host}: tshark sees every packet we recorded"
        );
        let bad = fields(&file, "ip.checksum.status == 2 || udp.checksum.status == 2 || tcp.checksum.status == 2 || _ws.malformed", &["frame.number"]);
        assert!(
            bad.is_empty(),
            "{host}: bad checksums or malformed frames: {bad:?}"
        );
    }
    let client_pcap = dir.join("client.pcap");
    let stun_msgs = fields(&client_pcap, "stun", &["stun.type"]);
    assert!(
        stun_msgs.len() >= 8,
        "STUN requests and responses dissected: {stun_msgs:?}"
    );
    let tcp_syn = fields(
        &client_pcap,
        "tcp.flags.syn == 1 && tcp.flags.ack == 0",
        &["ip.src", "tcp.dstport"],
    );
    assert_eq!(
        tcp_syn.first().map(|s| s.ends_with("\t7")),
        Some(true),
        "a SYN to the echo port: {tcp_syn:?}"
    );
    let stun_pcap = dir.join("stun.pcap");
    let xor_mapped = fields(&stun_pcap, "stun.att.ipv4-xord", &["stun.att.ipv4"]);
    let wan = sim.nat_mut(nat).unwrap().wan.to_string();
    // Per response: MAPPED-ADDRESS, XOR-MAPPED-ADDRESS (decoded), RESPONSE-ORIGIN, OTHER-ADDRESS.
    assert!(!xor_mapped.is_empty());
    for line in &xor_mapped {
        assert!(
            line.starts_with(&format!("{wan},{wan},")),
            "tshark decodes the mapped addresses as the NAT's {wan}: {line}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

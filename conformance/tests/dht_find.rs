//! `find` answers against the official `dhtnode` (OpenDHT 2.4.12): in one small network,
//! a probe asks dhtnode and our node for the nodes closest to many targets. dhtnode's
//! answers must be exactly what OpenDHT's rule (`findClosestNodes`: good nodes, bucket
//! walk, 8 closest) gives on the table dhtnode dumps (`lr`) right after, and ours exactly
//! what the same rule gives on our table: for the same table we answer as dhtnode does.

use conformance::dhtnode::DhtNode;
use conformance::netns::Netns;
use node::dht::engine::{Config, Dht, Event};
use node::dht::routing::walk_closest;
use node::dht::wire::{self, Find, Message, MessageBody};
use node::dht::InfoHash;
use node::driver::{unix_ms, UdpDriver};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const DHTNODE_PORT: u16 = 4240;
const OUR_NODES: u16 = 32;
const TARGETS: usize = 24;

fn node(i: u16) -> Dht {
    Dht::new(
        Config {
            id: InfoHash::get(format!("find-{i}")),
            network: 0,
            seed: u64::from(i),
            verify: None,
        },
        unix_ms(),
    )
}

/// A table as dumped: buckets in id order, each the ids of its good nodes.
type Table = (Vec<[u8; 20]>, Vec<Vec<[u8; 20]>>);

/// Parse dhtnode's `lr` (IPv4 part): `<first> count: N ...` bucket lines, then
/// `    Node <id> <addr> ... [good]` lines.
fn parse_lr(text: &str) -> Table {
    let v4 = text
        .split("IPv4 routing table:")
        .last()
        .unwrap_or("")
        .split("IPv6 routing table:")
        .next()
        .unwrap_or("");
    let (mut firsts, mut buckets) = (Vec::new(), Vec::<Vec<[u8; 20]>>::new());
    for line in v4.lines() {
        let t = line.trim();
        let word = t.split_whitespace().next().unwrap_or("");
        if word.len() == 40 && t.contains(" count: ") {
            if let Ok(h) = word.parse::<InfoHash>() {
                firsts.push(h.0);
                buckets.push(Vec::new());
            }
        } else if let Some(rest) = t.strip_prefix("Node ") {
            let id = rest.split_whitespace().next().unwrap_or("");
            if let (Ok(h), Some(b)) = (id.parse::<InfoHash>(), buckets.last_mut()) {
                if t.contains("[good]") {
                    b.push(h.0);
                }
            }
        }
    }
    (firsts, buckets)
}

/// OpenDHT's answer rule on a dumped table.
fn expected(table: &Table, target: &[u8; 20]) -> Vec<[u8; 20]> {
    let (firsts, buckets) = table;
    let start = firsts.partition_point(|f| f <= target).saturating_sub(1);
    let refs: Vec<Vec<&[u8; 20]>> = buckets.iter().map(|b| b.iter().collect()).collect();
    walk_closest(&refs, start, target, 8, |n| n)
        .into_iter()
        .copied()
        .collect()
}

/// Commands for the compared node's thread.
enum Cmd {
    Get(InfoHash),
    Table(mpsc::Sender<Table>),
}

/// Ask `to` for the nodes closest to `target`; the ids in its answer, in order. UDP: a
/// request may be lost (or dropped by a busy node's rate limit), so it is sent again,
/// with the same transaction id, up to 3 times.
fn ask(probe: &UdpSocket, to: SocketAddr, tid: u32, target: InfoHash) -> Vec<[u8; 20]> {
    let msg = Message {
        tid,
        network: 0,
        is_client: false,
        body: MessageBody::Find(Find {
            id: InfoHash::get("find-probe"),
            target,
            want: None,
        }),
    };
    let mut buf = [0u8; 4096];
    for _attempt in 0..3 {
        probe.send_to(&wire::encode(&msg), to).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let Ok((n, from)) = probe.recv_from(&mut buf) else {
                continue;
            };
            if let Ok(Message {
                tid: t,
                body: MessageBody::Reply(r),
                ..
            }) = wire::decode(&buf[..n])
            {
                if t == tid && from == to {
                    return r.nodes4.iter().map(|n| n.id.0).collect();
                }
            }
        }
    }
    panic!("no answer to find {tid} from {to} after 3 attempts");
}

#[test]
fn find_answers_the_closest_nodes_as_dhtnode_does_for_the_same_table() {
    if !conformance::dhtnode_or_skip() {
        return;
    }
    let ns = Netns::create("jsfind").expect("namespace");
    let mut official = DhtNode::start(&ns, DHTNODE_PORT, None, false).expect("dhtnode starts");
    let worker = ns.spawn(move || {
        let dhtnode = SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT));
        // Each of our nodes on a thread of its own (threads inherit the namespace), so
        // each answers promptly; node 0 also takes commands.
        let stop = Arc::new(AtomicBool::new(false));
        let mut compared = None;
        let threads: Vec<_> = (0..OUR_NODES)
            .map(|i| {
                let (tx, rx) = mpsc::channel::<Cmd>();
                if i == 0 {
                    compared = Some(tx);
                }
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let addr = SocketAddr::from(([127, 0, 0, 1], 4250 + i));
                    let mut d = UdpDriver::bind(node(i), addr).unwrap();
                    d.dht.bootstrap(unix_ms(), dhtnode);
                    while !stop.load(Ordering::Relaxed) {
                        d.turn(Duration::from_millis(10), &mut |_, _: Event| {})
                            .unwrap();
                        while let Ok(cmd) = rx.try_recv() {
                            match cmd {
                                Cmd::Get(k) => {
                                    d.dht.get(unix_ms(), k);
                                }
                                Cmd::Table(reply) => {
                                    let now = unix_ms();
                                    let table: Table = d
                                        .dht
                                        .routing_table()
                                        .buckets()
                                        .map(|(f, ns)| {
                                            let good = ns.iter().filter(|n| n.is_good(now));
                                            (*f, good.map(|n| n.id).collect::<Vec<_>>())
                                        })
                                        .unzip();
                                    reply.send(table).unwrap();
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        let compared = compared.unwrap();
        std::thread::sleep(Duration::from_secs(4));
        // Gets (dhtnode's and our compared node's) make them ask, and so confirm, the
        // nodes they heard of.
        for k in 0..6 {
            official.command(&format!("g warmup-{k}")).unwrap();
            compared
                .send(Cmd::Get(InfoHash::get(format!("our-warmup-{k}"))))
                .unwrap();
            std::thread::sleep(Duration::from_millis(700));
        }
        std::thread::sleep(Duration::from_secs(2));

        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let ours = SocketAddr::from(([127, 0, 0, 1], 4250));
        let targets: Vec<InfoHash> = (0..TARGETS)
            .map(|i| InfoHash::get(format!("target-{i}")))
            .collect();
        let mut rounds = Vec::new();
        for round in 0..3u32 {
            let official_answers: Vec<Vec<[u8; 20]>> = targets
                .iter()
                .enumerate()
                .map(|(i, t)| ask(&probe, dhtnode, round * 1000 + i as u32 + 1, *t))
                .collect();
            let at = official.log_len();
            official.command("lr").unwrap();
            let dump = official
                .wait_for(at, "IPv6 routing table:", Duration::from_secs(5))
                .expect("dhtnode dumps its table");
            let official_table = parse_lr(&dump);
            let our_answers: Vec<Vec<[u8; 20]>> = targets
                .iter()
                .enumerate()
                .map(|(i, t)| ask(&probe, ours, round * 1000 + 500 + i as u32, *t))
                .collect();
            let (tx, rx) = mpsc::channel();
            compared.send(Cmd::Table(tx)).unwrap();
            let our_table = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            rounds.push((official_answers, official_table, our_answers, our_table));
            std::thread::sleep(Duration::from_millis(500));
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        rounds
    });
    let rounds = worker.join().expect("our nodes ran");
    let targets: Vec<InfoHash> = (0..TARGETS)
        .map(|i| InfoHash::get(format!("target-{i}")))
        .collect();
    let mut clean_round = false;
    let mut report = String::new();
    for (r, (official_answers, official_table, our_answers, our_table)) in rounds.iter().enumerate()
    {
        let good: usize = official_table.1.iter().map(Vec::len).sum();
        let our_good: usize = our_table.1.iter().map(Vec::len).sum();
        assert!(
            good > 16 && official_table.0.len() >= 3,
            "dhtnode knows enough good nodes in several buckets for the rule to matter: \
             {good} good in {} buckets",
            official_table.0.len()
        );
        assert!(our_good > 8, "our node knows {our_good} good nodes");
        let (mut official_ok, mut walk_matters) = (0, 0);
        for (t, a) in targets.iter().zip(official_answers) {
            official_ok += usize::from(*a == expected(official_table, &t.0));
            // Where the bucket walk gives other nodes than the plain 8 closest.
            let flat: Table = (vec![[0; 20]], vec![official_table.1.concat()]);
            walk_matters += usize::from(expected(&flat, &t.0) != expected(official_table, &t.0));
        }
        // Ours must follow the rule exactly, every time.
        for (t, a) in targets.iter().zip(our_answers) {
            assert_eq!(
                *a,
                expected(our_table, &t.0),
                "our answer for {t} is the official rule on our table"
            );
        }
        report += &format!("round {r}: dhtnode matched the rule for {official_ok}/{TARGETS} targets ({good} good nodes, {} buckets; the bucket walk differs from the plain 8 closest for {walk_matters})\n", official_table.0.len());
        // dhtnode's table can change between an answer and its dump (a node turning
        // good), so one round in which every answer matches is required.
        clean_round |= official_ok == TARGETS;
    }
    eprint!("{report}");
    assert!(
        clean_round,
        "dhtnode's answers follow the rule we implement:\n{report}"
    );
}

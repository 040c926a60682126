//! `jamisim`: run scenario suites in the simulator, replay a failing seed, merge shard
//! reports.

mod account_cmd;
mod device_cmd;
mod nameserver_cmd;
mod node_cmd;
mod node_proxy_cmd;
mod proxy_cmd;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use scenarios::{runner, RunOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(
    name = "jamisim",
    version,
    about = "Jami reference node, deterministic network simulator and scenario suites"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenario suites in simulation and write a report (all suites by default).
    Run {
        /// Suites (`netsim`), scenarios (`netsim/tor`, `netsim/hole-punch[a=none,b=eim-eif]`) or scenario files.
        targets: Vec<String>,
        /// Run every case with this seed.
        #[arg(long, conflicts_with = "seeds")]
        seed: Option<u64>,
        /// Run every case with seeds 1..=N.
        #[arg(long)]
        seeds: Option<u64>,
        /// Run only shard I of N (1-based), e.g. `--shard 2/4`.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<(u32, u32)>,
        /// Report directory (default: reports/runs/<run-id>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Parallel simulations (default: number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Write a pcap per host for every case (scenarios may ask for it themselves).
        #[arg(long)]
        pcap: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Run one case with one seed again, keeping its full trace and pcaps.
    Replay {
        /// Scenario id as printed by `run`, e.g. `netsim/hole-punch[a=none,b=eim-eif]`.
        id: String,
        #[arg(long)]
        seed: u64,
        /// The scenario file, when it is not a built-in suite.
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the scenarios (and matrix cases) the targets select.
    List { targets: Vec<String> },
    /// Run a real node on real sockets.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Reports: merge the results of sharded runs.
    Report {
        #[command(subcommand)]
        cmd: ReportCmd,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// An OpenDHT-compatible DHT node; commands on stdin as in OpenDHT's dhtnode
    /// (g, p, s, l, b, ll, lr, la, x; h for help).
    Dht {
        #[arg(long, default_value_t = 4222)]
        port: u16,
        #[arg(long, default_value = "0.0.0.0")]
        bind: std::net::IpAddr,
        /// A node to join through (repeatable).
        #[arg(long)]
        bootstrap: Vec<SocketAddr>,
        /// Directory holding the node's key (created on first use); enables `s`.
        #[arg(long)]
        identity: Option<PathBuf>,
        /// Print every result as one JSON object per line.
        #[arg(long)]
        json: bool,
        /// Use the DHT through this DHT proxy (HOST:PORT, ours or OpenDHT's) instead of
        /// joining it over UDP, as `dhtnode --proxyclient` does.
        #[arg(long, conflicts_with = "bootstrap")]
        proxy: Option<String>,
    },
    /// A Jami device from an account directory (as `node account` writes it, jamid's
    /// layout): announces itself on the UDP DHT, follows presence, sends and answers
    /// trust requests, connects to contacts' devices (ICE-TCP, TLS, channels) and
    /// exchanges text messages. Commands on stdin: add, accept, decline, ban, remove,
    /// contacts, requests, connect, msg, connections, track, untrack, presence, ll, x.
    Device {
        /// The account directory (archive.gz, ring_device.key, ring_device.crt).
        #[arg(long)]
        dir: PathBuf,
        /// The archive password (empty = none).
        #[arg(long, default_value = "")]
        password: String,
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value = "0.0.0.0")]
        bind: std::net::IpAddr,
        /// A DHT node to join through (repeatable).
        #[arg(long)]
        bootstrap: Vec<SocketAddr>,
        /// Print every result as one JSON object per line.
        #[arg(long)]
        json: bool,
        /// Address offered as ICE host candidate (repeatable; default: the bind
        /// address, or the one the default route leaves from).
        #[arg(long = "ice-ip")]
        ice_ip: Vec<std::net::IpAddr>,
        /// STUN server (HOST:PORT) for server-reflexive candidates.
        #[arg(long)]
        stun: Option<SocketAddr>,
        /// Accept connections only from contacts (jamid's allowPublicIncoming off).
        #[arg(long)]
        contacts_only: bool,
        /// Reach the DHT only through this OpenDHT proxy (HOST:PORT; jamid's
        /// `proxyServer`), over TCP: no UDP DHT node, as behind Tor.
        #[arg(long, value_name = "HOST:PORT")]
        proxy: Option<SocketAddr>,
        /// TURN server for relay candidates, as jamid's `TURN.server` (HOST[:PORT], port
        /// 3478 by default): each connection gets an RFC 6062 TCP allocation.
        #[arg(long, value_name = "HOST[:PORT]")]
        turn: Option<String>,
        /// jamid's `TURN.username`.
        #[arg(long, default_value = "ring")]
        turn_user: String,
        /// jamid's `TURN.password`.
        #[arg(long, default_value = "ring")]
        turn_password: String,
        /// jamid's `TURN.realm`.
        #[arg(long, default_value = "ring")]
        turn_realm: String,
        /// Find devices and DHT nodes on the LAN by OpenDHT's multicast peer discovery
        /// (UDP 8888), announcing this device under NAME.
        #[arg(long, value_name = "NAME")]
        discovery: Option<String>,
    },
    /// A Jami name server (HTTP: GET /name/<name>, GET /addr/<addr>, POST /name/<name>).
    Nameserver {
        #[arg(long, default_value_t = 8089)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// The registration file (append-only JSON lines; created on first use).
        #[arg(long)]
        db: PathBuf,
    },
    /// An OpenDHT-compatible DHT proxy (REST: GET /node/info, GET /key/<hash>[/listen],
    /// POST /key/<hash>) backed by our DHT node on UDP.
    Proxy {
        /// HTTP port.
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// UDP port of the DHT node behind it (0: any).
        #[arg(long, default_value_t = 0)]
        dht_port: u16,
        /// A node to join through, HOST:PORT (repeatable).
        #[arg(long)]
        bootstrap: Vec<String>,
        #[arg(long, default_value = "0.0.0.0")]
        bind: std::net::IpAddr,
    },
    /// Jami accounts on disk: create, show, export, import, revoke a device. The
    /// directory holds archive.gz, ring_device.key and ring_device.crt, as jamid's does.
    Account {
        #[command(subcommand)]
        cmd: AccountCmd,
    },
}

/// Options every `node account` subcommand takes.
#[derive(clap::Args)]
struct AccountArgs {
    /// The account directory.
    #[arg(long, default_value = "jami-account")]
    dir: PathBuf,
    /// The archive password (empty = none, a plain gzip archive).
    #[arg(long, default_value = "")]
    password: String,
    /// RSA key size of new keys; jamid uses 4096. Smaller sizes are for tests only.
    #[arg(long, default_value_t = node::identity::account::JAMI_RSA_BITS, hide = true)]
    bits: usize,
}

#[derive(Subcommand)]
enum AccountCmd {
    /// A new account (RSA-4096 CA and account keys) with its first device.
    Create {
        #[command(flatten)]
        args: AccountArgs,
    },
    /// Jami ID, device ids, certificate names and validity, revoked devices.
    Show {
        #[command(flatten)]
        args: AccountArgs,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write the account archive (importable by jamid as Account.archivePath).
    Export {
        #[command(flatten)]
        args: AccountArgs,
        /// Where to write the archive.
        #[arg(long)]
        out: PathBuf,
        /// Password of the written archive (default: the account's own).
        #[arg(long)]
        out_password: Option<String>,
    },
    /// Import an archive (ours or jamid's): a new device of that account in --dir.
    Import {
        #[command(flatten)]
        args: AccountArgs,
        /// The archive file.
        archive: PathBuf,
    },
    /// Revoke a device: its certificate joins the account CRL in archive.gz.
    Revoke {
        #[command(flatten)]
        args: AccountArgs,
        /// Device id (64 hex) or short id (40 hex) of this directory's device.
        #[arg(long, conflicts_with = "cert")]
        device: Option<String>,
        /// The device's certificate (PEM, e.g. another directory's ring_device.crt).
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Link this directory to an account another device exports with a PIN over the
    /// DHT (--password = the archive password the exporter used).
    Link {
        #[command(flatten)]
        args: AccountArgs,
        /// The PIN the exporting device shows.
        #[arg(long)]
        pin: String,
        /// A DHT node to join through (repeatable).
        #[arg(long, required = true)]
        bootstrap: Vec<SocketAddr>,
        /// Seconds to wait for the DHT at each step.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum ReportCmd {
    /// Merge shard report directories (each with results.json) into one report.
    Merge {
        #[arg(long)]
        out: PathBuf,
        dirs: Vec<PathBuf>,
    },
}

fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 2/4")?;
    let i: u32 = i.parse().map_err(|_| "I must be a number")?;
    let n: u32 = n.parse().map_err(|_| "N must be a number")?;
    if n == 0 || i == 0 || i > n {
        return Err(format!("shard {i}/{n}: I must be in 1..={n}"));
    }
    Ok((i, n))
}

/// UTC date-time from the system clock (reports only; never used inside a simulation).
fn utc_now() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d, h, mi, s) = civil(secs);
    (
        format!("{y:04}{m:02}{d:02}-{h:02}{mi:02}{s:02}"),
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds.
fn utc_iso(secs: u64) -> String {
    let (y, m, d, h, mi, s) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// UTC calendar date and time of unix seconds.
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

fn print_summary(report: &reports::RunReport, out: &std::path::Path) -> bool {
    let failed: Vec<_> = report.scenarios.iter().filter(|s| !s.passed).collect();
    let events: u64 = report.scenarios.iter().map(|s| s.events).sum();
    let sim: f64 = report.scenarios.iter().map(|s| s.sim_seconds).sum();
    println!(
        "{} cases, {} passed, {} failed in {:.1}s ({} events, {:.0} simulated s)",
        report.scenarios.len(),
        report.scenarios.len() - failed.len(),
        failed.len(),
        report.wall_seconds,
        events,
        sim
    );
    for f in &failed {
        println!("FAIL {} (seed {})", f.name, f.seed);
        if let Some(e) = &f.error {
            println!("     error: {e}");
        }
        for c in f.checks.iter().filter(|c| !c.passed) {
            println!("     {}: {}", c.description, c.detail);
        }
        println!("     replay: {}", f.replay);
    }
    println!("report: {}", out.join("index.html").display());
    failed.is_empty()
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<bool> {
    let cli = Cli::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let commit = env!("JAMISIM_COMMIT").to_string();
    let (run_id, started) = utc_now();
    match cli.cmd {
        Cmd::Run {
            targets,
            seed,
            seeds,
            shard,
            out,
            jobs,
            pcap,
            quiet,
        } => {
            let seeds = match (seed, seeds) {
                (Some(s), _) => vec![s],
                (None, Some(0)) => bail!("--seeds must be at least 1"),
                (None, Some(n)) => (1..=n).collect(),
                (None, None) => Vec::new(),
            };
            let out = out.unwrap_or_else(|| PathBuf::from("reports/runs").join(&run_id));
            let mut opts = RunOptions {
                targets,
                seeds,
                shard,
                out: out.clone(),
                progress: !quiet,
                capture: pcap,
                commit,
                command,
                run_id,
                started_utc: started,
                ..RunOptions::default()
            };
            if let Some(j) = jobs {
                opts.jobs = j.max(1);
            }
            let report = runner::run(&opts)?;
            Ok(print_summary(&report, &out))
        }
        Cmd::Replay {
            id,
            seed,
            file,
            out,
        } => {
            let target = match &file {
                Some(f) => f.display().to_string(),
                None => id.clone(),
            };
            let cases: Vec<_> = runner::select(&[target])?
                .into_iter()
                .filter(|c| c.id == id)
                .collect();
            let Some(case) = cases.first() else {
                bail!("no scenario case `{id}` (see `jamisim list`)")
            };
            let out = out
                .unwrap_or_else(|| PathBuf::from("reports/runs").join(format!("replay-{run_id}")));
            let opts = RunOptions {
                targets: vec![file
                    .map(|f| f.display().to_string())
                    .unwrap_or(case.id.clone())],
                seeds: vec![seed],
                only_id: Some(id.clone()),
                full_trace: true,
                out: out.clone(),
                progress: false,
                capture: true,
                commit,
                command,
                run_id,
                started_utc: started,
                ..RunOptions::default()
            };
            let report = runner::run(&opts)?;
            for s in &report.scenarios {
                for c in &s.checks {
                    println!(
                        "{} {}: {}",
                        if c.passed { "ok  " } else { "FAIL" },
                        c.description,
                        c.detail
                    );
                }
                if let Some(t) = &s.trace_path {
                    println!("trace: {}", out.join(t).display());
                }
            }
            Ok(print_summary(&report, &out))
        }
        Cmd::List { targets } => {
            for c in runner::select(&targets)? {
                println!("{:<60} {}", c.id, c.spec.scenario.about);
            }
            Ok(true)
        }
        Cmd::Node {
            cmd:
                NodeCmd::Dht {
                    port,
                    bind,
                    bootstrap,
                    identity,
                    json,
                    proxy,
                },
        } => {
            node_cmd::run(node_cmd::DhtNodeOpts {
                port,
                bind,
                bootstrap,
                identity,
                json,
                proxy,
            })?;
            Ok(true)
        }
        Cmd::Node {
            cmd:
                NodeCmd::Device {
                    dir,
                    password,
                    port,
                    bind,
                    bootstrap,
                    json,
                    ice_ip,
                    stun,
                    contacts_only,
                    turn,
                    turn_user,
                    turn_password,
                    turn_realm,
                    proxy,
                    discovery,
                },
        } => {
            device_cmd::run(device_cmd::DeviceOpts {
                dir,
                password,
                port,
                bind,
                bootstrap,
                json,
                ice_ips: ice_ip,
                stun,
                contacts_only,
                turn: turn.map(|server| node::connect::turn::TurnAccountConfig {
                    enable: true,
                    server,
                    username: turn_user,
                    password: turn_password,
                    realm: turn_realm,
                }),
                proxy,
                discovery,
            })?;
            Ok(true)
        }
        Cmd::Node {
            cmd: NodeCmd::Nameserver { port, bind, db },
        } => {
            nameserver_cmd::run(nameserver_cmd::NameServerOpts { port, bind, db })?;
            Ok(true)
        }
        Cmd::Node {
            cmd: NodeCmd::Account { cmd },
        } => {
            use account_cmd::AccountOp;
            let (args, op) = match cmd {
                AccountCmd::Create { args } => (args, AccountOp::Create),
                AccountCmd::Show { args, json } => (args, AccountOp::Show { json }),
                AccountCmd::Export {
                    args,
                    out,
                    out_password,
                } => (args, AccountOp::Export { out, out_password }),
                AccountCmd::Import { args, archive } => (args, AccountOp::Import { archive }),
                AccountCmd::Revoke { args, device, cert } => {
                    (args, AccountOp::Revoke { device, cert })
                }
                AccountCmd::Link {
                    args,
                    pin,
                    bootstrap,
                    timeout,
                } => (
                    args,
                    AccountOp::Link {
                        pin,
                        bootstrap,
                        timeout_s: timeout,
                    },
                ),
            };
            let opts = account_cmd::AccountOpts {
                dir: args.dir,
                password: args.password,
                bits: args.bits,
            };
            account_cmd::run(&opts, op)?;
            Ok(true)
        }
        Cmd::Node {
            cmd:
                NodeCmd::Proxy {
                    port,
                    dht_port,
                    bootstrap,
                    bind,
                },
        } => {
            proxy_cmd::run(proxy_cmd::ProxyOpts {
                port,
                dht_port,
                bind,
                bootstrap,
            })?;
            Ok(true)
        }
        Cmd::Report {
            cmd: ReportCmd::Merge { out, dirs },
        } => {
            if dirs.is_empty() {
                bail!("give at least one report directory to merge");
            }
            let mut parts = Vec::new();
            for d in &dirs {
                parts.push(
                    reports::read_results(&d.join("results.json"))
                        .with_context(|| format!("reading {}", d.display()))?,
                );
            }
            let merged = reports::merge(parts);
            reports::write_report(&out, &merged)?;
            Ok(print_summary(&merged, &out))
        }
    }
}

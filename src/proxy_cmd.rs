//! `jamisim node proxy`: an OpenDHT-compatible DHT proxy (PROTOCOLS §3) on a TCP port,
//! backed by our DHT node on a UDP port, so proxy clients (OpenDHT's, jamid with
//! `Account.proxyEnabled`, ours) reach the DHT without UDP of their own.

use anyhow::{Context, Result};
use node::dht::proxy::{backend::Backend, server};
use rand::RngExt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Options of `jamisim node proxy`.
pub struct ProxyOpts {
    pub port: u16,
    pub dht_port: u16,
    pub bind: IpAddr,
    /// `HOST:PORT` of nodes to join through.
    pub bootstrap: Vec<String>,
}

/// Serves until the process is stopped.
pub fn run(opts: ProxyOpts) -> Result<()> {
    let mut boot = Vec::new();
    for b in &opts.bootstrap {
        let addrs: Vec<SocketAddr> = b
            .to_socket_addrs()
            .with_context(|| format!("resolving bootstrap {b}"))?
            .collect();
        boot.extend(
            addrs
                .into_iter()
                .filter(|a| a.is_ipv4() == opts.bind.is_ipv4()),
        );
    }
    let seed: u64 = rand::rng().random();
    let be = Backend::start(SocketAddr::new(opts.bind, opts.dht_port), &boot, seed)
        .with_context(|| format!("binding UDP {}:{}", opts.bind, opts.dht_port))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let addr = SocketAddr::new(opts.bind, opts.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        println!(
            "DHT proxy on http://{} (node {} on UDP {})",
            listener.local_addr()?,
            be.node_id,
            be.udp
        );
        server::serve(listener, be).await;
        Ok(())
    })
}

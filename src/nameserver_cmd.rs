//! `jamisim node nameserver`: the Jami name server (§5) on a real TCP port, its
//! registrations kept in an append-only file so they survive restarts.

use anyhow::{Context, Result};
use node::nameserver::{http, FileStore, Registry};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

/// Options of `jamisim node nameserver`.
pub struct NameServerOpts {
    pub port: u16,
    pub bind: IpAddr,
    pub db: PathBuf,
}

/// Serves until the process is stopped.
pub fn run(opts: NameServerOpts) -> Result<()> {
    let store =
        FileStore::open(&opts.db).map_err(|e| anyhow::anyhow!("{}: {e}", opts.db.display()))?;
    // One server per db file: a second one would append records the first never sees.
    let lock = std::fs::File::open(&opts.db)?;
    lock.try_lock().map_err(|e| {
        anyhow::anyhow!(
            "{} is in use by another name server ({e})",
            opts.db.display()
        )
    })?;
    let count = store.len();
    let registry = Arc::new(Registry::new(store));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let addr = SocketAddr::new(opts.bind, opts.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        println!(
            "name server on http://{local} ({count} names in {})",
            opts.db.display()
        );
        http::serve(listener, registry).await;
        Ok(())
    })
}

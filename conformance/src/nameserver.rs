//! Our name server (`node::nameserver`, the code behind `jamisim node nameserver`)
//! served from a thread inside a test's network namespace, so jamid there reaches it at
//! `http://127.0.0.1:<port>`. Stopped (and its thread joined) on drop.

use crate::netns::Netns;
use anyhow::{anyhow, Context, Result};
use node::nameserver::{http, FileStore, Registry};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running name server over a [`FileStore`] file.
pub struct NameServer {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl NameServer {
    /// Opens the store at `db` (creating it) and serves it on `127.0.0.1:<free port>`
    /// inside `ns`; returns once the port is bound.
    pub fn start(ns: &Netns, db: &Path) -> Result<NameServer> {
        let store = FileStore::open(db).map_err(|e| anyhow!("{}: {e}", db.display()))?;
        let registry = Arc::new(Registry::new(store));
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let thread = ns.spawn(move || {
            let run = || -> Result<()> {
                let rt = runtime()?;
                rt.block_on(async {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let _ = bound_tx.send(Ok(listener.local_addr()?));
                    let listener = Counting { listener, counter };
                    tokio::select! {
                        _ = http::serve(listener, registry) => {}
                        _ = stopped => {}
                    }
                    Ok(())
                })
            };
            if let Err(e) = run() {
                let _ = bound_tx.send(Err(e));
            }
        });
        let addr = bound_rx
            .recv()
            .context("name server thread ended before binding")??;
        Ok(NameServer {
            addr,
            connections,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:<port>` inside the namespace.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far: shows whether a client asked the server at all.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// The value for an account's `RingNS.uri`.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A listener that counts what it accepts.
struct Counting {
    listener: tokio::net::TcpListener,
    counter: Arc<AtomicU64>,
}

impl http::Listener for Counting {
    type Io = tokio::net::TcpStream;
    async fn accept(&mut self) -> std::io::Result<(Self::Io, SocketAddr)> {
        let r = self.listener.accept().await;
        if r.is_ok() {
            self.counter.fetch_add(1, Ordering::SeqCst);
        }
        r
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")
}

/// Runs `fut` to completion on a runtime of its own on a thread inside `ns` (e.g. our
/// name server client talking to a server only reachable there).
pub fn block_on_in<F, T>(ns: &Netns, fut: F) -> Result<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    ns.spawn(move || runtime().map(|rt| rt.block_on(fut)))
        .join()
        .map_err(|_| anyhow!("thread in {} panicked", ns.name()))?
}

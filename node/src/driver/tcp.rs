//! The TCP sockets of a [`super::DeviceDriver`]: socket set-up (SO_REUSEADDR and
//! SO_REUSEPORT, so a listening port can also connect: ICE-TCP simultaneous open) and the
//! tasks that own them on the driver's current-thread runtime. Every task reports to the
//! driver through one bounded channel; the driver alone talks to the engine.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// The driver's own number for a connection, never reused: events of a connection the
/// engine has closed (or replaced under the same `StreamId`) are recognised as stale.
pub(super) type Serial = u64;

/// Bytes asked of one `read`: one event per chunk.
const READ_CHUNK: usize = 64 * 1024;

/// Listen backlog: ICE opens a handful of connections per peer.
const BACKLOG: u32 = 128;

/// Pause after a failed `accept` (EMFILE and the like) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What the socket tasks tell the driver.
#[derive(Debug)]
pub(super) enum SockEvent {
    Accepted {
        listen: SocketAddr,
        remote: SocketAddr,
        stream: TcpStream,
    },
    Connected {
        serial: Serial,
        stream: TcpStream,
    },
    ConnectFailed {
        serial: Serial,
    },
    Data {
        serial: Serial,
        bytes: Vec<u8>,
    },
    /// EOF, reset, or a write error.
    Closed {
        serial: Serial,
    },
}

pub(super) type Events = mpsc::Sender<SockEvent>;

/// What the driver tells a connection's writer.
#[derive(Debug)]
pub(super) enum WriteMsg {
    Bytes(Vec<u8>),
    /// Flush what came before, then send FIN.
    Close,
}

fn socket(local: SocketAddr, reuseport: bool) -> io::Result<TcpSocket> {
    let s = if local.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    if reuseport {
        s.set_reuseport(true)?;
    }
    s.bind(local)?;
    Ok(s)
}

/// A listener on `local` with SO_REUSEADDR + SO_REUSEPORT. Must run inside the runtime.
pub(super) fn listen(local: SocketAddr) -> io::Result<TcpListener> {
    socket(local, true)?.listen(BACKLOG)
}

/// Accepts until aborted (Unlisten) or the driver is gone.
pub(super) async fn accept_loop(l: TcpListener, listen: SocketAddr, events: Events) {
    loop {
        match l.accept().await {
            Ok((stream, remote)) => {
                let ev = SockEvent::Accepted {
                    listen,
                    remote,
                    stream,
                };
                if events.send(ev).await.is_err() {
                    return;
                }
            }
            Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
        }
    }
}

/// Binds to `local` (port 0: any) and connects. `reuseport` is false only to show why it
/// matters: without it a bind to a listening port fails.
pub(super) async fn connect(
    serial: Serial,
    local: SocketAddr,
    remote: SocketAddr,
    reuseport: bool,
    events: Events,
) {
    let r = match socket(local, reuseport) {
        Ok(s) => s.connect(remote).await,
        Err(e) => Err(e),
    };
    let ev = match r {
        Ok(stream) => SockEvent::Connected { serial, stream },
        Err(_) => SockEvent::ConnectFailed { serial },
    };
    let _ = events.send(ev).await;
}

/// Every chunk read becomes a `Data` event (the bounded channel is the back-pressure);
/// EOF or an error a `Closed` one.
pub(super) async fn reader(mut r: OwnedReadHalf, serial: Serial, events: Events) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let ev = match r.read(&mut buf).await {
            Ok(0) | Err(_) => SockEvent::Closed { serial },
            Ok(n) => SockEvent::Data {
                serial,
                bytes: buf[..n].to_vec(),
            },
        };
        let last = matches!(ev, SockEvent::Closed { .. });
        if events.send(ev).await.is_err() || last {
            return;
        }
    }
}

/// Writes the queue in order; `unsent` counts what the driver queued and is not yet
/// written (the driver closes a connection whose count passes its limit).
pub(super) async fn writer(
    mut w: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<WriteMsg>,
    unsent: Arc<AtomicUsize>,
    serial: Serial,
    events: Events,
) {
    while let Some(m) = queue.recv().await {
        match m {
            WriteMsg::Bytes(b) => {
                if w.write_all(&b).await.is_err() {
                    let _ = events.send(SockEvent::Closed { serial }).await;
                    return;
                }
                unsent.fetch_sub(b.len(), Ordering::Relaxed);
            }
            WriteMsg::Close => {
                let _ = w.shutdown().await;
                return;
            }
        }
    }
}

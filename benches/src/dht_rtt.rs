//! Put-then-get round trips on real UDP sockets. One client (our engine, the same code
//! whichever server it talks to) is bootstrapped to one server, ours or the official
//! `dhtnode`, so both servers are measured doing the same work: answer the put's token
//! request, store the value, answer the get with the value.

use anyhow::{bail, ensure, Context, Result};
use conformance::netns::Netns;
use node::dht::engine::{Config, Dht, Event, OpId};
use node::dht::{InfoHash, Value};
use node::driver::{unix_ms, UdpDriver};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest a round trip may take before the bench gives up on the server.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// An engine as `jamisim node dht` makes one (network 0, signatures checked).
pub fn engine(id: InfoHash, seed: u64) -> Dht {
    Dht::new(Config::verifying(id, seed), unix_ms())
}

/// Run `f` on a thread inside `ns` (or here when there is none) and wait for it.
fn in_ns<T: Send + 'static>(ns: Option<&Netns>, f: impl FnOnce() -> T + Send + 'static) -> T {
    let h = match ns {
        Some(ns) => ns.spawn(f),
        None => std::thread::spawn(f),
    };
    h.join().expect("namespace thread")
}

/// A UDP socket on 127.0.0.1 of `ns` (a socket stays in the namespace it was made in,
/// whichever thread uses it later).
pub fn loopback_socket(ns: Option<&Netns>) -> io::Result<UdpSocket> {
    in_ns(ns, || UdpSocket::bind("127.0.0.1:0"))
}

/// Our node serving on its own thread until dropped.
pub struct OurServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl OurServer {
    /// Start our node on 127.0.0.1 (inside `ns` when given), as `jamisim node dht` runs.
    pub fn start(ns: Option<&Netns>) -> Result<OurServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<io::Result<SocketAddr>>();
        let flag = stop.clone();
        let body = move || -> Result<()> {
            let bound = UdpDriver::bind(
                engine(InfoHash::get("bench-server"), 7),
                "127.0.0.1:0".parse()?,
            );
            let mut d = match bound {
                Ok(d) => d,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return Ok(());
                }
            };
            let _ = tx.send(d.local_addr());
            while !flag.load(Ordering::Relaxed) {
                d.turn(Duration::from_millis(50), &mut |_, _| {})?;
            }
            Ok(())
        };
        let thread = match ns {
            Some(ns) => ns.spawn(body),
            None => std::thread::spawn(body),
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(5))
            .context("our server did not start")??;
        Ok(OurServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if let Ok(Err(e)) = t.join() {
                eprintln!("our server stopped with an error: {e:#}");
            }
        }
    }
}

/// Our engine on a real socket, talking to one server, with a tap on what the server
/// sends back (to check a get's value really came from it).
pub struct Client {
    dht: Dht,
    sock: UdpSocket,
    server: SocketAddr,
    buf: Vec<u8>,
    read_timeout: Option<Duration>,
    events: Vec<Event>,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

impl Client {
    /// Bootstrap from `server` over `sock` and wait until it answers.
    pub fn connect(sock: UdpSocket, server: SocketAddr, seed: u64) -> Result<Client> {
        let mut c = Client {
            dht: engine(InfoHash::get(format!("bench-client-{seed}")), seed),
            sock,
            server,
            buf: vec![0; 65536],
            read_timeout: None,
            events: Vec::new(),
        };
        c.dht.bootstrap(unix_ms(), server);
        let deadline = Instant::now() + ROUND_TRIP_TIMEOUT;
        while !c.events.iter().any(|e| matches!(e, Event::Connected)) {
            if Instant::now() > deadline {
                bail!("{server} did not answer our bootstrap ping");
            }
            c.turn(deadline, None)?;
        }
        c.events.clear();
        Ok(c)
    }

    fn send_all(&mut self) {
        while let Some(t) = self.dht.poll_transmit() {
            // A lost datagram is the engine's business (it retries), as on the wire.
            let _ = self.sock.send_to(&t.bytes, t.to);
        }
    }

    /// One turn of the loop `UdpDriver` runs: send, wait for one datagram or the engine's
    /// next timeout, feed it in. Returns whether the datagram came from the server and
    /// contains `needle`.
    fn turn(&mut self, deadline: Instant, needle: Option<&[u8]>) -> Result<bool> {
        self.send_all();
        let now = unix_ms();
        let next = self.dht.poll_timeout().unwrap_or(now + 50);
        let wait = Duration::from_millis(next.saturating_sub(now).clamp(1, 50))
            .min(deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
        if self.read_timeout != Some(wait) {
            self.sock.set_read_timeout(Some(wait))?;
            self.read_timeout = Some(wait);
        }
        let mut hit = false;
        match self.sock.recv_from(&mut self.buf) {
            Ok((n, from)) => {
                let data = &self.buf[..n];
                hit = from == self.server && needle.is_some_and(|nd| contains(data, nd));
                self.dht.handle_datagram(unix_ms(), from, data);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => return Err(e.into()),
        }
        let now = unix_ms();
        if self.dht.poll_timeout().is_some_and(|t| t <= now) {
            self.dht.handle_timeout(now);
        }
        self.send_all();
        while let Some(e) = self.dht.poll_event() {
            self.events.push(e);
        }
        Ok(hit)
    }

    /// Turns until an event `pick` accepts, or the deadline.
    fn wait_for<T>(
        &mut self,
        deadline: Instant,
        needle: Option<&[u8]>,
        hit: &mut bool,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T> {
        loop {
            if let Some(t) = self.events.iter().find_map(&mut pick) {
                self.events.clear();
                return Ok(t);
            }
            self.events.clear();
            if Instant::now() > deadline {
                bail!("{} gave no answer in time", self.server);
            }
            *hit |= self.turn(deadline, needle)?;
        }
    }

    /// Put `data` at `key` (a fresh key), wait for the server's acknowledgement, then get
    /// `key` until the server has answered with the value. Fails when the server did not
    /// store it or did not send it back. Returns the time from put to the get's end.
    pub fn put_then_get(&mut self, key: InfoHash, value_id: u64, data: &[u8]) -> Result<Duration> {
        let value = Value::plain(value_id, 0, data.to_vec());
        let start = Instant::now();
        let deadline = start + ROUND_TRIP_TIMEOUT;
        let mut unused = false;
        let put = self.dht.put(unix_ms(), key, value);
        let stored = self.wait_for(deadline, None, &mut unused, |e| match e {
            Event::PutDone { op, stored_on, .. } if *op == put => Some(*stored_on),
            _ => None,
        })?;
        // Our own copy answers a get locally; only the server's reply counts.
        let get: OpId = self.dht.get(unix_ms(), key);
        let mut from_server = false;
        let answered = self.wait_for(deadline, Some(data), &mut from_server, |e| match e {
            Event::GetDone {
                op, nodes_answered, ..
            } if *op == get => Some(*nodes_answered),
            _ => None,
        })?;
        let took = start.elapsed();
        self.dht.cancel(put);
        self.dht.cancel(get);
        ensure!(
            stored == 1,
            "the put was stored on {stored} nodes, not the server alone"
        );
        ensure!(
            answered == 1,
            "the get was answered by {answered} nodes, not the server alone"
        );
        ensure!(
            from_server,
            "the server's answer to the get lacked the value"
        );
        Ok(took)
    }

    /// Keep serving (answer the server's pings) until `until`.
    pub fn idle_until(&mut self, until: Instant) -> Result<()> {
        while Instant::now() < until {
            self.turn(until, None)?;
            self.events.clear();
        }
        Ok(())
    }
}

/// Median of a list of durations (the list is sorted in place).
pub fn median(v: &mut [Duration]) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    Some(v[v.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_get_against_our_server_returns_the_value_from_it() {
        let server = OurServer::start(None).unwrap();
        let sock = loopback_socket(None).unwrap();
        let mut c = Client::connect(sock, server.addr, 1).unwrap();
        for i in 0..20u8 {
            let key = InfoHash::get(format!("rtt-test-{i}"));
            let took = c.put_then_get(key, 100 + u64::from(i), &[i; 16]).unwrap();
            assert!(took < ROUND_TRIP_TIMEOUT);
        }
    }

    #[test]
    fn a_server_that_never_answers_is_an_error_not_a_hang() {
        // A bound socket nobody reads: pings go unanswered.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = loopback_socket(None).unwrap();
        let started = Instant::now();
        let err = Client::connect(sock, silent.local_addr().unwrap(), 2)
            .err()
            .expect("no answer means no connection");
        assert!(err.to_string().contains("did not answer"), "{err:#}");
        assert!(started.elapsed() < ROUND_TRIP_TIMEOUT + Duration::from_secs(2));
    }

    #[test]
    fn median_picks_the_middle() {
        let ms = Duration::from_millis;
        assert_eq!(median(&mut [ms(3), ms(1), ms(2)]), Some(ms(2)));
        assert_eq!(median(&mut []), None);
    }
}

//! The proxy's HTTP/1.1 API (PROTOCOLS §3, OpenDHT 2.4.12 `DhtProxyServer`) over hyper:
//! `GET /node/info` (and legacy `GET /`, which OpenDHT's proxy client polls), `GET
//! /key/:hash` (one JSON value per line, closed when the get completes), `GET
//! /key/:hash/listen` (open until the client leaves), `POST /key/:hash` (put, optionally
//! permanent), `OPTIONS`; the legacy forms without `/key` too. Requests go to the DHT
//! thread ([`Backend`]).

use super::backend::{Backend, Command, Item};
use super::json;
use crate::dht::InfoHash;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};

/// Largest put body accepted (a value is at most 64 KiB, base64 and JSON add a third).
pub const MAX_BODY: usize = 128 * 1024;

/// A response body: either complete, or a stream of lines fed by the DHT thread.
pub enum ProxyBody {
    Full(Option<Bytes>),
    Lines(mpsc::UnboundedReceiver<Item>),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Lines(rx) => match rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    // Send every line already waiting in one frame.
                    let mut out = line(&item);
                    while let Ok(more) = rx.try_recv() {
                        out.push_str(&line(&more));
                    }
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ProxyBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Lines(_) => SizeHint::default(),
        }
    }
}

fn line(item: &Item) -> String {
    match item {
        Item::Value(v) => json::to_line(v, false),
        Item::Expired(v) => json::to_line(v, true),
    }
}

/// `:hash` → key: 40 hex digits, or the SHA-1 of the text (`InfoHash::get`).
pub fn key_of(s: &str) -> InfoHash {
    s.parse().unwrap_or_else(|_| InfoHash::get(s))
}

fn reply(status: u16, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::Full(Some(Bytes::from(body))));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn stream(rx: mpsc::UnboundedReceiver<Item>) -> Response<ProxyBody> {
    Response::new(ProxyBody::Lines(rx))
}

/// CORS and content headers OpenDHT's server adds to every answer.
fn headers(mut r: Response<ProxyBody>) -> Response<ProxyBody> {
    use hyper::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

async fn node_info(be: &Backend, peer: SocketAddr) -> Response<ProxyBody> {
    let (tx, rx) = oneshot::channel();
    if !be.send(Command::Info(tx)) {
        return reply(503, "{\"err\":\"Incorrect DhtRunner\"}".into());
    }
    match rx.await {
        Ok(i) => {
            let stats = serde_json::json!({"good": i.good, "dubious": i.dubious, "incoming": 0});
            let empty = serde_json::json!({"good": 0, "dubious": 0, "incoming": 0});
            let (v4, v6) = if i.udp.is_ipv4() {
                (stats, empty)
            } else {
                (empty, stats)
            };
            // No `id`: OpenDHT writes it only for a node with an identity, which ours lacks.
            let body = serde_json::json!({
                "ipv4": v4,
                "ipv6": v6,
                "node_id": i.node_id.to_string(),
                "ops": i.ops,
                "public_ip": peer.ip().to_string(),
            });
            reply(200, format!("{body}\n"))
        }
        Err(_) => reply(503, "{\"err\":\"Incorrect DhtRunner\"}".into()),
    }
}

async fn put(be: &Backend, key: InfoHash, body: &[u8]) -> Response<ProxyBody> {
    if body.is_empty() {
        return reply(400, "{\"err\":\"Missing parameters\"}".into());
    }
    let parsed = match std::str::from_utf8(body)
        .ok()
        .and_then(|s| json::from_str(s).ok())
    {
        Some(p) => p,
        // OpenDHT's message, its typo included.
        None => return reply(400, "{\"err:\":\"Incorrect JSON\"}".into()),
    };
    be.counters.puts.fetch_add(1, Relaxed);
    if parsed.permanent {
        be.counters.permanent_puts.fetch_add(1, Relaxed);
    }
    let (tx, rx) = oneshot::channel();
    let sent = be.send(Command::Put {
        key,
        value: parsed.value,
        permanent: parsed.permanent,
        reply: tx,
    });
    match (sent, rx.await) {
        (true, Ok(Some(v))) => reply(200, json::to_line(&v, false)),
        _ => reply(502, "{\"err\":\"Put failed\"}".into()),
    }
}

/// Answer one request.
pub async fn handle(be: Backend, peer: SocketAddr, req: Request<Incoming>) -> Response<ProxyBody> {
    let c = &be.counters;
    c.requests.fetch_add(1, Relaxed);
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // The legacy routes are the new ones without `/key`.
    let (hash, rest): (Option<&str>, &[&str]) = match segs.as_slice() {
        ["key", h, rest @ ..] => (Some(h), rest),
        ["node", ..] | [""] => (None, &[]),
        [h, rest @ ..] => (Some(h), rest),
        [] => (None, &[]),
    };
    let resp = match (&parts.method, segs.as_slice(), hash, rest) {
        (&Method::GET, ["node", "info"] | [""], _, _) => node_info(&be, peer).await,
        (&Method::GET, ["node", "stats"], _, _) => {
            let (tx, rx) = oneshot::channel();
            be.send(Command::Info(tx));
            match rx.await {
                Ok(i) => reply(
                    200,
                    format!(
                        "{}\n",
                        serde_json::json!({"listenCount": c.listens.load(Relaxed),
                            "putCount": c.puts.load(Relaxed),
                            "totalPermanentPuts": c.permanent_puts.load(Relaxed),
                            "requestCount": c.requests.load(Relaxed),
                            "nodeInfo": {"node_id": i.node_id.to_string(), "ops": i.ops}})
                    ),
                ),
                Err(_) => reply(503, "{\"err\":\"Incorrect DhtRunner\"}".into()),
            }
        }
        (&Method::OPTIONS, _, Some(_), _) | (&Method::GET, _, Some(_), ["options"]) => {
            let mut r = reply(200, String::new());
            r.headers_mut().insert(
                hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
                hyper::header::HeaderValue::from_static("OPTIONS, GET, POST, LISTEN"),
            );
            r.headers_mut().insert(
                hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
                hyper::header::HeaderValue::from_static("content-type"),
            );
            r.headers_mut().insert(
                hyper::header::ACCESS_CONTROL_MAX_AGE,
                hyper::header::HeaderValue::from_static("86400"),
            );
            r
        }
        (&Method::GET, _, Some(h), []) => {
            let (tx, rx) = mpsc::unbounded_channel();
            c.gets.fetch_add(1, Relaxed);
            if be.send(Command::Get { key: key_of(h), tx }) {
                stream(rx)
            } else {
                reply(503, "{\"err\":\"Incorrect DhtRunner\"}".into())
            }
        }
        (&Method::GET, _, Some(h), ["listen"]) => {
            let (tx, rx) = mpsc::unbounded_channel();
            c.listens.fetch_add(1, Relaxed);
            if be.send(Command::Listen { key: key_of(h), tx }) {
                stream(rx)
            } else {
                reply(503, "{\"err\":\"Incorrect DhtRunner\"}".into())
            }
        }
        (&Method::POST, _, Some(h), []) => match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => put(&be, key_of(h), &b.to_bytes()).await,
            Err(_) => reply(400, "{\"err\":\"Missing parameters\"}".into()),
        },
        _ => reply(404, "{\"err\":\"Not found\"}".into()),
    };
    headers(resp)
}

/// Serve one HTTP/1.1 connection until the peer closes it.
pub async fn serve_connection<IO>(io: IO, be: Backend, peer: SocketAddr) -> Result<(), hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let be = be.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(be, peer, req).await) }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await
}

/// Accept connections forever, one task each (real TCP, or turmoil's in tests).
pub async fn serve<L: crate::net::Listener>(mut listener: L, be: Backend) {
    loop {
        let (io, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let be = be.clone();
        tokio::spawn(async move {
            let _ = serve_connection(io, be, peer).await;
        });
    }
}

//! A DHT proxy client (OpenDHT 2.4.12 `DhtProxyClient`'s requests): a node that talks to
//! the DHT through a proxy's REST API over TCP instead of over UDP. One HTTP/1.1
//! connection per operation, as OpenDHT's client does for its streams. Generic over the
//! transport ([`Connector`]: real TCP, or turmoil's in tests); every request has a
//! deadline, so a proxy that went silent is a clear [`ClientError::Timeout`], not a hang.

use super::json::{self, ProxyValue};
use crate::dht::{InfoHash, Value};
use crate::net::{Connector, TcpConnector};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Default deadline of one request (connect, send, and the answer's head; for a get, the
/// whole answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a proxy request failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("the proxy answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("bad value from the proxy: {0}")]
    Json(#[from] json::JsonError),
    #[error("no answer from the proxy within {0:?}")]
    Timeout(Duration),
}

/// A proxy at `server` (`host:port`), reached through `C`.
pub struct ProxyClient<C = TcpConnector> {
    connector: Arc<C>,
    pub server: String,
    pub timeout: Duration,
}

impl<C> Clone for ProxyClient<C> {
    fn clone(&self) -> Self {
        ProxyClient {
            connector: self.connector.clone(),
            server: self.server.clone(),
            timeout: self.timeout,
        }
    }
}

/// A response body read line by line.
pub struct Lines {
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
}

impl Lines {
    /// The next complete line (without its newline), `None` at the end of the stream.
    pub async fn next_line(&mut self) -> Option<Result<String, ClientError>> {
        loop {
            if let Some(n) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=n).collect();
                return Some(Ok(String::from_utf8_lossy(&line[..n]).into_owned()));
            }
            if self.done {
                return None;
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
                Some(Err(e)) => return Some(Err(e.into())),
                None => {
                    self.done = true;
                    if !self.buf.is_empty() {
                        let line = std::mem::take(&mut self.buf);
                        return Some(Ok(String::from_utf8_lossy(&line).into_owned()));
                    }
                }
            }
        }
    }

    /// The next value of a get or listen stream (empty lines and `{}` skipped).
    pub async fn next_value(&mut self) -> Option<Result<ProxyValue, ClientError>> {
        loop {
            let line = match self.next_line().await? {
                Ok(l) => l,
                Err(e) => return Some(Err(e)),
            };
            let t = line.trim();
            if t.is_empty() || t == "{}" {
                continue;
            }
            return Some(json::from_str(t).map_err(Into::into));
        }
    }
}

impl ProxyClient {
    /// A proxy on real TCP at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        ProxyClient::with_connector(TcpConnector, addr.to_string())
    }
}

impl<C: Connector + 'static> ProxyClient<C> {
    pub fn with_connector(connector: C, server: impl Into<String>) -> Self {
        ProxyClient {
            connector: Arc::new(connector),
            server: server.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Another deadline per request.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// `fut` within the deadline.
    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let io = self.connector.connect(&self.server).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.server.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Io(io::Error::other(e)))?;
        let resp = send.send_request(req).await?;
        if resp.status() != 200 {
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            return Err(ClientError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(resp)
    }

    /// A GET whose answer is read line by line (no deadline of its own: callers set it).
    async fn lines(&self, path: &str) -> Result<Lines, ClientError> {
        let resp = self.request(Method::GET, path, None).await?;
        Ok(Lines {
            body: resp.into_body(),
            buf: Vec::new(),
            done: false,
        })
    }

    /// `GET /node/info`: the proxy's node id, table stats and our public address.
    pub async fn node_info(&self) -> Result<serde_json::Value, ClientError> {
        self.timed(async {
            let resp = self.request(Method::GET, "/node/info", None).await?;
            let body = resp.into_body().collect().await?.to_bytes();
            serde_json::from_slice(&body).map_err(|e| json::JsonError::Syntax(e.to_string()).into())
        })
        .await
    }

    /// `GET /key/:hash`: every value the proxy's get finds, once the get completes.
    pub async fn get(&self, key: &InfoHash) -> Result<Vec<Value>, ClientError> {
        self.timed(async {
            let mut lines = self.lines(&format!("/key/{key}")).await?;
            let mut out = Vec::new();
            while let Some(v) = lines.next_value().await {
                out.push(v?.value);
            }
            Ok(out)
        })
        .await
    }

    /// `GET /key/:hash` as the proxy wrote it: one line per value (to compare bytes).
    pub async fn get_lines(&self, key: &InfoHash) -> Result<Vec<String>, ClientError> {
        self.timed(async {
            let mut lines = self.lines(&format!("/key/{key}")).await?;
            let mut out = Vec::new();
            while let Some(l) = lines.next_line().await {
                let l = l?;
                if !l.trim().is_empty() {
                    out.push(l);
                }
            }
            Ok(out)
        })
        .await
    }

    /// `GET /key/:hash/listen`: a stream of values (and expiries) until dropped. The
    /// deadline covers the answer's head only: a listen may stay quiet for hours.
    pub async fn listen(&self, key: &InfoHash) -> Result<Lines, ClientError> {
        self.timed(self.lines(&format!("/key/{key}/listen"))).await
    }

    /// `POST /key/:hash`: the value as stored (a value with id 0 gets one from the proxy).
    pub async fn put(
        &self,
        key: &InfoHash,
        value: &Value,
        permanent: bool,
    ) -> Result<Value, ClientError> {
        let mut j = json::to_json(value);
        if permanent {
            if let serde_json::Value::Object(m) = &mut j {
                m.insert("permanent".into(), true.into());
            }
        }
        self.timed(async {
            let resp = self
                .request(Method::POST, &format!("/key/{key}"), Some(j.to_string()))
                .await?;
            let body = resp.into_body().collect().await?.to_bytes();
            Ok(json::from_str(String::from_utf8_lossy(&body).trim())?.value)
        })
        .await
    }

    /// A permanent put, sent again every `every` so the proxy keeps it past its 24 h
    /// limit, until the returned task is aborted.
    pub async fn put_permanent(
        &self,
        key: InfoHash,
        value: &Value,
        every: Duration,
    ) -> Result<(Value, tokio::task::JoinHandle<()>), ClientError> {
        let stored = self.put(&key, value, true).await?;
        let me = self.clone();
        let v = stored.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                // A failed refresh is retried at the next period, as OpenDHT's client does.
                let _ = me.put(&key, &v, true).await;
            }
        });
        Ok((stored, task))
    }
}

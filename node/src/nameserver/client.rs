//! A name server client for the node, reading answers the way jamid does (§5): any
//! 4xx on a lookup means "not found", a `publickey`+`signature` in a name answer must
//! match the address and sign the name, and registration status codes map to
//! jamid's outcomes. Answers are cached: found names/addresses until the process
//! ends (registrations never change), not-found answers only for `negative_ttl`.
//! Transport failures, timeouts and 5xx are retried, then reported as such.

use super::domain::{self, Addr, Name};
use crate::crypto::{self, PrivateKey, PublicKey};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Largest answer read (jamid's `MAX_RESPONSE_SIZE` is 1 MiB).
const MAX_RESPONSE: usize = 1024 * 1024;

pub use crate::net::{Connector, TcpConnector};

/// Why a lookup gave no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("not found")]
    NotFound,
    /// The name is not valid, or the server's answer failed verification.
    #[error("invalid response: {0}")]
    Invalid(String),
    /// The server answered, but with an error status or an unreadable body.
    #[error("server error: {0}")]
    Server(String),
    /// No answer within the timeout, after every retry.
    #[error("timed out")]
    Timeout,
    /// Could not reach the server, after every retry.
    #[error("unreachable: {0}")]
    Unreachable(String),
}

/// Registration outcomes as jamid reports them (`RegistrationResponse`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("invalid name")]
    InvalidName,
    #[error("incomplete request")]
    IncompleteRequest,
    #[error("signature verification failed")]
    SignatureVerificationFailed,
    #[error("already taken")]
    AlreadyTaken,
    #[error("error: {0}")]
    Error(String),
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port` of the server.
    pub server: String,
    /// Per-attempt deadline (connect + request + answer).
    pub timeout: Duration,
    /// Extra attempts after a timeout, transport error or 5xx.
    pub retries: u32,
    /// Pause before retry n is n × `backoff`.
    pub backoff: Duration,
    /// How long a "not found" answer is believed.
    pub negative_ttl: Duration,
}

impl ClientConfig {
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            timeout: Duration::from_secs(5),
            retries: 2,
            backoff: Duration::from_millis(200),
            negative_ttl: Duration::from_secs(30),
        }
    }
}

#[derive(Default)]
struct Cache {
    name_to_addr: BTreeMap<String, String>,
    addr_to_name: BTreeMap<String, String>,
    missing_name: BTreeMap<String, Instant>,
    missing_addr: BTreeMap<String, Instant>,
}

/// Name server client with caching.
pub struct NsClient<C> {
    connector: C,
    cfg: ClientConfig,
    cache: Mutex<Cache>,
    requests: std::sync::atomic::AtomicU64,
}

enum Failure {
    Timeout,
    Transport(String),
}

impl<C: Connector> NsClient<C> {
    pub fn new(connector: C, cfg: ClientConfig) -> Self {
        Self {
            connector,
            cfg,
            cache: Mutex::new(Cache::default()),
            requests: Default::default(),
        }
    }

    /// HTTP requests sent so far (attempts included): shows what the cache saved.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, name: &str, addr: &str) {
        let mut c = self.cache();
        c.name_to_addr.insert(name.to_string(), addr.to_string());
        c.addr_to_name.insert(addr.to_string(), name.to_string());
        c.missing_name.remove(name);
        c.missing_addr.remove(addr);
    }

    /// Address (40 lowercase hex) registered for `name`.
    pub async fn lookup_name(&self, name: &str) -> Result<String, LookupError> {
        let name = Name::parse(name).map_err(|_| LookupError::Invalid("invalid name".into()))?;
        let name = name.as_str();
        {
            let c = self.cache();
            if let Some(a) = c.name_to_addr.get(name) {
                return Ok(a.clone());
            }
            if c.missing_name
                .get(name)
                .is_some_and(|t| *t > Instant::now())
            {
                return Err(LookupError::NotFound);
            }
        }
        let (status, body) = self
            .request(Method::GET, &format!("/name/{name}"), None)
            .await?;
        if (400..500).contains(&status) {
            let until = Instant::now() + self.cfg.negative_ttl;
            self.cache().missing_name.insert(name.to_string(), until);
            return Err(LookupError::NotFound);
        }
        if !(200..300).contains(&status) {
            return Err(LookupError::Server(format!("status {status}")));
        }
        let addr = verify_name_answer(name, &body)?;
        self.remember(name, &addr);
        Ok(addr)
    }

    /// Name registered for `addr` (40 hex, optional `0x`).
    pub async fn lookup_addr(&self, addr: &str) -> Result<String, LookupError> {
        let addr = Addr::parse(addr)
            .map_err(|_| LookupError::Invalid("invalid address".into()))?
            .hex();
        {
            let c = self.cache();
            if let Some(n) = c.addr_to_name.get(&addr) {
                return Ok(n.clone());
            }
            if c.missing_addr
                .get(&addr)
                .is_some_and(|t| *t > Instant::now())
            {
                return Err(LookupError::NotFound);
            }
        }
        let (status, body) = self
            .request(Method::GET, &format!("/addr/{addr}"), None)
            .await?;
        let name = if (200..300).contains(&status) {
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| LookupError::Server("unreadable answer".into()))?;
            v["name"].as_str().unwrap_or_default().to_string()
        } else if (400..500).contains(&status) {
            String::new()
        } else {
            return Err(LookupError::Server(format!("status {status}")));
        };
        // jamid: an empty name in a 200 answer also means not found.
        if name.is_empty() {
            let until = Instant::now() + self.cfg.negative_ttl;
            self.cache().missing_addr.insert(addr, until);
            return Err(LookupError::NotFound);
        }
        self.remember(&name, &addr);
        Ok(name)
    }

    /// Registers `name` for `key`'s address. Safe to retry: registering a name
    /// again for the same address succeeds.
    pub async fn register_name(
        &self,
        key: &PrivateKey,
        name: &str,
        owner: &str,
    ) -> Result<(), RegisterError> {
        let name = Name::parse(name).map_err(|_| RegisterError::InvalidName)?;
        let addr = crypto::hex(&key.public_key().short_id());
        if let Some(a) = self.cache().name_to_addr.get(name.as_str()) {
            return if *a == addr {
                Ok(())
            } else {
                Err(RegisterError::AlreadyTaken)
            };
        }
        let body = domain::registration_body(key, &name, owner)
            .map_err(|e| RegisterError::Error(e.to_string()))?;
        let (status, answer) = self
            .request(
                Method::POST,
                &format!("/name/{}", name.as_str()),
                Some(body),
            )
            .await
            .map_err(|e| RegisterError::Error(e.to_string()))?;
        match status {
            400 => Err(RegisterError::IncompleteRequest),
            401 => Err(RegisterError::SignatureVerificationFailed),
            402..=499 => Err(RegisterError::AlreadyTaken),
            200..=299 => {
                let v: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
                if v["success"].as_bool() == Some(true) {
                    self.remember(name.as_str(), &addr);
                    Ok(())
                } else {
                    Err(RegisterError::Error("server did not confirm".into()))
                }
            }
            s => Err(RegisterError::Error(format!("status {s}"))),
        }
    }

    /// One request with retries; Ok carries any HTTP answer (4xx/5xx included once
    /// retries are spent on 5xx).
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes), LookupError> {
        let mut last = Failure::Timeout;
        for attempt in 0..=self.cfg.retries {
            if attempt > 0 {
                tokio::time::sleep(self.cfg.backoff * attempt).await;
            }
            self.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let once = self.once(method.clone(), path, body.clone());
            match tokio::time::timeout(self.cfg.timeout, once).await {
                Ok(Ok((status, b))) if status < 500 || attempt == self.cfg.retries => {
                    return Ok((status, b))
                }
                Ok(Ok((status, _))) => last = Failure::Transport(format!("status {status}")),
                Ok(Err(e)) => last = Failure::Transport(e),
                Err(_) => last = Failure::Timeout,
            }
        }
        Err(match last {
            Failure::Timeout => LookupError::Timeout,
            Failure::Transport(e) => LookupError::Unreachable(e),
        })
    }

    async fn once(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes), String> {
        let io = self
            .connector
            .connect(&self.cfg.server)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", self.cfg.server.as_str())
            .header("User-Agent", "JamiDHT")
            .header("Accept", "*/*")
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let result = async {
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, bytes))
        }
        .await;
        driver.abort();
        result
    }
}

/// Checks a `GET /name` answer the way jamid does: strip `0x`; when `publickey` and
/// `signature` are both present, the key's short id must equal the address and the
/// signature must verify over the name.
pub fn verify_name_answer(name: &str, body: &[u8]) -> Result<String, LookupError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| LookupError::Server("unreadable answer".into()))?;
    let addr = v["addr"].as_str().unwrap_or_default();
    let addr = addr.strip_prefix("0x").unwrap_or(addr).to_string();
    if addr.is_empty() {
        return Err(LookupError::NotFound);
    }
    let pk = v["publickey"].as_str().unwrap_or_default();
    let sig = v["signature"].as_str().unwrap_or_default();
    if !pk.is_empty() && !sig.is_empty() {
        let bad = || LookupError::Invalid("answer does not verify".into());
        let key = B64
            .decode(pk)
            .ok()
            .and_then(|b| PublicKey::from_pem_or_der(&b).ok())
            .ok_or_else(bad)?;
        let sig = B64.decode(sig).map_err(|_| bad())?;
        if crypto::hex(&key.short_id()) != addr || !key.verify(name.as_bytes(), &sig) {
            return Err(bad());
        }
    }
    Ok(addr)
}

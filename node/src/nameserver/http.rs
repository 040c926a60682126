//! The name server's HTTP/1.1 API (§5) over hyper, on any tokio byte stream: real TCP
//! for `jamisim node nameserver`, turmoil's simulated TCP in tests. Routing and JSON
//! bodies are in [`respond`], which does no IO.

use super::domain::{Addr, NsError, Record, Registry, Store};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest request body accepted (a registration is about 1.5 KiB with a 4096-bit key).
pub const MAX_BODY: usize = 64 * 1024;

/// The answer to one request: status and JSON body.
pub fn respond<S: Store>(
    reg: &Registry<S>,
    method: &Method,
    path: &str,
    body: &[u8],
) -> (u16, Value) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["name", name]) => match reg.lookup_name(name) {
            Ok(r) => (200, name_json(&r)),
            Err(e) => lookup_error(e),
        },
        (&Method::GET, ["name", name, field @ ("owner" | "publickey" | "signature")]) => {
            match reg.lookup_name(name) {
                Ok(r) => {
                    let v = match *field {
                        "owner" => r.owner,
                        "publickey" => r.publickey,
                        _ => r.signature,
                    };
                    (200, json!({ "name": r.name, *field: v }))
                }
                Err(e) => lookup_error(e),
            }
        }
        (&Method::GET, ["addr", addr]) => match reg.lookup_addr(addr) {
            Ok(r) => (200, json!({ "name": r.name })),
            Err(e) => lookup_error(e),
        },
        (&Method::POST, ["name", name]) => match reg.register(name, body) {
            Ok(_) => (200, json!({ "success": true })),
            Err(e) => (
                e.status(),
                json!({ "success": false, "error": e.to_string() }),
            ),
        },
        (_, ["name", ..] | ["addr", ..]) => (405, json!({ "error": "method not allowed" })),
        _ => (404, json!({ "error": "not found" })),
    }
}

fn name_json(r: &Record) -> Value {
    let addr = Addr::parse(&r.addr).map(|a| a.wire()).unwrap_or_default();
    json!({ "name": r.name, "addr": addr, "publickey": r.publickey, "signature": r.signature })
}

fn lookup_error(e: NsError) -> (u16, Value) {
    (e.status(), json!({ "error": e.to_string() }))
}

async fn handle<S: Store>(reg: Arc<Registry<S>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let (status, value) = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => respond(&reg, &parts.method, parts.uri.path(), &b.to_bytes()),
        Err(_) => (
            413,
            json!({ "success": false, "error": "request body too large or broken" }),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serves one HTTP/1.1 connection until the peer closes it.
pub async fn serve_connection<IO, S>(io: IO, reg: Arc<Registry<S>>) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Store + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let reg = reg.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(reg, req).await) }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await
}

/// Something that accepts byte-stream connections (a TCP listener, real or simulated).
pub use crate::net::Listener;

/// Accepts connections forever, one task each. A failed accept (e.g. out of file
/// descriptors) is retried after a pause rather than taking the server down.
pub async fn serve<L: Listener, S: Store + 'static>(mut listener: L, reg: Arc<Registry<S>>) {
    loop {
        let io = match listener.accept().await {
            Ok((io, _peer)) => io,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let reg = reg.clone();
        tokio::spawn(async move {
            // A broken connection concerns only its own client.
            let _ = serve_connection(io, reg).await;
        });
    }
}

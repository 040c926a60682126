//! STUN Binding server (RFC 5389) with the RFC 5780 extras that NAT behaviour discovery
//! needs: two addresses and two ports, CHANGE-REQUEST, RESPONSE-ORIGIN, OTHER-ADDRESS
//! and RESPONSE-PORT. It keeps no per-client state, so it can serve any number of hosts.

use crate::app::{App, Ctx};
use crate::sim::SockId;
use crate::stun::{attr_type, is_stun, Attribute, Class, ErrorCode, Message, Method};
use std::net::{IpAddr, SocketAddr};

/// SOFTWARE attribute value of every response.
pub const SOFTWARE: &str = "netsim-stun";

/// One bound socket and its address.
#[derive(Clone, Copy, Debug)]
struct Bound {
    sock: SockId,
    addr: SocketAddr,
}

/// A STUN server on (primary, port), (primary, alt_port) and, when the host has a second
/// IPv4 address, (alt, port) and (alt, alt_port).
#[derive(Debug, Default)]
pub struct StunServer {
    pub port: u16,
    pub alt_port: u16,
    /// `grid[ip][port]`: ip 0 is the primary address, 1 the alternate; port 0 is `port`,
    /// 1 is `alt_port`. A missing entry could not be bound.
    grid: [[Option<Bound>; 2]; 2],
    /// Requests answered (successfully or with an error response).
    pub requests: u64,
    /// Datagrams that were not well-formed STUN (ignored, as RFC 5389 §7.3 says).
    pub malformed: u64,
}

impl StunServer {
    pub fn new(port: u16, alt_port: u16) -> Self {
        StunServer {
            port,
            alt_port,
            ..Default::default()
        }
    }

    /// The address answers with CHANGE-REQUEST(change IP, change port) come from, if
    /// the server has an alternate address.
    pub fn other_address(&self) -> Option<SocketAddr> {
        self.grid[1][1].map(|b| b.addr)
    }

    /// Grid position of a socket.
    fn index_of(&self, sock: SockId) -> Option<(usize, usize)> {
        (0..2)
            .flat_map(|i| (0..2).map(move |j| (i, j)))
            .find(|&(i, j)| self.grid[i][j].is_some_and(|b| b.sock == sock))
    }

    /// Builds the answer to a request received on `grid[ip][port]` from `from`: the
    /// message, the grid position to send it from and the destination.
    fn answer(
        &self,
        req: &Message,
        ip: usize,
        port: usize,
        from: SocketAddr,
    ) -> (Message, (usize, usize), SocketAddr) {
        let error = |code: u16| error_response(req, code);
        if req.method != Method::Binding {
            return (error(ErrorCode::BAD_REQUEST), (ip, port), from);
        }
        let unknown = req.unknown_comprehension_required();
        if !unknown.is_empty() {
            let mut e = error(ErrorCode::UNKNOWN_ATTRIBUTE);
            e.add(Attribute::UnknownAttributes(unknown));
            return (e, (ip, port), from);
        }
        let (change_ip, change_port) = req.change_request().unwrap_or((false, false));
        let out = (ip ^ usize::from(change_ip), port ^ usize::from(change_port));
        // RFC 5780 §7.2: a server that cannot give OTHER-ADDRESS rejects CHANGE-REQUEST.
        let changeable = self.other_address().is_some() && self.grid[out.0][out.1].is_some();
        if req.change_request().is_some() && !changeable {
            let mut e = error(ErrorCode::UNKNOWN_ATTRIBUTE);
            e.add(Attribute::UnknownAttributes(vec![
                attr_type::CHANGE_REQUEST,
            ]));
            return (e, (ip, port), from);
        }
        let dest = match req.response_port() {
            Some(0) => return (error(ErrorCode::BAD_REQUEST), (ip, port), from),
            Some(p) => SocketAddr::new(from.ip(), p),
            None => from,
        };
        let mut ok = req.reply(Class::SuccessResponse);
        ok.add(Attribute::XorMappedAddress(from));
        ok.add(Attribute::MappedAddress(from));
        if let Some(b) = self.grid[out.0][out.1] {
            ok.add(Attribute::ResponseOrigin(b.addr));
        }
        if let Some(b) = self.grid[1 - ip][1 - port] {
            ok.add(Attribute::OtherAddress(b.addr));
        }
        ok.add(Attribute::Software(SOFTWARE.into()));
        (ok, out, dest)
    }
}

/// An error response with the standard reason phrase.
fn error_response(req: &Message, code: u16) -> Message {
    req.reply(Class::ErrorResponse)
        .with(Attribute::ErrorCode(ErrorCode::standard(code)))
        .with(Attribute::Software(SOFTWARE.into()))
}

impl App for StunServer {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let v4: Vec<IpAddr> = cx
            .addrs()
            .into_iter()
            .filter(|a| a.is_ipv4())
            .take(2)
            .collect();
        for (i, ip) in v4.iter().enumerate() {
            for (j, port) in [self.port, self.alt_port].into_iter().enumerate() {
                // A clash (e.g. port == alt_port) leaves that slot empty: the server then
                // rejects the CHANGE-REQUESTs it cannot honour.
                if let Ok(sock) = cx.udp_bind(SocketAddr::new(*ip, port)) {
                    if let Ok(addr) = cx.local_addr(sock) {
                        self.grid[i][j] = Some(Bound { sock, addr });
                    }
                }
            }
        }
    }

    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        let Some((ip, port)) = self.index_of(sock) else {
            return;
        };
        let req = match Message::decode(data) {
            Ok(m) if is_stun(data) => m,
            _ => {
                self.malformed += 1;
                return;
            }
        };
        if req.fingerprint().is_some() && !Message::check_fingerprint(data) {
            self.malformed += 1;
            return;
        }
        // Indications (keepalives) and stray responses get no answer.
        if req.class != Class::Request {
            return;
        }
        self.requests += 1;
        let (reply, (oi, oj), dest) = self.answer(&req, ip, port, from);
        let Some(out) = self.grid[oi][oj] else { return };
        let bytes = reply.encode_with(None, req.fingerprint().is_some());
        let _ = cx.udp_send(out.sock, dest, &bytes);
    }

    crate::app_any!();
}

//! STUN Binding server (RFC 5389) with the RFC 5780 extras that NAT behaviour discovery
//! needs: two addresses and two ports, CHANGE-REQUEST, RESPONSE-ORIGIN, OTHER-ADDRESS
//! and RESPONSE-PORT. It keeps no per-client state, so it can serve any number of hosts.
//!
//! It also answers Binding requests over TCP on (primary, port) (RFC 5389 §7.2.2: messages
//! back to back on the stream, framed by their length field), which ICE-TCP agents use to
//! learn the mapped address of a listening or simultaneous-open port (RFC 6544 §5.2).
//! CHANGE-REQUEST and RESPONSE-PORT make no sense on a stream and get 400.

use crate::app::{App, Ctx, TcpEvent};
use crate::sim::{ConnId, SockId};
use crate::stun::{attr_type, is_stun, Attribute, Class, ErrorCode, Message, Method};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// SOFTWARE attribute value of every response.
pub const SOFTWARE: &str = "netsim-stun";

/// Bytes buffered per TCP client: one STUN message of this size is far more than a
/// Binding request needs; a client that sends a longer one is cut off.
pub const MAX_STREAM_MESSAGE: usize = 2048;
/// TCP clients served at once; further connections are closed at once (bounds memory).
pub const MAX_STREAM_CLIENTS: usize = 4096;

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
    /// Datagrams that were not well-formed STUN (ignored, as RFC 5389 §7.3 says), and
    /// TCP clients cut off for sending something else.
    pub malformed: u64,
    /// TCP clients: their address and the bytes of an incomplete message.
    streams: BTreeMap<ConnId, (SocketAddr, Vec<u8>)>,
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

impl StunServer {
    /// Answer every complete message in a TCP client's buffer; false if the client
    /// sent something that is not STUN (it is then cut off).
    fn serve_stream(&mut self, cx: &mut Ctx<'_>, conn: ConnId) -> bool {
        loop {
            let Some((from, buf)) = self.streams.get_mut(&conn) else {
                return true;
            };
            let from = *from;
            let len = match stream_frame(buf, MAX_STREAM_MESSAGE) {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(len)) => len,
            };
            let raw: Vec<u8> = buf.drain(..len).collect();
            let Ok(req) = Message::decode(&raw) else {
                return false;
            };
            if req.class != Class::Request {
                continue;
            }
            self.requests += 1;
            let (mut reply, out, dest) = self.answer(&req, 0, 0, from);
            if out != (0, 0) || dest != from {
                reply = error_response(&req, ErrorCode::BAD_REQUEST);
            }
            let bytes = reply.encode_with(None, req.fingerprint().is_some());
            let _ = cx.tcp_send(conn, &bytes);
        }
    }
}

/// Why a stream cannot carry STUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("not a STUN message")]
    NotStun,
    #[error("STUN message of {0} bytes is longer than allowed")]
    TooLong(usize),
}

/// Framing of STUN over TCP (RFC 5389 §7.2.2): how long the message at the head of
/// `buf` is, once it is all there (`Ok(None)`: wait for more bytes). Messages longer than
/// `max` and bytes that cannot start a STUN message are errors.
pub fn stream_frame(buf: &[u8], max: usize) -> Result<Option<usize>, StreamError> {
    // ChannelData has no place on a STUN server's stream.
    if buf.first().is_some_and(|b| b & 0xc0 != 0) {
        return Err(StreamError::NotStun);
    }
    let len = match stun::stream::frame_len(buf) {
        Ok(Some(len)) => len,
        Ok(None) => return Ok(None),
        Err(_) => return Err(StreamError::NotStun),
    };
    if len > max {
        return Err(StreamError::TooLong(len));
    }
    Ok((buf.len() >= len).then_some(len))
}

impl App for StunServer {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        if let Some(ip) = cx.addrs().into_iter().find(|a| a.is_ipv4()) {
            // A clash with another TCP service on this port leaves STUN over TCP off.
            let _ = cx.tcp_listen(SocketAddr::new(ip, self.port));
        }
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

    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        match ev {
            TcpEvent::Accepted { conn, remote, .. } => {
                if self.streams.len() >= MAX_STREAM_CLIENTS {
                    cx.tcp_close(conn);
                } else {
                    self.streams.insert(conn, (remote, Vec::new()));
                }
            }
            TcpEvent::Data { conn, data } => {
                if let Some((_, buf)) = self.streams.get_mut(&conn) {
                    buf.extend_from_slice(&data);
                }
                if !self.serve_stream(cx, conn) {
                    self.malformed += 1;
                    self.streams.remove(&conn);
                    cx.tcp_close(conn);
                }
            }
            TcpEvent::PeerClosed { conn } => {
                self.streams.remove(&conn);
                cx.tcp_close(conn);
            }
            TcpEvent::Reset { conn, .. } => {
                self.streams.remove(&conn);
            }
            TcpEvent::Connected { .. } => {}
        }
    }

    crate::app_any!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binding(id: u8) -> Vec<u8> {
        Message::new(Class::Request, Method::Binding, [id; 12])
            .with(Attribute::Software("x".repeat(usize::from(id) % 40)))
            .encode()
    }

    proptest! {
        #[test]
        fn framing_never_panics_and_stays_in_bounds(buf in proptest::collection::vec(any::<u8>(), 0..3000)) {
            if let Ok(Some(len)) = stream_frame(&buf, MAX_STREAM_MESSAGE) {
                prop_assert!(len >= 20 && len <= buf.len() && len <= MAX_STREAM_MESSAGE);
            }
        }

        /// Back-to-back messages come out whole whatever the stream's split.
        #[test]
        fn framing_finds_messages_whatever_the_split(ids in proptest::collection::vec(any::<u8>(), 1..5), cut in any::<proptest::sample::Index>()) {
            let msgs: Vec<Vec<u8>> = ids.iter().map(|&i| binding(i)).collect();
            let stream: Vec<u8> = msgs.concat();
            let cut = cut.index(stream.len());
            let mut buf = stream[..cut].to_vec();
            let mut out = Vec::new();
            let mut rest = &stream[cut..];
            loop {
                match stream_frame(&buf, MAX_STREAM_MESSAGE).unwrap() {
                    Some(len) => out.push(buf.drain(..len).collect::<Vec<u8>>()),
                    None if rest.is_empty() => break,
                    None => {
                        buf.extend_from_slice(rest);
                        rest = &[];
                    }
                }
            }
            prop_assert_eq!(out, msgs);
        }
    }

    #[test]
    fn framing_rejects_what_is_not_stun_or_too_long() {
        assert_eq!(stream_frame(b"GET /", 2048), Err(StreamError::NotStun));
        let mut m = binding(1);
        m[4] ^= 1; // the magic cookie
        assert_eq!(stream_frame(&m, 2048), Err(StreamError::NotStun));
        let long = binding(39);
        assert_eq!(
            stream_frame(&long, 30),
            Err(StreamError::TooLong(long.len()))
        );
        assert_eq!(stream_frame(&long[..10], 2048), Ok(None));
    }
}

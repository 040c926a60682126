//! Seed corpora. `run.sh` starts each target binary once with `JAMISIM_FUZZ_WRITE_SEEDS`
//! set to that target's corpus folder; the target's `init` calls [`write_if_asked`], which
//! writes the seeds and exits before any fuzzing. Seeds are made at run time from the real
//! OpenDHT captures (node/tests/data/opendht-2.4.12) and from keys, cyphers and STUN
//! messages built with the project's own encoders, so nothing is duplicated in the repo.

use crate::{captured_datagrams, engine_input, fixed_key, rng};
use netsim::stun::{self, Attribute, ChannelData, Class, ErrorCode, Method};
use node::crypto::{self, PublicKey};
use node::dht::value::{Value, ValueData};
use node::dht::wire::{self, Message, MessageBody, PartialMessage, ValueSlot};
use pkcs8::der::{pem::LineEnding, Decode, Encode};
use pkcs8::pkcs5::pbes2;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

/// Environment variable naming the folder to write seeds into.
pub const ENV: &str = "JAMISIM_FUZZ_WRITE_SEEDS";

/// Password of the password-protected key seeds; `crypto_key` decrypts with it.
pub const KEY_PASSWORD: &str = "fuzz";

/// Seeds larger than this are left out: libFuzzer's default `-max_len` is the largest
/// seed, and 60 KiB inputs would slow every execution for little new coverage.
const MAX_SEED_LEN: usize = 8 * 1024;

/// Writes `target`'s seeds and exits when [`ENV`] is set; does nothing otherwise.
pub fn write_if_asked(target: &str) {
    let Some(dir) = std::env::var_os(ENV) else {
        return;
    };
    let seeds = match target {
        "msgpack" => [captured_datagrams(), captured_values()].concat(),
        "dht_wire" => captured_datagrams(),
        "dht_value" => captured_values(),
        "dht_engine" => engine(),
        "stun" => stun(),
        "stun_stream" => stun_stream(),
        "crypto_key" => keys(),
        "crypto_cert" => certificates(),
        "crypto_decrypt" => cyphers(),
        "dht_payload" => payloads(),
        "identity" => identity(),
        "tls_session" => tls(),
        "nameserver" => names(),
        "proxy_json" => proxy_json(),
        "proxy_stream" => proxy_stream(),
        "mux_frames" => mux_frames(),
        "connection_request" => connection_requests(),
        "framing" => framing(),
        "ice_msg" => ice_msgs(),
        "ice_agent" => ice_checks(),
        "sip" => sip(),
        "contacts_store" => contact_files(),
        "discovery" => discovery(),
        "swarm_message" => swarm_messages(),
        other => panic!("no seeds for target {other}"),
    };
    let n = write(Path::new(&dir), &seeds);
    eprintln!("{target}: wrote {n} seeds to {}", Path::new(&dir).display());
    std::process::exit(0);
}

/// `swarm_message`: a commit message of every type jamid writes, as we write them.
fn swarm_messages() -> Vec<Vec<u8>> {
    use node::swarm::message::{MemberAction, Message, Mode};
    let uri = "d8c7d04e5193962d6fe67284d59c7c31be1725ef";
    let c = "2b1d45cc5c219cd9016a30c03df750f7b0b6b4aa";
    [
        Message::initial(Mode::OneToOne, Some(uri)),
        Message::initial(Mode::InvitesOnly, None),
        Message::text("héllo \"q\" 😀"),
        Message::reply("re", c),
        Message::reaction("👍", c),
        Message::edit("new", c),
        Message::member(MemberAction::Join, uri),
        Message::vote(uri),
        Message::update_profile(),
        Message::data_transfer(42, "f.txt", 21, &"ab".repeat(64)),
        Message::call_history(uri, 1500),
    ]
    .iter()
    .map(|m| m.to_json().into_bytes())
    .collect()
}

/// `sip`: MESSAGEs of every MIME type jamid sends, as our channel writes them (pjsip's
/// forms), their 200 OKs, a multipart one and a keep-alive, each behind a split byte.
fn sip() -> Vec<Vec<u8>> {
    use node::sip::{ChannelConfig, SipChannel};
    let cfg = |own: &str, peer: &str| ChannelConfig {
        own_account: own.repeat(40),
        display_name: "Alice".into(),
        peer_account: peer.repeat(40),
        local_addr: "10.0.0.1:38211".into(),
        remote_addr: "10.0.0.2:40000".into(),
        user_agent: "jamisim".into(),
    };
    let (mut a, mut b) = (
        SipChannel::new(cfg("a", "b"), 1),
        SipChannel::new(cfg("b", "a"), 2),
    );
    let now = 1_790_000_000_000;
    for (mime, body) in [
        ("text/plain", "hello"),
        (
            "application/im-gitmessage-id",
            r#"{"id":"c","commit":"d","deviceId":"e"}"#,
        ),
        (
            "message/imdn+xml",
            "<imdn><message-id>1</message-id></imdn>",
        ),
        (
            "application/im-iscomposing+xml",
            "<isComposing><state>active</state></isComposing>",
        ),
        (
            "application/invite+json",
            r#"{"conversationId":"c","metadatas":{}}"#,
        ),
        (
            "multipart/mixed;boundary=b1",
            "--b1\r\nc: text/plain\r\n\r\nhi\r\n--b1--\r\n",
        ),
    ] {
        a.send_message(now, mime, body.as_bytes())
            .expect("seed message");
    }
    let mut out = Vec::new();
    while let Some(m) = a.poll_transmit() {
        b.handle_stream_data(now, &m);
        out.push([&[40u8][..], &m].concat());
    }
    while let Some(r) = b.poll_transmit() {
        out.push([&[7u8][..], &r].concat());
    }
    out.push(b"\0\r\n\r\n".to_vec());
    out
}

/// Every captured value as the proxy's JSON line (plain, signed, encrypted), expired too.
fn proxy_json() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for b in captured_values() {
        if let Ok(v) = Value::unpack(&b) {
            out.push(node::dht::proxy::json::to_line(&v, false).into_bytes());
            out.push(node::dht::proxy::json::to_line(&v, true).into_bytes());
        }
    }
    out
}

/// `proxy_stream`: the captured values' lines as a proxy's chunked get answer, and as a
/// put's `Content-Length` answer, behind a split byte and a close byte.
fn proxy_stream() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for line in proxy_json() {
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        chunked.extend(format!("{:x}\r\n", line.len()).bytes());
        chunked.extend_from_slice(&line);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        out.push([&[40u8, 0][..], &chunked].concat());
        let mut length = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", line.len()).into_bytes();
        length.extend_from_slice(&line);
        out.push([&[7u8, 1][..], &length].concat());
    }
    out
}

fn write(dir: &Path, seeds: &[Vec<u8>]) -> usize {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut n = 0;
    for (i, s) in seeds.iter().filter(|s| s.len() <= MAX_SEED_LEN).enumerate() {
        let path = dir.join(format!("seed-{i:04}"));
        std::fs::write(&path, s).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    n
}

/// Every packed value the captures carry: inline ones and those reassembled from parts.
fn captured_values() -> Vec<Vec<u8>> {
    let from: SocketAddr = "127.0.0.1:4222".parse().expect("addr");
    let mut pending: BTreeMap<u32, PartialMessage> = BTreeMap::new();
    let mut out = Vec::new();
    let mut inline = |m: &Message| {
        for slot in m.values().into_iter().flatten() {
            if let ValueSlot::Inline(b) = slot {
                out.push(b.clone());
            }
        }
    };
    for d in captured_datagrams() {
        let Ok(m) = wire::decode(&d) else { continue };
        if let MessageBody::ValueParts(_) = m.body {
            let tid = m.tid;
            if let Some(pm) = pending.get_mut(&tid) {
                pm.append(&m, from);
                if pm.is_complete() {
                    if let Some(Ok(full)) = pending.remove(&tid).map(PartialMessage::finish) {
                        inline(&full);
                    }
                }
            }
            continue;
        }
        match PartialMessage::start(m, from) {
            Ok(pm) => {
                pending.entry(pm.tid()).or_insert(pm);
            }
            Err(m) => inline(&m),
        }
    }
    out
}

/// Each captured datagram alone, patched, from each kind of peer; then runs of eight.
fn engine() -> Vec<Vec<u8>> {
    let datagrams = captured_datagrams();
    let mut out: Vec<Vec<u8>> = datagrams
        .iter()
        .enumerate()
        .map(|(i, d)| engine_input::record(i % 3, true, 0, d))
        .collect();
    for run in datagrams.chunks(8) {
        out.push(
            run.iter()
                .enumerate()
                .flat_map(|(i, d)| engine_input::record(0, true, (i % 4) as u8, d))
                .collect(),
        );
    }
    out
}

/// TURN-over-TCP streams: a chunk-size byte, then RFC 6062 requests and padded
/// ChannelData back to back.
fn stun_stream() -> Vec<Vec<u8>> {
    let txid = *b"jamisim-fuzz";
    let peer: SocketAddr = "192.0.2.1:80".parse().expect("addr");
    let connect = stun::Message::new(Class::Request, Method::Connect, txid)
        .with(Attribute::XorPeerAddress(peer))
        .encode();
    let attempt = stun::Message::new(Class::Indication, Method::ConnectionAttempt, txid)
        .with(Attribute::ConnectionId(42))
        .with(Attribute::XorPeerAddress(peer))
        .encode();
    let bind = stun::Message::new(Class::Request, Method::ConnectionBind, txid)
        .with(Attribute::ConnectionId(42))
        .encode_with_integrity(&stun::long_term_key("ring", "ring", "ring"));
    let cd = ChannelData {
        channel: 0x4000,
        data: b"hello".to_vec(),
    }
    .encode_padded();
    [1u8, 7, 64, 255]
        .into_iter()
        .map(|size| [vec![size], connect.clone(), cd.clone(), attempt.clone(), bind.clone()].concat())
        .chain(stun().into_iter().map(|s| [vec![16], s].concat()))
        .collect()
}

fn stun() -> Vec<Vec<u8>> {
    let txid = *b"jamisim-fuzz";
    let v4: SocketAddr = "192.0.2.1:3478".parse().expect("addr");
    let v6: SocketAddr = "[2001:db8::1]:40000".parse().expect("addr");
    let key = stun::long_term_key("user", "realm", "pass");
    let binding = stun::Message::new(Class::Request, Method::Binding, txid)
        .with(Attribute::Software("jamisim".into()))
        .with(Attribute::ChangeRequest {
            change_ip: true,
            change_port: false,
        })
        .with(Attribute::ResponsePort(5000))
        .with(Attribute::Padding(vec![0; 7]));
    let success = binding
        .reply(Class::SuccessResponse)
        .with(Attribute::XorMappedAddress(v4))
        .with(Attribute::MappedAddress(v6))
        .with(Attribute::ResponseOrigin(v4))
        .with(Attribute::OtherAddress(v6));
    let allocate = stun::Message::new(Class::Request, Method::Allocate, txid)
        .with(Attribute::Username("user".into()))
        .with(Attribute::Realm("realm".into()))
        .with(Attribute::Nonce("nonce".into()))
        .with(Attribute::RequestedTransport(stun::TRANSPORT_UDP))
        .with(Attribute::Lifetime(600))
        .with(Attribute::DontFragment)
        .with(Attribute::EvenPort(true))
        .with(Attribute::ReservationToken(*b"reserved"));
    let allocated = allocate
        .reply(Class::SuccessResponse)
        .with(Attribute::XorRelayedAddress(v6))
        .with(Attribute::XorMappedAddress(v4))
        .with(Attribute::Lifetime(600));
    let error = allocate
        .reply(Class::ErrorResponse)
        .with(Attribute::ErrorCode(ErrorCode::standard(
            ErrorCode::UNKNOWN_ATTRIBUTE,
        )))
        .with(Attribute::UnknownAttributes(vec![0x0029, 0x7fff]))
        .with(Attribute::AlternateServer(v4));
    let permission = stun::Message::new(Class::Request, Method::CreatePermission, txid)
        .with(Attribute::XorPeerAddress(v4))
        .with(Attribute::XorPeerAddress(v6));
    let bind = stun::Message::new(Class::Request, Method::ChannelBind, txid)
        .with(Attribute::ChannelNumber(0x4001))
        .with(Attribute::XorPeerAddress(v4));
    let send = stun::Message::new(Class::Indication, Method::Send, txid)
        .with(Attribute::XorPeerAddress(v6))
        .with(Attribute::Data(b"hello".to_vec()))
        .with(Attribute::Unknown {
            typ: 0x0042,
            value: vec![1, 2, 3],
        });
    let mut out = vec![
        binding.encode_with(Some(stun::short_term_key("secret")), true),
        success.encode_with(None, true),
        allocate.encode(),
        allocate.encode_with_integrity(&key),
        allocated.encode_with(Some(&key), true),
        error.encode(),
        permission.encode_with_integrity(&key),
        bind.encode(),
        send.encode(),
        stun::Message::new(Class::Request, Method::Other(0x0ab), txid).encode(),
    ];
    for (channel, data) in [(0x4000, &b""[..]), (0x4001, b"abc"), (0x7fff, b"data!")] {
        let cd = ChannelData {
            channel,
            data: data.to_vec(),
        };
        out.push(cd.encode());
        out.push(cd.encode_padded());
    }
    out
}

/// One RSA key in every encoding the loaders accept, the captured owners' public keys,
/// and password-protected keys in the strict PKCS#8 form and the GnuTLS form.
fn keys() -> Vec<Vec<u8>> {
    let key = fixed_key();
    let der = key.to_pkcs8_der().expect("PKCS#8 DER");
    let info = pkcs8::PrivateKeyInfo::from_der(&der).expect("PKCS#8");
    let pkcs1 = info.private_key.to_vec();
    let public = key.public_key();
    let mut out = vec![
        key.to_pkcs8_pem().expect("PEM").into_bytes(),
        der.clone(),
        pem("RSA PRIVATE KEY", &pkcs1),
        pkcs1,
        public.to_pem().expect("PEM").into_bytes(),
        public.spki_der().to_vec(),
    ];
    for v in captured_values() {
        if let Ok(Value {
            data: ValueData::Signed(s),
            ..
        }) = Value::unpack(&v)
        {
            if !out.contains(&s.owner) {
                out.push(s.owner);
            }
        }
    }
    // One PBKDF2 iteration: the seeds exercise the parser, not the KDF.
    let (salt, iv) = ([7u8; 16], [9u8; 16]);
    for params in [
        pbes2::Parameters::pbkdf2_sha256_aes256cbc(1, &salt, &iv),
        pbes2::Parameters::pbkdf2_sha256_aes128cbc(1, &salt, &iv),
    ] {
        let enc = info
            .encrypt_with_params(params.expect("PBES2 parameters"), KEY_PASSWORD)
            .expect("encrypt key");
        let strict = enc.as_bytes().to_vec();
        let parsed = pkcs8::EncryptedPrivateKeyInfo::from_der(&strict).expect("encrypted");
        let gnutls = gnutls_form(&parsed);
        for der in [strict, gnutls] {
            let pem = pem("ENCRYPTED PRIVATE KEY", &der);
            let loaded = crypto::PrivateKey::from_pem_or_der_with_password(&pem, KEY_PASSWORD)
                .expect("the password seed loads");
            assert_eq!(loaded.public_key(), public);
            out.push(pem);
            out.push(der);
        }
    }
    out
}

/// The `EncryptedPrivateKeyInfo` as GnuTLS writes it: the PBKDF2 PRF without NULL
/// parameters, which only the node's lenient fallback parser accepts.
fn gnutls_form(enc: &pkcs8::EncryptedPrivateKeyInfo<'_>) -> Vec<u8> {
    let pbes2 = enc.encryption_algorithm.pbes2().expect("PBES2");
    let pbkdf2 = pbes2.kdf.pbkdf2().expect("PBKDF2");
    let cipher = pbes2.encryption.to_der().expect("cipher DER");
    let oid = |o: pkcs8::ObjectIdentifier| tlv(0x06, o.as_bytes());
    let prf = tlv(
        0x30,
        &oid(pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.2.9")),
    );
    let iterations = pbkdf2.iteration_count.to_der().expect("INTEGER");
    let kdf_params = tlv(0x30, &[tlv(0x04, pbkdf2.salt), iterations, prf].concat());
    let kdf = tlv(0x30, &[oid(pbes2::PBKDF2_OID), kdf_params].concat());
    let params = tlv(0x30, &[kdf, cipher].concat());
    let alg = tlv(0x30, &[oid(pbes2::PBES2_OID), params].concat());
    tlv(0x30, &[alg, tlv(0x04, enc.encrypted_data)].concat())
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = u32::try_from(content.len()).expect("DER length");
    let mut out = vec![tag];
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        _ => {
            out.push(0x82);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(content);
    out
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    pkcs8::der::pem::encode_string(label, LineEnding::LF, der)
        .expect("PEM")
        .into_bytes()
}

/// The certificates the captured nodes announced (value type 8), as DER and as PEM.
fn certificates() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for v in captured_values() {
        let Ok(v) = Value::unpack(&v) else { continue };
        let Some(body) = v.body().filter(|b| b.type_id == 8) else {
            continue;
        };
        if out.contains(&body.data) {
            continue;
        }
        let spki = crypto::certificate_spki_der(&body.data).expect("captured certificate");
        PublicKey::from_spki_der(&spki).expect("captured certificates carry RSA keys");
        out.push(pem("CERTIFICATE", &body.data));
        out.push(body.data.clone());
    }
    assert!(!out.is_empty(), "the captures announce certificates");
    out
}

/// `crypto_decrypt` inputs (see its framing): RSA cyphers of both forms, AES-GCM
/// cyphers under each key size, and plaintexts for the round trip.
fn cyphers() -> Vec<Vec<u8>> {
    let key = fixed_key().public_key();
    let mut rng = rng(1);
    let mut out = Vec::new();
    for plain in [&b"hello"[..], &[0x42; 200][..], &[0x17; 1000][..]] {
        let cypher = key.encrypt(plain, &mut rng).expect("encrypt");
        out.push([&[0u8][..], &cypher].concat());
        out.push([&[2u8][..], plain].concat());
        for sel in 0..3 {
            let aes = crypto::aes_encrypt(plain, &crate::aes_key(sel), &mut rng).expect("aes");
            out.push([&[1u8, sel][..], &aes].concat());
        }
    }
    out
}

/// `contacts_store`: a `contacts` and an `incomingTrustRequests` file with one entry of
/// each kind (active, banned; with and without a device key), packed by our encoders.
fn contact_files() -> Vec<Vec<u8>> {
    use node::contacts::{store, ContactList};
    use node::dht::InfoHash;
    let mut l = ContactList::new();
    l.add_contact(1_795_541_618, InfoHash([1; 20]), true, "conv");
    l.remove_contact(1_795_541_700, InfoHash([2; 20]), true);
    l.on_trust_request(
        1_795_541_618,
        InfoHash([3; 20]),
        b"spki",
        false,
        "c",
        b"vcard".to_vec(),
    );
    let mut none = l.requests().clone();
    none.values_mut().for_each(|r| r.device = None);
    vec![
        store::encode_contacts(l.contacts()),
        store::encode_requests(l.requests()),
        store::encode_requests(&none),
    ]
}

/// `dht_payload`: one of each payload, packed by our encoders.
fn payloads() -> Vec<Vec<u8>> {
    use node::dht::payload::*;
    vec![
        TrustRequest {
            service: "jami".into(),
            conversation_id: "0123abcd".into(),
            payload: b"vcard".to_vec(),
            confirm: true,
        }
        .pack(),
        ImMessage {
            id: 7,
            msg: "hello".into(),
            date: 1_700_000_000,
            status: ImStatus::Received,
            datatype: "text/plain".into(),
            metadatas: [("k".to_string(), "v".to_string())].into(),
        }
        .pack(),
        IceCandidates {
            id: 9,
            ice_data: b"a=candidate".to_vec(),
        }
        .pack(),
        DhtMessage {
            service: "svc".into(),
            data: vec![1, 2, 3],
        }
        .pack(),
        IpServiceAnnouncement {
            addr: "192.0.2.1:4222".parse().unwrap(),
        }
        .pack(),
        IpServiceAnnouncement {
            addr: "[2001:db8::1]:4222".parse().unwrap(),
        }
        .pack(),
    ]
}

/// `identity`: jamid 13.7's own files (node/tests/fixtures/jami-13.7) and the captured
/// certificate announcements.
fn identity() -> Vec<Vec<u8>> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../node/tests/fixtures/jami-13.7");
    let mut out: Vec<Vec<u8>> = [
        "plain_archive.gz",
        "plain_ring_device.crt",
        "password_ring_device.crt",
    ]
    .iter()
    .map(|f| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")))
    .collect();
    if let Ok(a) = node::identity::archive::AccountArchive::decode(&out[0], "") {
        out.push(a.to_json().expect("archive JSON").into_bytes());
    }
    out.extend(certificates());
    out
}

/// `nameserver`: names, addresses and a registration body as jamid sends it.
fn names() -> Vec<Vec<u8>> {
    use node::nameserver::domain::{registration_body, Name};
    let name = Name::parse("fuzzed-name").expect("valid");
    // SHA-512 signatures need a key of at least 1024 bits (fixed_key is 512).
    let key = node::crypto::PrivateKey::generate(1024, &mut crate::rng(0x4e5)).expect("RSA keygen");
    let body = registration_body(&key, &name, "").expect("body");
    vec![
        b"alice".to_vec(),
        b"0x0123456789abcdef0123456789abcdef01234567".to_vec(),
        body.into_bytes(),
    ]
}

/// `mux_frames`: what a peer's mux sends (version, channel requests, data split at 65,535
/// bytes, close, beacon answers), each prefixed with a piece size.
fn mux_frames() -> Vec<Vec<u8>> {
    use node::connect::mux::{Event, Mux};
    let mut a = Mux::new(crate::rng(1));
    let mut b = Mux::new(crate::rng(2));
    let mut wire = a.poll_stream_write().unwrap_or_default();
    b.handle_stream_bytes(0, &wire);
    let ch = a.open_channel("sip").expect("open");
    let _ = a.open_channel("git://0123/abcd").expect("open");
    let to_b = a.poll_stream_write().unwrap_or_default();
    b.handle_stream_bytes(0, &to_b);
    while let Some(ev) = b.poll_event() {
        if let Event::ChannelRequested { channel, .. } = ev {
            if channel == ch {
                b.accept(channel).expect("accept");
            } else {
                b.decline(channel).expect("decline");
            }
        }
    }
    b.write(ch, &[7u8; 70_000]).expect("write");
    b.write(ch, b"INVITE sip:x SIP/2.0\r\n\r\n").expect("write");
    b.close(ch).expect("close");
    wire = b.poll_stream_write().unwrap_or_default();
    let small: Vec<u8> = wire.iter().copied().take(600).collect();
    vec![
        [&[255u8][..], &wire].concat(),
        [&[1u8][..], &small].concat(),
        [&[7u8][..], &to_b].concat(),
    ]
}

/// `connection_request`: a request and an answer map, and a request sealed to the fixed key.
fn connection_requests() -> Vec<Vec<u8>> {
    use node::connect::request::{seal, PeerConnectionRequest};
    let req = PeerConnectionRequest {
        id: 0x1f_0000_0001,
        ice_msg: "ufrag\npwd\n1 1 TCP 2130706431 192.0.2.1 9 typ host tcptype active\n".into(),
        is_answer: false,
        conn_type: "application/im-gitmessage-id".into(),
    };
    let answer = req.answer("u2\np2\n".into());
    // SHA-512 signatures need a key of at least 1024 bits (fixed_key is 512).
    let sender =
        node::crypto::PrivateKey::generate(1024, &mut crate::rng(0xc0)).expect("RSA keygen");
    let (_, sealed) = seal(
        &req,
        &sender,
        &fixed_key().public_key(),
        5,
        &mut crate::rng(3),
    )
    .expect("seal");
    vec![req.pack(), answer.pack(), sealed.pack()]
}

/// `tls_session` inputs (byte 0: bit 0 = we are the TLS client, byte 1 = chunk size; then
/// stream bytes): the honest peer's flights of a real handshake, for each role.
fn tls() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for we_are_client in [true, false] {
        let mut us = crate::tls_session(we_are_client, false);
        let mut them = crate::tls_session(!we_are_client, true);
        let mut from_them = Vec::new();
        for _ in 0..4 {
            if let Some(b) = us.poll_stream_write() {
                them.handle_stream_bytes(crate::TLS_NOW_MS, &b);
            }
            if let Some(b) = them.poll_stream_write() {
                us.handle_stream_bytes(crate::TLS_NOW_MS, &b);
                from_them.extend(b);
            }
        }
        for chunk in [0u8, 5, 200] {
            let mut seed = vec![u8::from(we_are_client), chunk];
            seed.extend(&from_them);
            out.push(seed);
        }
    }
    out
}

/// RFC 4571 streams: framed STUN messages and empty frames, whole and cut.
fn framing() -> Vec<Vec<u8>> {
    let frame = |p: &[u8]| node::connect::framing::frame(p).expect("small");
    let stream: Vec<u8> = stun().iter().flat_map(|m| frame(m)).collect();
    vec![frame(b""), frame(b"hello"), stream.clone(), stream[..stream.len() / 2].to_vec()]
}

/// ice_msg texts as jamid writes them (TCP and UDP, every type, IPv6).
fn ice_msgs() -> Vec<Vec<u8>> {
    let text = "8hAqK3bZ\nq2pWn4sE9dXr7tYu1vBc6mLk\n\
        Hc0a80102 1 TCP 2130706431 192.168.1.2 45678 typ host tcptype passive\n\
        Hc0a80102 1 TCP 2130706175 192.168.1.2 9 typ host tcptype active\n\
        S5db8d8e1 1 TCP 1694498815 93.184.216.225 9 typ srflx tcptype active\n\
        R5db8d8e1 1 UDP 16777215 2001:db8::1 3478 typ relay\n\
        P1 1 TCP 1862270975 10.0.0.1 5000 typ prflx tcptype so\n";
    vec![text.as_bytes().to_vec(), b"ufrag\npwd\n".to_vec()]
}

/// Connectivity checks signed with a password that is not the agent's, raw and framed.
fn ice_checks() -> Vec<Vec<u8>> {
    use node::connect::ice::check;
    let req = check::CheckRequest { priority: 1_862_270_975, use_candidate: true, controlling: Some(true), tie_breaker: 7 };
    let signed = check::request(*b"jamisim-fuzz", "abcdefgh:rfrag", b"wrong password", &req);
    let framed = node::connect::framing::frame(&signed).expect("small");
    vec![signed, framed]
}

/// Discovery datagrams as OpenDHT and jamid send them: the query, a "dht" and a "jami"
/// announcement, and both services in one map.
fn discovery() -> Vec<Vec<u8>> {
    use node::dht::InfoHash;
    use node::discovery::codec::{encode_announcement, QUERY};
    use node::discovery::{DhtPayload, JamiPayload, DHT_SERVICE, JAMI_SERVICE};
    let dht = DhtPayload {
        node_id: InfoHash::get("node"),
        port: 4222,
        net_id: 0,
    }
    .encode();
    let jami = JamiPayload {
        account_id: InfoHash::get("account"),
        display_name: b"Alice".to_vec(),
    }
    .encode();
    vec![
        QUERY.to_vec(),
        encode_announcement([(DHT_SERVICE, &dht[..])].into_iter()),
        encode_announcement([(JAMI_SERVICE, &jami[..])].into_iter()),
        encode_announcement([(DHT_SERVICE, &dht[..]), (JAMI_SERVICE, &jami[..])].into_iter()),
    ]
}

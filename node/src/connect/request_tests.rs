use super::*;
use crate::dht::secure;
use proptest::prelude::*;
use rand::SeedableRng;
use std::sync::OnceLock;

/// Three small keys (1024 bits: the smallest that fits a SHA-512 PKCS#1 signature and keeps debug tests fast).
fn keys() -> &'static (PrivateKey, PrivateKey, PrivateKey) {
    static KEYS: OnceLock<(PrivateKey, PrivateKey, PrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let k = |rng: &mut ChaCha20Rng| PrivateKey::generate(1024, rng).expect("keygen");
        (k(&mut rng), k(&mut rng), k(&mut rng))
    })
}

fn short(k: &PrivateKey) -> InfoHash {
    InfoHash(k.public_key().short_id())
}

fn sample() -> PeerConnectionRequest {
    PeerConnectionRequest {
        id: 0x1234_5678_9abc,
        ice_msg: "uf\npw\n1 1 TCP 2130706431 10.0.0.1 9 typ host tcptype active\n".into(),
        is_answer: false,
        conn_type: "sync".into(),
    }
}

#[test]
fn bytes_are_msgpack_c_map_in_declaration_order() {
    let r = PeerConnectionRequest {
        id: 5,
        ice_msg: "a\nb\n".into(),
        is_answer: true,
        conn_type: String::new(),
    };
    // {"id":5, "ice_msg":"a\nb\n", "isAnswer":true, "connType":""}; id as positive fixint.
    assert_eq!(
        hex::encode(r.pack()),
        "84a2696405a76963655f6d7367a4610a620aa8697341\
         6e73776572c3a8636f6e6e54797065a0"
    );
    // A 2^53 id uses uint64 (0xcf), the smallest form that fits.
    let big = PeerConnectionRequest {
        id: MAX_REQUEST_ID,
        ..r
    };
    assert!(hex::encode(big.pack()).starts_with("84a26964cf0020000000000000"));
    assert_eq!(PeerConnectionRequest::unpack(&big.pack()).unwrap(), big);
}

#[test]
fn unpack_follows_msgpack_c_define_map() {
    // Older jamid without connType, keys in another order, an unknown key: accepted.
    let mut w = Writer::new();
    w.map_len(4);
    w.str("isAnswer").bool(false);
    w.str("forceSocket").bool(true);
    w.str("id").uint(9);
    w.str("ice_msg").bin(b"x");
    let r = PeerConnectionRequest::unpack(&w.into_bytes()).unwrap();
    assert_eq!(
        (r.id, r.ice_msg.as_str(), r.conn_type.as_str()),
        (9, "x", "")
    );
    // First of a repeated key wins.
    let mut w = Writer::new();
    w.map_len(2).str("id").uint(1).str("id").uint(2);
    assert_eq!(
        PeerConnectionRequest::unpack(&w.into_bytes()).unwrap().id,
        1
    );
    // Wrong types and non-string keys are refused.
    for bad in [
        {
            let mut w = Writer::new();
            w.map_len(1).str("id").int(-1);
            w.into_bytes()
        },
        {
            let mut w = Writer::new();
            w.map_len(1).str("isAnswer").uint(1);
            w.into_bytes()
        },
        {
            let mut w = Writer::new();
            w.map_len(1).uint(1).uint(1);
            w.into_bytes()
        },
        {
            let mut w = Writer::new();
            w.array_len(0);
            w.into_bytes()
        },
    ] {
        assert!(
            PeerConnectionRequest::unpack(&bad).is_err(),
            "{}",
            hex::encode(&bad)
        );
    }
}

#[test]
fn sealed_request_opens_at_the_target_only() {
    let (a, b, c) = keys();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (key, v) = seal(&sample(), a, &b.public_key(), 42, &mut rng).unwrap();
    // SHA-1("peer:" + hex(short id of b)).
    let expect = InfoHash::get(format!("peer:{}", hex::encode(short(b).0)));
    assert_eq!(key, expect);
    assert!(matches!(v.data, ValueData::Encrypted(_)));
    let got = open(b, &v).unwrap();
    assert_eq!(got.req, sample());
    assert_eq!(got.from, short(a));
    assert_eq!(got.owner, a.public_key().spki_der().to_vec());
    // The decrypted inner value carries the jamid body: type 0, utype peer_request.
    let inner = secure::decrypt(b, &v).unwrap();
    let body = inner.body().unwrap();
    assert_eq!((body.type_id, body.utype.as_str()), (0, "peer_request"));
    assert_eq!(body.data, sample().pack());
    // Someone else cannot open it.
    assert!(open(c, &v).is_err());
}

#[test]
fn forged_values_are_refused_and_counted() {
    let (a, b, c) = keys();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut book = PeerRequests::new();
    // Encrypted to c, offered to b.
    let (_, to_c) = seal(&sample(), a, &c.public_key(), 1, &mut rng).unwrap();
    assert!(book.handle_encrypted(0, b, &to_c).is_err());
    // Flipped cypher byte.
    let (_, mut v) = seal(&sample(), a, &b.public_key(), 1, &mut rng).unwrap();
    if let ValueData::Encrypted(cy) = &mut v.data {
        cy[10] ^= 1;
    }
    assert!(book.handle_encrypted(0, b, &v).is_err());
    // A plain value with the right utype.
    let plain = Value {
        id: 1,
        data: ValueData::Plain(sample().to_body()),
        priority: 0,
    };
    assert_eq!(
        book.handle_value(0, &short(b), &plain),
        Err(RequestError::NotForUs)
    );
    // Signed for b but tampered after signing.
    let mut signed = secure::sign(a, 1, 0, sample().to_body(), Some(short(b))).unwrap();
    if let ValueData::Signed(s) = &mut signed.data {
        s.body.data = PeerConnectionRequest { id: 77, ..sample() }.pack();
    }
    assert!(matches!(
        book.handle_value(0, &short(b), &signed),
        Err(RequestError::Secure(SecureError::BadSignature))
    ));
    assert_eq!(book.stats.forged, 4);
    // Well signed but another utype, and a request with id 0: malformed.
    let mut body = sample().to_body();
    body.utype = "text/plain".into();
    let other = secure::sign(a, 1, 0, body, Some(short(b))).unwrap();
    assert!(matches!(
        book.handle_value(0, &short(b), &other),
        Err(RequestError::NotARequest { .. })
    ));
    let zero = PeerConnectionRequest { id: 0, ..sample() };
    let zero = secure::sign(a, 1, 0, zero.to_body(), Some(short(b))).unwrap();
    assert_eq!(
        book.handle_value(0, &short(b), &zero),
        Err(RequestError::BadId(0))
    );
    assert_eq!(book.stats.malformed, 2);
    assert_eq!(book.treated_len(), 0, "refused values are not remembered");
}

#[test]
fn replays_are_refused_until_the_window_ends() {
    let (a, b, _) = keys();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut book = PeerRequests::new();
    let (_, v) = seal(&sample(), a, &b.public_key(), 9, &mut rng).unwrap();
    assert!(matches!(
        book.handle_encrypted(0, b, &v),
        Ok(Incoming::Request(_))
    ));
    // Same value again, and a fresh encryption of the same id: both replays.
    assert_eq!(
        book.handle_encrypted(1_000, b, &v),
        Err(RequestError::Replayed(sample().id))
    );
    let (_, v2) = seal(&sample(), a, &b.public_key(), 10, &mut rng).unwrap();
    assert!(book.handle_encrypted(2_000, b, &v2).is_err());
    assert_eq!(book.stats.replayed, 2);
    // After the window the id is forgotten (the DHT value expired long before).
    assert!(book.handle_encrypted(TREATED_TTL_MS, b, &v).is_ok());
}

#[test]
fn treated_set_is_bounded() {
    // Straight to the routing step (signing 16k values would dominate the test time).
    let mut book = PeerRequests::new();
    for id in 1..=(MAX_TREATED as u64 + 10) {
        let req = PeerConnectionRequest { id, ..sample() };
        let r = Received {
            req,
            from: InfoHash([1; 20]),
            owner: Vec::new(),
        };
        assert!(book.handle_received(0, r).is_ok());
    }
    assert_eq!(book.treated_len(), MAX_TREATED);
    assert_eq!(book.stats.treated_evicted, 10);
}

#[test]
fn answer_matches_pending_request_of_that_device_only() {
    let (a, b, c) = keys();
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let mut alice = PeerRequests::new();
    let mut bob = PeerRequests::new();
    let req = alice
        .request(0, &mut rng, short(b), "ua\npa\n".into(), "sync".into())
        .unwrap();
    assert!((1..=MAX_REQUEST_ID).contains(&req.id));
    assert_eq!(alice.poll_timeout(), Some(ANSWER_TIMEOUT_MS));
    let (_, v) = seal(&req, a, &b.public_key(), 1, &mut rng).unwrap();
    let Ok(Incoming::Request(got)) = bob.handle_encrypted(10, b, &v) else {
        panic!("request refused")
    };
    assert_eq!(got.req, req);
    let answer = got.req.answer("ub\npb\n".into());
    assert_eq!((answer.id, answer.is_answer), (req.id, true));
    // c answers in b's place: refused and counted, and the request stays pending.
    let (_, forged) = seal(&answer, c, &a.public_key(), 2, &mut rng).unwrap();
    assert_eq!(
        alice.handle_encrypted(20, a, &forged),
        Err(RequestError::UnexpectedAnswer(req.id))
    );
    assert_eq!(alice.stats.unexpected_answers, 1);
    assert_eq!(alice.pending_len(), 1);
    // jamid marks the id treated before routing, so the genuine answer with the same id
    // is now a replay; a new request gets through with b's genuine answer.
    let req2 = alice
        .request(30, &mut rng, short(b), "ua\npa\n".into(), String::new())
        .unwrap();
    let (_, ans2) = seal(&req2.answer("ub\n".into()), b, &a.public_key(), 3, &mut rng).unwrap();
    assert!(matches!(
        alice.handle_encrypted(40, a, &ans2),
        Ok(Incoming::Answer(r)) if r.from == short(b)
    ));
    assert_eq!(alice.pending_len(), 1);
}

#[test]
fn unanswered_requests_time_out_after_30_s() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut book = PeerRequests::new();
    let peer = InfoHash([7; 20]);
    let r = book
        .request(1_000, &mut rng, peer, String::new(), String::new())
        .unwrap();
    book.handle_timeout(1_000 + ANSWER_TIMEOUT_MS - 1);
    assert_eq!(book.poll_event(), None);
    book.handle_timeout(1_000 + ANSWER_TIMEOUT_MS);
    assert_eq!(
        book.poll_event(),
        Some(RequestEvent::TimedOut { id: r.id, peer })
    );
    assert_eq!((book.stats.timeouts, book.pending_len()), (1, 0));
    assert_eq!(book.poll_timeout(), None);
}

#[test]
fn pending_requests_are_capped() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let mut book = PeerRequests::new();
    for _ in 0..MAX_PENDING_REQUESTS {
        book.request(0, &mut rng, InfoHash([1; 20]), String::new(), String::new())
            .unwrap();
    }
    assert_eq!(
        book.request(0, &mut rng, InfoHash([1; 20]), String::new(), String::new()),
        Err(RequestError::TooManyPending)
    );
}

proptest! {
    #[test]
    fn unpack_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let _ = PeerConnectionRequest::unpack(&bytes);
    }

    #[test]
    fn round_trips(id: u64, ice in "[ -~\n]{0,80}", ans: bool, ct in "[a-z/-]{0,20}") {
        let r = PeerConnectionRequest { id, ice_msg: ice, is_answer: ans, conn_type: ct };
        prop_assert_eq!(PeerConnectionRequest::unpack(&r.pack()).unwrap(), r);
    }

    #[test]
    fn mutated_requests_never_panic(pos: usize, byte: u8) {
        let mut b = sample().pack();
        let i = pos % b.len();
        b[i] = byte;
        let _ = PeerConnectionRequest::unpack(&b);
    }
}

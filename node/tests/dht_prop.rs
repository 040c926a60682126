//! Property tests: hostile bytes never panic; typed messages and values
//! survive encode → decode unchanged.

use node::dht::msgpack;
use node::dht::value::{Body, SignedValue, Value, ValueData};
use node::dht::wire::{
    decode, encode, ErrorMsg, FieldEntry, FieldFilter, FieldsReply, Find, Get, LegacyUpdate,
    Listen, Message, MessageBody, NodeInfo, Put, Query, Refresh, Reply, Update, ValuePart,
    ValueSlot,
};
use node::dht::InfoHash;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

fn hash() -> impl Strategy<Value = InfoHash> {
    any::<[u8; 20]>().prop_map(InfoHash)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn body() -> impl Strategy<Value = Body> {
    (any::<u16>(), bytes(64), "[a-z_]{0,12}").prop_map(|(type_id, data, utype)| Body {
        type_id,
        data,
        utype,
    })
}

fn value() -> impl Strategy<Value = Value> {
    let data = prop_oneof![
        body().prop_map(ValueData::Plain),
        (
            any::<u16>(),
            bytes(40),
            option::of(hash()),
            body(),
            vec(any::<u8>(), 1..64)
        )
            .prop_map(
                |(seq, owner, to, body, sig)| ValueData::Signed(SignedValue {
                    seq,
                    owner,
                    to: to.filter(|t| !t.is_zero()),
                    body,
                    sig,
                    received_body: None,
                })
            ),
        bytes(80).prop_map(ValueData::Encrypted),
    ];
    (any::<u64>(), data, any::<u32>()).prop_map(|(id, data, priority)| Value { id, data, priority })
}

/// What decoding a packed value yields: the received body bytes are kept.
fn as_received(mut v: Value) -> Value {
    let body = v.signed_body_bytes();
    if let ValueData::Signed(s) = &mut v.data {
        s.received_body = body;
    }
    v
}

fn slots() -> impl Strategy<Value = Vec<ValueSlot>> {
    vec(
        prop_oneof![
            value().prop_map(|v| ValueSlot::Inline(v.pack())),
            any::<u64>().prop_map(ValueSlot::Size),
        ],
        0..4,
    )
}

fn query() -> impl Strategy<Value = Query> {
    let filter = prop_oneof![
        any::<u64>().prop_map(FieldFilter::Id),
        any::<u64>().prop_map(FieldFilter::ValueType),
        hash().prop_map(FieldFilter::OwnerPk),
        bytes(16).prop_map(FieldFilter::UserType),
    ];
    (vec(0u8..6, 0..5), vec(filter, 0..3)).prop_map(|(select, filters)| Query { select, filters })
}

fn want() -> impl Strategy<Value = Option<Vec<u16>>> {
    option::of(vec(any::<u16>(), 0..3))
}

fn token() -> impl Strategy<Value = Vec<u8>> {
    bytes(40)
}

fn nodes4() -> impl Strategy<Value = Vec<NodeInfo>> {
    vec(
        (hash(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(id, ip, port)| NodeInfo {
            id,
            addr: SocketAddr::V4(SocketAddrV4::new(ip.into(), port)),
        }),
        0..4,
    )
}

fn nodes6() -> impl Strategy<Value = Vec<NodeInfo>> {
    vec(
        (hash(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(id, ip, port)| NodeInfo {
            id,
            addr: SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, 0)),
        }),
        0..3,
    )
}

fn sa() -> impl Strategy<Value = Option<IpAddr>> {
    option::of(prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ])
}

fn fields() -> impl Strategy<Value = FieldsReply> {
    let entry = prop_oneof![
        any::<u64>().prop_map(FieldEntry::Uint),
        bytes(24).prop_map(FieldEntry::Bin),
        bytes(24).prop_map(FieldEntry::Str),
    ];
    (vec(1u8..6, 1..4), vec(entry, 0..6))
        .prop_map(|(fields, values)| FieldsReply { fields, values })
}

fn reply() -> impl Strategy<Value = Reply> {
    (
        hash(),
        option::of(any::<u64>()),
        sa(),
        nodes4(),
        nodes6(),
        token(),
        slots(),
        option::of(fields()),
    )
        .prop_map(
            |(id, vid, sa, nodes4, nodes6, token, values, fields)| Reply {
                id,
                vid,
                sa,
                nodes4,
                nodes6,
                token,
                // OpenDHT ignores `fileds` when `values` is present.
                fields: if values.is_empty() { fields } else { None },
                values,
            },
        )
}

fn update() -> impl Strategy<Value = Update> {
    let with_values = (
        hash(),
        any::<i32>(),
        hash(),
        any::<u32>(),
        slots(),
        option::of(any::<i64>()),
        token(),
    )
        .prop_map(|(id, version, h, sid, values, created, token)| Update {
            id,
            version,
            h: Some(h),
            sid,
            values: Some(values),
            created,
            token,
            refreshed: vec![],
            expired: vec![],
        });
    let ids = (
        hash(),
        any::<u32>(),
        token(),
        vec(any::<u64>(), 0..3),
        vec(any::<u64>(), 0..3),
    )
        .prop_map(|(id, sid, token, refreshed, expired)| Update {
            id,
            version: 0,
            h: None,
            sid,
            values: None,
            created: None,
            token,
            refreshed,
            expired,
        });
    prop_oneof![with_values, ids]
}

fn body_strategy() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        hash().prop_map(|id| MessageBody::Ping { id }),
        (hash(), hash(), want()).prop_map(|(id, target, want)| MessageBody::Find(Find {
            id,
            target,
            want
        })),
        (hash(), hash(), option::of(query()), want())
            .prop_map(|(id, h, query, want)| MessageBody::Get(Get { id, h, query, want })),
        (
            hash(),
            any::<i32>(),
            hash(),
            token(),
            any::<u32>(),
            option::of(query())
        )
            .prop_map(
                |(id, version, h, token, sid, query)| MessageBody::Listen(Listen {
                    id,
                    version,
                    h,
                    token,
                    sid,
                    query
                })
            ),
        (hash(), hash(), slots(), option::of(any::<i64>()), token()).prop_map(
            |(id, h, values, created, token)| MessageBody::Put(Put {
                id,
                h,
                values,
                created,
                token
            })
        ),
        (hash(), hash(), any::<u64>(), token())
            .prop_map(|(id, h, vid, token)| MessageBody::Refresh(Refresh { id, h, vid, token })),
        update().prop_map(MessageBody::Update),
        reply().prop_map(MessageBody::Reply),
        (
            hash(),
            token(),
            vec(any::<u64>(), 0..3),
            vec(any::<u64>(), 0..3)
        )
            .prop_map(|(id, token, refreshed, expired)| MessageBody::LegacyUpdate(
                LegacyUpdate {
                    id,
                    token,
                    refreshed,
                    expired
                }
            )),
        (any::<u16>(), ".{0,40}", option::of(hash()))
            .prop_map(|(code, msg, id)| MessageBody::Error(ErrorMsg { code, msg, id })),
        btree_map(any::<u32>(), (any::<u64>(), bytes(100)), 0..3).prop_map(|m| {
            MessageBody::ValueParts(
                m.into_iter()
                    .map(|(i, (offset, data))| (i, ValuePart { offset, data }))
                    .collect(),
            )
        }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<u32>(),
        prop_oneof![Just(0u32), any::<u32>()],
        body_strategy(),
    )
        .prop_map(|(tid, network, body)| Message {
            tid,
            network,
            is_client: false,
            body,
        })
}

proptest! {
    #[test]
    fn wire_decode_never_panics(b in bytes(512)) {
        let _ = decode(&b);
    }

    #[test]
    fn value_unpack_never_panics(b in bytes(512)) {
        let _ = Value::unpack(&b);
    }

    #[test]
    fn msgpack_parse_never_panics(b in bytes(512)) {
        if let Ok(n) = msgpack::parse(&b) {
            prop_assert_eq!(n.raw, &b[..]);
        }
    }

    /// Mutations of a valid message exercise the deeper decode paths.
    #[test]
    fn mutated_messages_never_panic(m in message(), pos in any::<usize>(), byte in any::<u8>()) {
        let mut b = encode(&m);
        if !b.is_empty() {
            let i = pos % b.len();
            b[i] = byte;
            let _ = decode(&b);
            b.truncate(i);
            let _ = decode(&b);
        }
    }

    #[test]
    fn messages_round_trip(m in message()) {
        let bytes = encode(&m);
        prop_assert_eq!(decode(&bytes), Ok(m));
    }

    #[test]
    fn values_round_trip(v in value()) {
        let packed = v.pack();
        prop_assert_eq!(Value::unpack(&packed), Ok(as_received(v)));
    }
}

/// Random msgpack documents whose map keys come from the protocol's key set,
/// so decoding gets past the envelope into every argument path.
fn doc(depth: u32) -> BoxedStrategy<Vec<u8>> {
    const KEYS: &[&str] = &[
        "y", "r", "u", "e", "p", "a", "t", "v", "n", "s", "q", "sid", "id", "h", "target", "token",
        "vid", "n4", "n6", "sa", "c", "values", "exp", "re", "fileds", "w", "ve", "f", "o", "d",
        "dat", "body", "data", "type", "owner", "seq", "sig", "to", "utype", "ping", "get",
        "update",
    ];
    let leaf = prop_oneof![
        any::<u64>().prop_map(|v| {
            let mut w = msgpack::Writer::new();
            w.uint(v % 300);
            w.into_bytes()
        }),
        any::<i64>().prop_map(|v| {
            let mut w = msgpack::Writer::new();
            w.int(v);
            w.into_bytes()
        }),
        vec(any::<u8>(), 0..40).prop_map(|b| {
            let mut w = msgpack::Writer::new();
            w.bin(&b);
            w.into_bytes()
        }),
        (0usize..KEYS.len()).prop_map(|i| {
            let mut w = msgpack::Writer::new();
            w.str(KEYS[i]);
            w.into_bytes()
        }),
        Just(vec![0xc0]),
        Just(vec![0xc3]),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let inner = doc(depth - 1);
    prop_oneof![
        leaf,
        vec(inner.clone(), 0..6).prop_map(|items| {
            let mut w = msgpack::Writer::new();
            w.array_len(items.len());
            for i in items {
                w.raw(&i);
            }
            w.into_bytes()
        }),
        vec((0usize..KEYS.len(), inner), 0..8).prop_map(|items| {
            let mut w = msgpack::Writer::new();
            w.map_len(items.len());
            for (k, v) in items {
                w.str(KEYS[k]).raw(&v);
            }
            w.into_bytes()
        }),
    ]
    .boxed()
}

proptest! {
    #[test]
    fn structured_documents_never_panic(b in doc(4)) {
        let _ = decode(&b);
        let _ = Value::unpack(&b);
        if let Ok(m) = decode(&b) {
            // Whatever decodes must re-encode to something that decodes the same.
            prop_assert_eq!(decode(&encode(&m)).map(|x| encode(&x)), Ok(encode(&m)));
        }
    }
}

//! The msgpack reader under every DHT datagram: never panics, every node's `raw` span is
//! exactly the bytes it was read from (signatures and forwarded values rely on it), and
//! the writer's canonical form of what was read reads back to the same document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::dht::msgpack::{self, Kind, MsgpackError, Node, Writer};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("msgpack"),
    |data: &[u8]| {
        let whole = msgpack::parse(data);
        let (node, used) = match msgpack::parse_prefix(data) {
            Ok(ok) => ok,
            Err(e) => {
                assert_eq!(whole.err(), Some(e), "parse and parse_prefix disagree");
                return;
            }
        };
        assert_eq!(node.raw, &data[..used]);
        match whole {
            Ok(n) => assert!(used == data.len() && same(&n, &node)),
            Err(e) => assert_eq!(e, MsgpackError::TrailingBytes(data.len() - used)),
        }
        check_spans(&node);
        let canon = canonical(&node);
        let again = msgpack::parse(&canon).expect("the canonical form parses");
        assert!(same(&node, &again), "canonical form changed the document");
        assert_eq!(canonical(&again), canon, "canonical form is not a fixpoint");
    }
);

/// Each child's span lies inside its parent's, in order, and re-reads to the same child.
fn check_spans(n: &Node<'_>) {
    let children: Vec<&Node<'_>> = match &n.kind {
        Kind::Array(items) => items.iter().collect(),
        Kind::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return,
    };
    let base = n.raw.as_ptr() as usize;
    let mut pos = 1; // past the shortest header
    let last = children.len();
    for c in children {
        let start = c.raw.as_ptr() as usize - base;
        assert!(
            start >= pos && start + c.raw.len() <= n.raw.len(),
            "child span escapes"
        );
        pos = start + c.raw.len();
        let reread = msgpack::parse(c.raw).expect("a child's span parses alone");
        assert!(same(c, &reread));
        check_spans(c);
    }
    if last > 0 {
        assert_eq!(pos, n.raw.len(), "bytes after the last child");
    }
}

/// Structural equality that treats floats by their bits (NaN included) and ignores spans.
fn same(a: &Node<'_>, b: &Node<'_>) -> bool {
    match (&a.kind, &b.kind) {
        (Kind::F32(x), Kind::F32(y)) => x.to_bits() == y.to_bits(),
        (Kind::F64(x), Kind::F64(y)) => x.to_bits() == y.to_bits(),
        (Kind::Array(x), Kind::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Kind::Map(x), Kind::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same(k1, k2) && same(v1, v2))
        }
        (x, y) => x == y,
    }
}

/// The writer's encoding of `n` (floats and ext, which it has no call for, verbatim).
fn canonical(n: &Node<'_>) -> Vec<u8> {
    let mut w = Writer::new();
    write(&mut w, n);
    w.into_bytes()
}

fn write(w: &mut Writer, n: &Node<'_>) {
    match &n.kind {
        Kind::Nil => w.nil(),
        Kind::Bool(b) => w.bool(*b),
        Kind::Uint(u) => w.uint(*u),
        Kind::Int(i) => w.int(*i),
        Kind::Str(s) => w.str_bytes(s),
        Kind::Bin(b) => w.bin(b),
        Kind::F32(_) | Kind::F64(_) | Kind::Ext(..) => w.raw(n.raw),
        Kind::Array(items) => {
            w.array_len(items.len());
            items.iter().for_each(|i| write(w, i));
            w
        }
        Kind::Map(pairs) => {
            w.map_len(pairs.len());
            for (k, v) in pairs {
                write(w, k);
                write(w, v);
            }
            w
        }
    };
}

//! Certificate chains: concatenated PEM, leaf first (OpenDHT `Certificate::pack`), and
//! the type-8 DHT value that carries one (PROTOCOLS §2.6).
//!
//! Decoding follows `Certificate::unpack`: try PEM (markers are searched, so leading
//! bytes such as a msgpack bin header are skipped, like GnuTLS), else DER; the chain
//! must be sorted leaf first (`GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED`).

use der::{Decode, Encode, Reader, SliceReader};

use super::cert::{CertError, Certificate};
use crate::dht::msgpack;

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";

type Result<T> = std::result::Result<T, CertError>;

/// One `CERTIFICATE` PEM block: base64 in 64-column lines, LF endings, trailing LF.
pub fn pem_block(der: &[u8]) -> String {
    // Encoding into a String cannot fail for this label.
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).unwrap_or_default()
}

/// The chain as concatenated PEM, in the order given (leaf first).
pub fn encode_pem_chain(chain: &[Certificate]) -> String {
    chain.iter().map(Certificate::to_pem).collect()
}

/// Decodes a PEM chain (anything before, between and after the blocks is ignored) or,
/// when there is no PEM marker, one or more concatenated DER certificates.
pub fn decode_chain(bytes: &[u8]) -> Result<Vec<Certificate>> {
    let chain = if find(bytes, BEGIN).is_some() {
        decode_pem(bytes)?
    } else {
        decode_der(bytes)?
    };
    if chain.is_empty() {
        return Err(CertError::Empty);
    }
    for (index, pair) in chain.windows(2).enumerate() {
        if pair[0].issuer_der_name() != pair[1].subject_der_name() {
            return Err(CertError::Unsorted { index });
        }
    }
    Ok(chain)
}

fn decode_pem(bytes: &[u8]) -> Result<Vec<Certificate>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(start) = find(rest, BEGIN) {
        let block = &rest[start..];
        let end = find(block, END)
            .ok_or_else(|| CertError::Decode("PEM block without END line".into()))?
            + END.len();
        let (label, der) = der::pem::decode_vec(&block[..end])
            .map_err(|e| CertError::Decode(format!("bad PEM: {e}")))?;
        if label != "CERTIFICATE" {
            return Err(CertError::Decode(format!("unexpected PEM label {label}")));
        }
        out.push(Certificate::from_der(&der)?);
        rest = &block[end..];
    }
    Ok(out)
}

fn decode_der(bytes: &[u8]) -> Result<Vec<Certificate>> {
    let mut out = Vec::new();
    let mut reader = SliceReader::new(bytes).map_err(|e| CertError::Decode(e.to_string()))?;
    while !reader.is_finished() {
        let parsed = x509_cert::Certificate::decode(&mut reader)
            .map_err(|e| CertError::Decode(e.to_string()))?;
        let der = parsed
            .to_der()
            .map_err(|e| CertError::Decode(e.to_string()))?;
        out.push(Certificate::from_parsed(der, parsed)?);
    }
    Ok(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks every link: entry i is issued by entry i+1 (names, CA flag, signature), and
/// a self-issued top verifies its own signature. Trust in the top is the caller's call.
pub fn verify_chain(chain: &[Certificate]) -> Result<()> {
    let top = chain.last().ok_or(CertError::Empty)?;
    for (index, pair) in chain.windows(2).enumerate() {
        pair[0]
            .verify_issued_by(&pair[1])
            .map_err(|e| CertError::Link {
                index,
                reason: Box::new(e),
            })?;
    }
    if top.is_self_issued() {
        top.verify_signature_by(top).map_err(|e| CertError::Link {
            index: chain.len() - 1,
            reason: Box::new(e),
        })?;
    }
    Ok(())
}

/// `data` of the type-8 certificate value: msgpack bin of the PEM chain.
pub fn to_value_data(chain: &[Certificate]) -> Vec<u8> {
    let mut w = msgpack::Writer::new();
    w.bin(encode_pem_chain(chain).as_bytes());
    w.into_bytes()
}

/// Reads a type-8 value's `data`: a msgpack bin (or str) wrapping the chain, or the raw
/// PEM/DER chain as some writers put it.
pub fn from_value_data(data: &[u8]) -> Result<Vec<Certificate>> {
    match msgpack::parse(data) {
        Ok(node) => match node.as_bin().or_else(|| node.as_str_bytes()) {
            Some(inner) => decode_chain(inner),
            None => decode_chain(data),
        },
        Err(_) => decode_chain(data),
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::crypto::PrivateKey;
    use crate::identity::cert::CertSigner;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use std::sync::OnceLock;

    const NOW: u64 = 1_790_000_000;

    /// CA → intermediate CA → leaf, 1024-bit keys (speed).
    fn chain() -> &'static Vec<Certificate> {
        static CHAIN: OnceLock<Vec<Certificate>> = OnceLock::new();
        CHAIN.get_or_init(|| {
            let mut rng = ChaCha20Rng::seed_from_u64(7);
            let k: Vec<PrivateKey> = (0..3)
                .map(|_| PrivateKey::generate(1024, &mut rng).expect("keygen"))
                .collect();
            let ca = Certificate::generate(&k[0], "CA", None, true, NOW, &mut rng).expect("ca");
            let mid = Certificate::generate(
                &k[1],
                "mid",
                Some((CertSigner::Rsa(&k[0]), &ca)),
                true,
                NOW,
                &mut rng,
            )
            .expect("mid");
            let leaf = Certificate::generate(
                &k[2],
                "leaf",
                Some((CertSigner::Rsa(&k[1]), &mid)),
                false,
                NOW,
                &mut rng,
            )
            .expect("leaf");
            vec![leaf, mid, ca]
        })
    }

    #[test]
    fn pem_chain_round_trips_and_verifies() {
        let pem = encode_pem_chain(chain());
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back = decode_chain(pem.as_bytes()).expect("decode");
        assert_eq!(&back, chain());
        verify_chain(&back).expect("valid chain");
    }

    #[test]
    fn value_data_is_msgpack_bin_and_raw_forms_are_accepted() {
        let data = to_value_data(chain());
        assert_eq!(data[0], 0xc5, "bin16 header for a ~2 KiB chain");
        assert_eq!(&from_value_data(&data).expect("bin"), chain());
        // What GnuTLS sees in 2.4.12: the whole data, header bytes first.
        assert_eq!(&decode_chain(&data).expect("garbage prefix"), chain());
        let pem = encode_pem_chain(chain());
        assert_eq!(&from_value_data(pem.as_bytes()).expect("raw pem"), chain());
        let der: Vec<u8> = chain().iter().flat_map(|c| c.der().to_vec()).collect();
        assert_eq!(&from_value_data(&der).expect("raw der"), chain());
    }

    #[test]
    fn unsorted_and_broken_chains_are_refused() {
        let c = chain();
        let swapped = encode_pem_chain(&[c[1].clone(), c[0].clone()]);
        assert_eq!(
            decode_chain(swapped.as_bytes()),
            Err(CertError::Unsorted { index: 0 })
        );
        assert!(matches!(
            decode_chain(b"no certificate here"),
            Err(CertError::Decode(_))
        ));
        assert_eq!(decode_chain(b""), Err(CertError::Empty));
        let skipped = [c[0].clone(), c[2].clone()];
        assert!(matches!(
            verify_chain(&skipped),
            Err(CertError::Link { index: 0, .. })
        ));
        let pem = encode_pem_chain(c);
        let truncated = &pem.as_bytes()[..pem.len() - 30];
        assert!(decode_chain(truncated).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_chain(&bytes);
            let _ = from_value_data(&bytes);
        }

        #[test]
        fn mutated_certificates_never_panic(pos in 0usize..4096, byte in any::<u8>(), cut in 0usize..4096) {
            let mut der = chain()[0].der().to_vec();
            let p = pos % der.len();
            der[p] = byte;
            der.truncate(cut.max(1) % (der.len() + 1));
            if let Ok(c) = Certificate::from_der(&der) {
                let _ = c.verify_issued_by(&chain()[1]);
            }
        }
    }
}

//! The account's Ethereum address (the archive's `ethKey`, PROTOCOLS §4.3): jamid keeps
//! it from the Ring name-service days and still writes it into every device receipt.
//! Address = last 20 bytes of Keccak-256 of the uncompressed secp256k1 public key
//! without its 0x04 prefix, printed as 40 lowercase hex digits (no `0x`), as jamid's
//! `dev::Address::hex()` does.

use sha3::{Digest, Keccak256};

/// Why an eth key has no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EthError {
    #[error("eth key is {0} bytes, not 32")]
    Length(usize),
    #[error("eth key is not a valid secp256k1 secret (zero or not below the group order)")]
    OutOfRange,
}

/// The address of a 32-byte secp256k1 secret.
pub fn eth_address(secret: &[u8]) -> Result<String, EthError> {
    if secret.len() != 32 {
        return Err(EthError::Length(secret.len()));
    }
    let key = k256::SecretKey::from_slice(secret).map_err(|_| EthError::OutOfRange)?;
    let point =
        k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key.public_key(), false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    Ok(crate::crypto::hex(&hash[12..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_key_gives_the_known_address() {
        // Secret 1: its public key is the generator G, whose address is well known.
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(
            eth_address(&one).unwrap(),
            "7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
    }

    #[test]
    fn bad_secrets_are_errors() {
        assert_eq!(eth_address(&[1; 31]), Err(EthError::Length(31)));
        assert_eq!(eth_address(&[0; 32]), Err(EthError::OutOfRange));
        assert_eq!(eth_address(&[0xff; 32]), Err(EthError::OutOfRange));
    }
}

//! X.509 distinguished names the way OpenDHT builds and reads them: a `CN` RDN then a
//! `UID` RDN, each string a PrintableString when its characters allow, else UTF8String
//! (what GnuTLS `gnutls_x509_crt_set_dn_by_oid` picks).

use der::asn1::{Any, SetOfVec};
use der::oid::ObjectIdentifier;
use der::{Tag, Tagged};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

/// id-at-commonName (2.5.4.3).
pub const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// LDAP userid, `UID` (0.9.2342.19200300.100.1.1).
pub const OID_UID: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1");

/// Characters of the ASN.1 PrintableString alphabet.
fn is_printable(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b))
}

fn attribute(oid: ObjectIdentifier, value: &str) -> der::Result<AttributeTypeAndValue> {
    let tag = if is_printable(value) {
        Tag::PrintableString
    } else {
        Tag::Utf8String
    };
    Ok(AttributeTypeAndValue {
        oid,
        value: Any::new(tag, value.as_bytes())?,
    })
}

/// `CN=<cn>, UID=<uid>` as two single-attribute RDNs, in that order.
pub fn build(cn: &str, uid: Option<&str>) -> der::Result<Name> {
    let mut rdns = Vec::new();
    for (oid, value) in [(OID_CN, Some(cn)), (OID_UID, uid)] {
        if let Some(v) = value {
            let set = SetOfVec::try_from(vec![attribute(oid, v)?])?;
            rdns.push(RelativeDistinguishedName(set));
        }
    }
    Ok(RdnSequence(rdns))
}

/// The first value of attribute `oid` as text (GnuTLS `get_dn_by_oid(…, 0, …)`).
/// BMPString is decoded from UTF-16; other string types are taken as UTF-8 (lossy).
pub fn first(name: &Name, oid: ObjectIdentifier) -> Option<String> {
    let atv = name
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == oid)?;
    let bytes = atv.value.value();
    Some(match atv.value.tag() {
        Tag::BmpString => {
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    })
}

#[cfg(test)]
mod unit {
    use super::*;
    use der::Encode;

    #[test]
    fn printable_names_match_gnutls_bytes() {
        // Subject of a python3-opendht certificate named "my CA" (UID shortened here).
        let name = build("my CA", Some("7b38")).expect("name");
        let der = name.to_der().expect("der");
        let expected = hex::decode(concat!(
            "3026",
            "310e300c0603550403",
            "13056d79204341",
            "31143012060a0992268993f22c640101",
            "130437623338"
        ))
        .expect("hex");
        assert_eq!(der, expected);
        assert_eq!(first(&name, OID_CN).as_deref(), Some("my CA"));
        assert_eq!(first(&name, OID_UID).as_deref(), Some("7b38"));
    }

    #[test]
    fn non_printable_names_use_utf8string() {
        let name = build("Jami_é", None).expect("name");
        let der = name.to_der().expect("der");
        assert!(der.windows(2).any(|w| w == [0x0c, 7]), "{der:02x?}");
        assert_eq!(first(&name, OID_CN).as_deref(), Some("Jami_é"));
        assert_eq!(first(&name, OID_UID), None);
    }
}

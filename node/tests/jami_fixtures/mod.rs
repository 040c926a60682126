//! The files the official jamid 13.7 wrote (tests/fixtures/jami-13.7, see its README)
//! and the ids it reported for them, shared by the tests that read them.
#![allow(dead_code)] // each test file uses some of these

pub const PLAIN_ACCOUNT: &str = "56d45596fd3c7fd410bf02c6d620a0a4fb9d801f";
pub const PLAIN_DEVICE_SHORT: &str = "904c3bd6754969a3ddd2bf4b4db664365549c8a4";
pub const PLAIN_DEVICE_ID: &str =
    "bb1dab7472753294cbd8721d3f151c35634908f66cf4a328a6ed4a8750a6b760";
pub const PASSWORD_ACCOUNT: &str = "bcc7095f046ede47d523d05b192a8dbb4b28fcc0";
pub const PASSWORD_DEVICE_SHORT: &str = "2399086b1be39a60ebeb0cb51b81c9f034573aad";
/// `Account.archivePassword` of `password_archive.gz`.
pub const PASSWORD: &str = "secret pw";

/// The bytes of one fixture file.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/jami-13.7/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

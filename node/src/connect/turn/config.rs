//! TURN settings as jamid keeps them in an account (`TURN.enable`, `TURN.server`,
//! `TURN.username`, `TURN.password`, `TURN.realm`; PROTOCOLS §6.3 for the defaults).

use std::net::SocketAddr;

/// Default TURN port when `TURN.server` names none (RFC 5766 §6, jamid's default).
pub const DEFAULT_PORT: u16 = 3478;
/// jamid's default `TURN.server`.
pub const DEFAULT_SERVER: &str = "turn.jami.net";
/// jamid's default `TURN.username`, `TURN.password` and `TURN.realm`.
pub const DEFAULT_CREDENTIAL: &str = "ring";

/// The account's TURN keys, verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnAccountConfig {
    /// `TURN.enable`
    pub enable: bool,
    /// `TURN.server`: "host[:port]", IPv6 literals in brackets.
    pub server: String,
    /// `TURN.username`
    pub username: String,
    /// `TURN.password`
    pub password: String,
    /// `TURN.realm`
    pub realm: String,
}

impl Default for TurnAccountConfig {
    fn default() -> Self {
        TurnAccountConfig {
            enable: true,
            server: DEFAULT_SERVER.into(),
            username: DEFAULT_CREDENTIAL.into(),
            password: DEFAULT_CREDENTIAL.into(),
            realm: DEFAULT_CREDENTIAL.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("TURN.server is empty")]
    Empty,
    #[error("TURN.server {0:?}: bad port")]
    BadPort(String),
    #[error("TURN.server {0:?}: unclosed IPv6 bracket")]
    BadBracket(String),
}

impl TurnAccountConfig {
    /// Reads the keys from jamid's account details (missing keys keep their defaults).
    pub fn from_details<'a>(details: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut cfg = TurnAccountConfig::default();
        for (key, value) in details {
            match key {
                "TURN.enable" => cfg.enable = value == "true",
                "TURN.server" => cfg.server = value.into(),
                "TURN.username" => cfg.username = value.into(),
                "TURN.password" => cfg.password = value.into(),
                "TURN.realm" => cfg.realm = value.into(),
                _ => {}
            }
        }
        cfg
    }

    /// `TURN.server` split into host (brackets removed) and port.
    pub fn host_port(&self) -> Result<(String, u16), ConfigError> {
        parse_host_port(self.server.trim())
    }
}

fn parse_host_port(s: &str) -> Result<(String, u16), ConfigError> {
    if s.is_empty() {
        return Err(ConfigError::Empty);
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    let port = |p: &str| p.parse::<u16>().map_err(|_| ConfigError::BadPort(s.into()));
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or_else(|| ConfigError::BadBracket(s.into()))?;
        return match tail.strip_prefix(':') {
            Some(p) => Ok((host.into(), port(p)?)),
            None if tail.is_empty() => Ok((host.into(), DEFAULT_PORT)),
            None => Err(ConfigError::BadPort(s.into())),
        };
    }
    // A bare IPv6 literal has several colons and no port.
    if s.matches(':').count() > 1 {
        return Ok((s.into(), DEFAULT_PORT));
    }
    match s.split_once(':') {
        Some((host, p)) if !host.is_empty() => Ok((host.into(), port(p)?)),
        Some(_) => Err(ConfigError::Empty),
        None => Ok((s.into(), DEFAULT_PORT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_jamids() {
        let c = TurnAccountConfig::default();
        assert!(c.enable);
        assert_eq!(c.host_port().unwrap(), ("turn.jami.net".into(), 3478));
        assert_eq!(
            (c.username.as_str(), c.password.as_str(), c.realm.as_str()),
            ("ring", "ring", "ring")
        );
    }

    #[test]
    fn server_forms() {
        let hp = |s: &str| parse_host_port(s);
        assert_eq!(
            hp("turn.example:5349").unwrap(),
            ("turn.example".into(), 5349)
        );
        assert_eq!(hp("192.0.2.1").unwrap(), ("192.0.2.1".into(), 3478));
        assert_eq!(hp("[2001:db8::1]:80").unwrap(), ("2001:db8::1".into(), 80));
        assert_eq!(hp("[2001:db8::1]").unwrap(), ("2001:db8::1".into(), 3478));
        assert_eq!(hp("2001:db8::1").unwrap(), ("2001:db8::1".into(), 3478));
        assert!(matches!(hp("host:99999"), Err(ConfigError::BadPort(_))));
        assert!(matches!(hp("host:"), Err(ConfigError::BadPort(_))));
        assert!(matches!(hp("[::1"), Err(ConfigError::BadBracket(_))));
        assert_eq!(hp(""), Err(ConfigError::Empty));
    }

    #[test]
    fn details_override_defaults() {
        let c = TurnAccountConfig::from_details([
            ("TURN.enable", "false"),
            ("TURN.server", "203.0.113.2:3478"),
            ("TURN.username", "jami"),
            ("Account.alias", "x"),
        ]);
        assert!(!c.enable);
        assert_eq!(c.username, "jami");
        assert_eq!(c.password, "ring");
        assert_eq!(c.host_port().unwrap(), ("203.0.113.2".into(), 3478));
    }
}

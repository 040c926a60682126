//! OpenDHT's SecureDht over a proxy client: what `dhtnode --proxyclient` and a jamid
//! with `Account.proxyEnabled` do instead of joining the DHT over UDP. Values read
//! through the proxy pass the same filter as on UDP (decrypt what is for us, drop
//! forged signatures); signed and encrypted puts are made here and posted; our
//! certificate is announced through the proxy so others can encrypt for us.

use super::client::{ClientError, Lines, ProxyClient};
use super::json::ProxyValue;
use crate::dht::secure::{self, certificate_key, certificate_value, SecureError, SecureStats};
use crate::dht::{Body, InfoHash, Value};
use crate::identity::NodeIdentity;
use crate::net::{Connector, TcpConnector};
use rand_chacha::ChaCha20Rng;
use std::sync::Mutex;

/// Why a secure operation through the proxy failed.
#[derive(Debug, thiserror::Error)]
pub enum SecureProxyError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Secure(#[from] SecureError),
    #[error("no certificate found for {0}")]
    NoCertificate(InfoHash),
    #[error("signing and encrypting need an identity")]
    NoIdentity,
}

/// A proxy client with an identity (or none: then only plain values can be put).
pub struct SecureProxy<C = TcpConnector> {
    pub client: ProxyClient<C>,
    identity: Option<NodeIdentity>,
    rng: Mutex<ChaCha20Rng>,
    stats: Mutex<SecureStats>,
}

impl<C: Connector + 'static> SecureProxy<C> {
    pub fn new(client: ProxyClient<C>, identity: Option<NodeIdentity>, rng: ChaCha20Rng) -> Self {
        SecureProxy {
            client,
            identity,
            rng: Mutex::new(rng),
            stats: Mutex::new(SecureStats::default()),
        }
    }

    /// Our public key's short id, with an identity.
    pub fn public_key_id(&self) -> Option<InfoHash> {
        self.identity
            .as_ref()
            .map(|i| InfoHash(i.key().public_key().short_id()))
    }

    /// What the filter refused so far.
    pub fn stats(&self) -> SecureStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The get filter, as SecureDht applies it to UDP gets.
    pub fn filter(&self, values: Vec<Value>) -> Vec<Value> {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        secure::filter(self.identity.as_ref(), values, &mut stats)
    }

    pub async fn get(&self, key: &InfoHash) -> Result<Vec<Value>, SecureProxyError> {
        Ok(self.filter(self.client.get(key).await?))
    }

    /// A listen stream; pass each value through [`SecureProxy::filter_one`].
    pub async fn listen(&self, key: &InfoHash) -> Result<Lines, SecureProxyError> {
        Ok(self.client.listen(key).await?)
    }

    /// One streamed value through the filter (`None`: a forged signature, dropped).
    pub fn filter_one(&self, pv: ProxyValue) -> Option<ProxyValue> {
        let value = self.filter(vec![pv.value]).pop()?;
        Some(ProxyValue { value, ..pv })
    }

    pub async fn put(
        &self,
        key: &InfoHash,
        v: &Value,
        permanent: bool,
    ) -> Result<Value, SecureProxyError> {
        Ok(self.client.put(key, v, permanent).await?)
    }

    /// putSigned: our next `seq` for value `id` (one more than the highest of ours found
    /// at `key`), signed, then posted.
    pub async fn put_signed(
        &self,
        key: &InfoHash,
        id: u64,
        body: Body,
    ) -> Result<Value, SecureProxyError> {
        let me = self.identity.as_ref().ok_or(SecureProxyError::NoIdentity)?;
        let owner = me.key().public_key().spki_der().to_vec();
        let seq = secure::next_seq_of(&self.get(key).await?, id, &owner);
        let v = secure::sign(me.key(), id, seq, body, None)?;
        self.put(key, &v, false).await
    }

    /// putEncrypted: the certificate of `to` is looked up through the proxy (type 8 at
    /// `to`, accepted only if its key hashes to `to`), then the value is signed,
    /// encrypted for it and posted.
    pub async fn put_encrypted(
        &self,
        key: &InfoHash,
        to: &InfoHash,
        id: u64,
        body: Body,
    ) -> Result<Value, SecureProxyError> {
        let me = self.identity.as_ref().ok_or(SecureProxyError::NoIdentity)?;
        let recipient = self
            .client
            .get(to)
            .await?
            .iter()
            .find_map(|v| certificate_key(v, to))
            .ok_or(SecureProxyError::NoCertificate(*to))?;
        let v = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            secure::encrypt(me.key(), id, 0, body, &recipient, &mut rng)?
        };
        self.put(key, &v, false).await
    }

    /// Our certificate at our key id (permanent: the proxy keeps it on the DHT), as
    /// SecureDht announces it once connected.
    pub async fn announce(&self) -> Result<Option<Value>, SecureProxyError> {
        let (Some(me), Some(at)) = (&self.identity, self.public_key_id()) else {
            return Ok(None);
        };
        let v = certificate_value(me.chain_pem().as_bytes());
        Ok(Some(self.put(&at, &v, true).await?))
    }
}

//! `jamisim node account`: Jami accounts on disk (PROTOCOLS §4), compatible with jamid.
//!
//! An account directory holds the same files, under the same names, as jamid's own
//! account directory (`~/.local/share/jami/<account>/`), so `show` reads either:
//!
//! * `archive.gz` — the account archive (CA key, account key, account chain, eth key,
//!   CRL): gzip JSON, or encrypted when the account has a password (§4.3);
//! * `ring_device.key` — this device's private key (PKCS#8 PEM, mode 0600);
//! * `ring_device.crt` — this device's chain, device → account → CA (PEM).
//!
//! `link` fetches an archive published under a PIN over the DHT (§4.4).

use anyhow::{anyhow, bail, Context, Result};
use node::crypto::{hex, PrivateKey};
use node::identity::archive::generate_eth_key;
use node::identity::{
    decode_chain, verify_device_chain, AccountArchive, AccountIdentity, Certificate, DeviceIdentity,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The account archive in an account directory.
pub const ARCHIVE_FILE: &str = "archive.gz";
/// This device's private key.
pub const DEVICE_KEY_FILE: &str = "ring_device.key";
/// This device's certificate chain.
pub const DEVICE_CRT_FILE: &str = "ring_device.crt";

/// What `jamisim node account` was asked to do.
pub enum AccountOp {
    Create,
    Show {
        json: bool,
    },
    Export {
        out: PathBuf,
        out_password: Option<String>,
    },
    Import {
        archive: PathBuf,
    },
    Revoke {
        device: Option<String>,
        cert: Option<PathBuf>,
    },
    Link {
        pin: String,
        bootstrap: Vec<std::net::SocketAddr>,
        timeout_s: u64,
    },
}

/// Options shared by every `account` subcommand.
pub struct AccountOpts {
    pub dir: PathBuf,
    /// The archive's password (`""` = none).
    pub password: String,
    /// RSA key size of new keys (4096 like jamid; smaller only to keep tests fast).
    pub bits: usize,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn rng() -> ChaCha20Rng {
    let mut seed = [0u8; 32];
    rand::rng().fill(&mut seed);
    ChaCha20Rng::from_seed(seed)
}

/// Runs one account subcommand.
pub fn run(opts: &AccountOpts, op: AccountOp) -> Result<()> {
    if opts.bits < 1024 {
        bail!("--bits must be at least 1024");
    }
    match op {
        AccountOp::Create => create(opts),
        AccountOp::Show { json } => show(opts, json),
        AccountOp::Export { out, out_password } => export(opts, &out, out_password),
        AccountOp::Import { archive } => import(opts, &archive),
        AccountOp::Revoke { device, cert } => revoke(opts, device, cert),
        AccountOp::Link {
            pin,
            bootstrap,
            timeout_s,
        } => link(opts, &pin, &bootstrap, timeout_s),
    }
}

fn create(opts: &AccountOpts) -> Result<()> {
    refuse_existing(&opts.dir)?;
    let mut rng = rng();
    let account = AccountIdentity::generate(opts.bits, now(), &mut rng)?;
    let archive = AccountArchive::new(&account, generate_eth_key(&mut rng).to_vec());
    let device = account.new_device(opts.bits, now(), &mut rng)?;
    save(opts, &archive, &device, &mut rng)?;
    println!("created account {}", hex(&account.account_id()));
    println!("device {}", hex(&device.device_id()));
    Ok(())
}

fn import(opts: &AccountOpts, from: &Path) -> Result<()> {
    refuse_existing(&opts.dir)?;
    let archive = read_archive(from, &opts.password)?;
    let account = archive.account()?;
    let mut rng = rng();
    let device = account.new_device(opts.bits, now(), &mut rng)?;
    save(opts, &archive, &device, &mut rng)?;
    println!("imported account {}", hex(&account.account_id()));
    println!("new device {}", hex(&device.device_id()));
    Ok(())
}

/// PIN linking (§4.4): fetch the archive another device published under `pin` (jamid's
/// "link another device"), for the current and the previous 20-minute seed, through a
/// DHT node of our own joined via `bootstrap`; then a new device as for `import`.
fn link(
    opts: &AccountOpts,
    pin: &str,
    bootstrap: &[std::net::SocketAddr],
    timeout_s: u64,
) -> Result<()> {
    use node::dht::engine::{Config, Dht, Event};
    use node::dht::{InfoHash, ValueData};
    use node::driver::{unix_ms, UdpDriver};
    use node::identity::link;
    use std::time::Duration;
    refuse_existing(&opts.dir)?;
    if bootstrap.is_empty() {
        bail!("give at least one --bootstrap node");
    }
    let seed = link::time_seed(now());
    let mut keys = Vec::new();
    for s in [seed, seed - 1] {
        keys.push(link::pin_key(&opts.password, pin, s)?);
    }
    let mut rng = rng();
    let dht = Dht::new(
        Config::verifying(InfoHash(rng.random()), rng.random()),
        unix_ms(),
    );
    let mut d = UdpDriver::bind(dht, "0.0.0.0:0".parse()?)?;
    for b in bootstrap {
        d.dht.bootstrap(unix_ms(), *b);
    }
    let timeout = Duration::from_secs(timeout_s);
    if !d.run_until(timeout, |e| matches!(e, Event::Connected))? {
        bail!("no DHT node answered within {timeout_s} s");
    }
    let mut found = None;
    for (key, loc) in &keys {
        let op = d.dht.get(unix_ms(), InfoHash(*loc));
        let mut values = Vec::new();
        d.run_until(timeout, |e| match e {
            Event::Values {
                op: o, values: v, ..
            } if *o == op => {
                values.extend(v.iter().filter_map(|v| match &v.data {
                    ValueData::Plain(b) => Some(b.data.clone()),
                    _ => None,
                }));
                false
            }
            Event::GetDone { op: o, .. } => *o == op,
            _ => false,
        })?;
        found = values
            .iter()
            .find_map(|data| link::import_archive(data, key).ok());
        if found.is_some() {
            break;
        }
    }
    let archive =
        found.context("no archive found for this PIN and password (PINs last 20 to 40 minutes)")?;
    let account = archive.account()?;
    let device = account.new_device(opts.bits, now(), &mut rng)?;
    save(opts, &archive, &device, &mut rng)?;
    println!("linked account {}", hex(&account.account_id()));
    println!("new device {}", hex(&device.device_id()));
    Ok(())
}

fn export(opts: &AccountOpts, out: &Path, out_password: Option<String>) -> Result<()> {
    let archive = read_archive(&opts.dir.join(ARCHIVE_FILE), &opts.password)?;
    let password = out_password.unwrap_or_else(|| opts.password.clone());
    let bytes = archive.encode(&password, &mut rng())?;
    write_file(out, &bytes, 0o600)?;
    println!(
        "exported account {} to {}{}",
        hex(&archive.account()?.account_id()),
        out.display(),
        if password.is_empty() {
            " (no password)"
        } else {
            " (encrypted)"
        }
    );
    Ok(())
}

fn revoke(opts: &AccountOpts, device: Option<String>, cert: Option<PathBuf>) -> Result<()> {
    let path = opts.dir.join(ARCHIVE_FILE);
    let mut archive = read_archive(&path, &opts.password)?;
    let account = archive.account()?;
    let target = match (device, cert) {
        (_, Some(file)) => {
            let chain = decode_chain(&read(&file)?)
                .with_context(|| format!("certificate in {}", file.display()))?;
            chain.into_iter().next().context("empty certificate file")?
        }
        (Some(id), None) => find_device(&opts.dir, &id)?,
        (None, None) => bail!("give --device ID or --cert FILE"),
    };
    // Only this account's own devices can be revoked with its key.
    let mut chain = vec![target.clone()];
    chain.extend(account.chain().iter().cloned());
    let info = verify_device_chain(&chain)
        .map_err(|e| anyhow!("that device does not belong to this account: {e}"))?;
    if archive.crl.as_ref().is_some_and(|c| c.is_revoked(&target)) {
        bail!("device {} is already revoked", hex(&info.device_id));
    }
    let mut rng = rng();
    let crl = archive.revoke_device(&target, now(), &mut rng)?;
    let count = crl.revoked().len();
    write_file(&path, &archive.encode(&opts.password, &mut rng)?, 0o600)?;
    println!(
        "revoked device {} ({count} revoked in the account CRL)",
        hex(&info.device_id)
    );
    Ok(())
}

/// A device certificate known in `dir` by its device id (64 hex) or short id (40 hex):
/// this directory's own device.
fn find_device(dir: &Path, id: &str) -> Result<Certificate> {
    let id = id.trim().to_ascii_lowercase();
    let chain = decode_chain(&read(&dir.join(DEVICE_CRT_FILE))?)?;
    chain
        .into_iter()
        .next()
        .filter(|c| hex(&c.long_id()) == id || hex(&c.short_id()) == id)
        .with_context(|| {
            format!(
                "no certificate for device {id} in {}: pass it with --cert",
                dir.display()
            )
        })
}

fn show(opts: &AccountOpts, json: bool) -> Result<()> {
    let chain = decode_chain(&read(&opts.dir.join(DEVICE_CRT_FILE))?)?;
    let info = verify_device_chain(&chain).context("device chain")?;
    let key_ok = match std::fs::read(opts.dir.join(DEVICE_KEY_FILE)) {
        Ok(k) => PrivateKey::from_pem_or_der(&k)
            .map(|k| chain[0].public_key() == Some(&k.public_key()))
            .unwrap_or(false),
        Err(_) => false,
    };
    // The archive is optional for `show`: unreadable without the password.
    let archive = read_archive(&opts.dir.join(ARCHIVE_FILE), &opts.password);
    let revoked = archive
        .as_ref()
        .ok()
        .and_then(|a| a.crl.as_ref())
        .map(|crl| crl.revoked())
        .unwrap_or_default();
    let this_revoked = archive
        .as_ref()
        .ok()
        .and_then(|a| a.crl.as_ref())
        .is_some_and(|c| c.is_revoked(&chain[0]));
    let certs: Vec<serde_json::Value> = chain
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name(),
                "uid": c.uid(),
                "issuer": c.issuer_name(),
                "ca": c.is_ca(),
                "bits": c.public_key().map(|k| k.bits()),
                "not_before": utc(c.not_before()),
                "not_after": utc(c.not_after()),
            })
        })
        .collect();
    // What jamid keeps in its config.yml for this device (`ringAccountReceipt` and its
    // signature), made from the archive: the account key and the eth key's address.
    let eth = archive
        .as_ref()
        .ok()
        .and_then(|a| node::identity::eth::eth_address(&a.eth_key).ok());
    let receipt = match (&archive, &eth) {
        (Ok(a), Some(eth)) => a
            .account()
            .ok()
            .and_then(|acc| node::presence::Receipt::make(&acc, &chain[0], eth).ok()),
        _ => None,
    };
    let doc = serde_json::json!({
        "jami_id": hex(&info.account_id),
        "uri": format!("jami:{}", hex(&info.account_id)),
        "device_id": hex(&info.device_id),
        "device_short_id": hex(&info.device_short_id),
        "device_key_matches": key_ok,
        "device_revoked": this_revoked,
        "archive": match &archive {
            Ok(_) => "readable".to_string(),
            Err(e) => format!("unreadable: {e:#}"),
        },
        "revoked": revoked.iter().map(|r| serde_json::json!({
            "serial": hex(&r.serial), "at": utc(r.at),
        })).collect::<Vec<_>>(),
        "chain": certs,
        "eth_address": eth,
        "receipt": receipt.as_ref().map(|(j, _)| String::from_utf8_lossy(j).into_owned()),
        "receipt_signature": receipt.as_ref().map(|(_, s)| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(s)
        }),
    });
    if json {
        println!("{doc}");
        return Ok(());
    }
    println!("Jami ID          {}", doc["jami_id"].as_str().unwrap_or(""));
    println!(
        "device id        {}",
        doc["device_id"].as_str().unwrap_or("")
    );
    println!(
        "device short id  {}",
        doc["device_short_id"].as_str().unwrap_or("")
    );
    println!(
        "device key       {}",
        if key_ok {
            "present, matches"
        } else {
            "missing or not matching"
        }
    );
    println!("archive          {}", doc["archive"].as_str().unwrap_or(""));
    if let Some(eth) = &eth {
        println!("eth address      {eth}");
    }
    println!(
        "revoked devices  {}{}",
        revoked.len(),
        if this_revoked {
            " (this device is revoked)"
        } else {
            ""
        }
    );
    for c in &chain {
        println!(
            "  {:<12} valid {} .. {}{}",
            c.name().unwrap_or("?"),
            utc(c.not_before()),
            utc(c.not_after()),
            if c.is_valid_at(now()) {
                ""
            } else {
                " (NOT VALID NOW)"
            }
        );
    }
    Ok(())
}

fn refuse_existing(dir: &Path) -> Result<()> {
    for f in [ARCHIVE_FILE, DEVICE_KEY_FILE, DEVICE_CRT_FILE] {
        if dir.join(f).exists() {
            bail!("{} already holds an account ({f})", dir.display());
        }
    }
    Ok(())
}

fn save(
    opts: &AccountOpts,
    archive: &AccountArchive,
    device: &DeviceIdentity,
    rng: &mut ChaCha20Rng,
) -> Result<()> {
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating {}", opts.dir.display()))?;
    let bytes = archive.encode(&opts.password, rng)?;
    write_file(&opts.dir.join(ARCHIVE_FILE), &bytes, 0o600)?;
    let key = device.key().to_pkcs8_pem()?;
    write_file(&opts.dir.join(DEVICE_KEY_FILE), key.as_bytes(), 0o600)?;
    write_file(
        &opts.dir.join(DEVICE_CRT_FILE),
        device.chain_pem().as_bytes(),
        0o644,
    )
}

pub(crate) fn read_archive(path: &Path, password: &str) -> Result<AccountArchive> {
    AccountArchive::decode(&read(path)?, password)
        .with_context(|| format!("reading archive {}", path.display()))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes through a temporary file and a rename, so a rewritten archive is never left
/// half written.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn utc(secs: u64) -> String {
    crate::utc_iso(secs)
}

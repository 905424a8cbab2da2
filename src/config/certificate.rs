//! The client certificate: a PEM file with the certificate and its RSA private key (PKCS#8
//! `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`), or the key in a file of its own. PEM is read by
//! `rustls-pki-types`, the certificate's dates and public key by `x509-cert`, thumbprints and
//! the key check by `ring`: no hand-written DER.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{PemObject, SectionKind};
use x509_cert::der::Decode as _;

/// Largest certificate or key file read: real ones are a few KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// An RSA private key, as DER. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub enum PrivateKey {
    /// PKCS#8 `PRIVATE KEY`.
    Pkcs8(Vec<u8>),
    /// PKCS#1 `RSA PRIVATE KEY`.
    Pkcs1(Vec<u8>),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

impl PrivateKey {
    /// The key, ready to sign. Config loading has checked that this succeeds.
    pub fn key_pair(&self) -> Result<ring::rsa::KeyPair, ring::error::KeyRejected> {
        match self {
            PrivateKey::Pkcs8(der) => ring::rsa::KeyPair::from_pkcs8(der),
            PrivateKey::Pkcs1(der) => ring::rsa::KeyPair::from_der(der),
        }
    }
}

/// A loaded client certificate with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The PEM file with the certificate (and the key, unless `key_path` is set).
    pub path: PathBuf,
    /// `client_certificate_key_file`, when the key lives apart.
    pub key_path: Option<PathBuf>,
    /// The certificate came from `$CREDENTIALS_DIRECTORY/client-certificate`.
    pub from_systemd_credential: bool,
    /// The certificate, DER.
    pub der: Vec<u8>,
    pub key: PrivateKey,
    /// SHA-1 of the DER, as Entra shows it ("Thumbprint": upper-case hex).
    pub sha1: [u8; 20],
    /// SHA-256 of the DER (`x5t#S256`).
    pub sha256: [u8; 32],
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
    /// The subject, RFC 4514 (e.g. `CN=entra-sync`), for messages.
    pub subject: String,
}

impl Certificate {
    /// The SHA-1 thumbprint as the Entra admin center shows it: 40 upper-case hex digits.
    pub fn thumbprint(&self) -> String {
        self.sha1.iter().map(|b| format!("{b:02X}")).collect()
    }
}

/// Reads and checks the certificate at `path` and its key (from `key_path`, else the same
/// file). Errors are the message part: what is wrong and how to fix it. `shown` names the
/// certificate file in messages.
pub(super) fn load(
    path: &Path,
    key_path: Option<&Path>,
    shown: &str,
) -> Result<(PemCertificate, PrivateKey), String> {
    let sections = read_pem(path, shown)?;
    let mut certificates = sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate);
    let Some((_, der)) = certificates.next() else {
        return Err(format!(
            "{shown} holds no certificate (no -----BEGIN CERTIFICATE----- block); put the \
             certificate you uploaded to the app registration in it, PEM-encoded, with its key"
        ));
    };
    let certificate = parse_certificate(der, shown)?;

    let (key_sections, key_shown) = match key_path {
        Some(key_path) => {
            let key_shown = format!("client_certificate_key_file {}", key_path.display());
            (read_pem(key_path, &key_shown)?, key_shown)
        }
        None => (sections, shown.to_owned()),
    };
    let key = find_key(&key_sections, &key_shown, key_path.is_none())?;
    let pair = key.key_pair().map_err(|e| {
        format!(
            "{key_shown}: the private key is not a usable RSA key ({e}); entra-sync needs the \
             RSA key (2048 bits or more) of the certificate, unencrypted"
        )
    })?;
    if pair.public().as_ref() != certificate.rsa_public_key.as_slice() {
        return Err(format!(
            "the private key in {key_shown} does not belong to the certificate in {shown} \
             ({}); put the certificate and its own key together",
            certificate.subject
        ));
    }
    Ok((certificate, key))
}

/// What the certificate itself says.
pub(super) struct PemCertificate {
    pub der: Vec<u8>,
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
    pub subject: String,
    /// `RSAPublicKey` DER (the subjectPublicKey bits).
    pub rsa_public_key: Vec<u8>,
}

fn read_pem(path: &Path, shown: &str) -> Result<Vec<(SectionKind, Vec<u8>)>, String> {
    let file = fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            format!("{shown} does not exist; create it (PEM, chmod 600) or correct the path")
        }
        io::ErrorKind::PermissionDenied => format!(
            "cannot read {shown}: permission denied; make it readable by the user entra-sync \
             runs as (chown it to that user, chmod 600)"
        ),
        _ => format!("cannot read {shown}: {e}"),
    })?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, MAX_PEM_BYTES + 1), &mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "{shown} is larger than 1 MiB, so it is not a certificate or key file; check the path"
        ));
    }
    if contains(&bytes, b"ENCRYPTED PRIVATE KEY") || contains(&bytes, b"Proc-Type: 4,ENCRYPTED") {
        return Err(format!(
            "{shown} holds an encrypted private key, which a service cannot unlock; write it \
             unencrypted (openssl pkey -in old.pem -out new.pem) and protect the file with chmod 600"
        ));
    }
    // The parser's own errors may quote a line of the file (a key line): never shown.
    <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            format!(
                "{shown} is not a valid PEM file (a -----BEGIN/-----END block is broken); \
                 export the certificate and key again as PEM"
            )
        })
        .and_then(|sections| {
            if sections.is_empty() {
                Err(format!(
                    "{shown} is not PEM (no -----BEGIN ...----- block); a DER or PFX file must be \
                     converted: openssl pkcs12 -in cert.pfx -nodes -out {}",
                    path.display()
                ))
            } else {
                Ok(sections)
            }
        })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn find_key(
    sections: &[(SectionKind, Vec<u8>)],
    shown: &str,
    same_file: bool,
) -> Result<PrivateKey, String> {
    let keys: Vec<PrivateKey> = sections
        .iter()
        .filter_map(|(kind, der)| match kind {
            SectionKind::PrivateKey => Some(PrivateKey::Pkcs8(der.clone())),
            SectionKind::RsaPrivateKey => Some(PrivateKey::Pkcs1(der.clone())),
            _ => None,
        })
        .collect();
    if sections
        .iter()
        .any(|(kind, _)| *kind == SectionKind::EcPrivateKey)
        && keys.is_empty()
    {
        return Err(format!(
            "{shown} holds an EC key; Entra client assertions here are signed with RSA: create an \
             RSA certificate (e.g. openssl req -x509 -newkey rsa:2048 ...)"
        ));
    }
    match keys.len() {
        1 => Ok(keys
            .into_iter()
            .next()
            .unwrap_or(PrivateKey::Pkcs8(Vec::new()))),
        0 if same_file => Err(format!(
            "{shown} holds no private key (no -----BEGIN PRIVATE KEY----- or -----BEGIN RSA \
             PRIVATE KEY----- block); append the certificate's key to it, or name the key's file \
             in client_certificate_key_file"
        )),
        0 => Err(format!(
            "{shown} holds no private key (no -----BEGIN PRIVATE KEY----- or -----BEGIN RSA \
             PRIVATE KEY----- block)"
        )),
        n => Err(format!(
            "{shown} holds {n} private keys; keep only the certificate's own key"
        )),
    }
}

fn parse_certificate(der: &[u8], shown: &str) -> Result<PemCertificate, String> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|_| {
        format!(
            "{shown}: the CERTIFICATE block is not an X.509 certificate; export it again as PEM"
        )
    })?;
    let tbs = cert.tbs_certificate();
    let validity = tbs.validity();
    let time = |t: x509_cert::time::Time| {
        i64::try_from(t.to_unix_duration().as_secs())
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    };
    const RSA_ENCRYPTION: x509_cert::der::asn1::ObjectIdentifier =
        x509_cert::der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    let spki = tbs.subject_public_key_info();
    if spki.algorithm.oid != RSA_ENCRYPTION {
        return Err(format!(
            "{shown}: the certificate's key is not RSA ({}); create an RSA certificate \
             (e.g. openssl req -x509 -newkey rsa:2048 ...)",
            spki.algorithm.oid
        ));
    }
    Ok(PemCertificate {
        der: der.to_vec(),
        not_before: time(validity.not_before),
        not_after: time(validity.not_after),
        subject: tbs.subject().to_string(),
        rsa_public_key: spki.subject_public_key.raw_bytes().to_vec(),
    })
}

/// SHA-1 and SHA-256 of the certificate's DER.
pub(super) fn thumbprints(der: &[u8]) -> ([u8; 20], [u8; 32]) {
    let mut sha1 = [0u8; 20];
    sha1.copy_from_slice(
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref(),
    );
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
    (sha1, sha256)
}

//! Helpers shared by the tests of the config modules.

#![allow(clippy::unwrap_used)] // unwrap is fine in tests only

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{Config, ConfigError, Env};

pub(crate) const P: &str = "/etc/entra-sync/config.toml";
pub(crate) const SECRET: &str = "Zq8~s3cr3t.VALUE_abcdefghijklmnopqrstuv";
pub(crate) const TENANT: &str = "contoso.onmicrosoft.com";
pub(crate) const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
/// Lines 1-3 of most test documents.
pub(crate) const HEAD: &str = "[entra]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"11111111-2222-3333-4444-555555555555\"\n";

pub(crate) fn env_secret() -> Env {
    Env {
        secret: Some(SECRET.to_owned()),
        credentials_directory: None,
        ..Env::default()
    }
}

pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(P), &env_secret())
}

pub(crate) fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(e) => panic!("expected {text:?} to parse, got: {e}"),
    }
}

pub(crate) fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected {text:?} to fail"),
        Err(e) => e.to_string(),
    }
}

/// Runs (document, expected Display) cases, reporting all mismatches at once.
pub(crate) fn check_errors(cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (text, expected) in cases {
        let got = err(text);
        if got != *expected {
            failures.push(format!(
                "document {text:?}\n  expected: {expected}\n       got: {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

pub(crate) fn with_head(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

pub(crate) fn write_mode(path: &Path, contents: &str, mode: u32) {
    let mut file = fs::File::create(path).unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A throw-away RSA key and certificate made at run time (no key material is committed):
/// the certificate PEM, the key as PKCS#8 and as PKCS#1 PEM. One key per test binary, since
/// generating it takes a moment.
pub(crate) struct TestPem {
    pub cert: String,
    pub pkcs8: String,
    pub pkcs1: String,
}

pub(crate) fn test_pem() -> &'static TestPem {
    static PEM: std::sync::OnceLock<TestPem> = std::sync::OnceLock::new();
    PEM.get_or_init(|| {
        let (pkcs8, pkcs1) = test_key();
        let now = time::OffsetDateTime::now_utc();
        TestPem {
            cert: test_cert_pem(
                &pkcs8,
                now - time::Duration::days(1),
                now + time::Duration::days(365),
            ),
            pkcs8,
            pkcs1,
        }
    })
}

/// A fresh RSA key: (PKCS#8 PEM, PKCS#1 PEM).
pub(crate) fn test_key() -> (String, String) {
    use rsa::Generate as _;
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::pkcs8::EncodePrivateKey as _;
    let key = rsa::PrivateKey::generate();
    let line = rsa::pkcs8::LineEnding::LF;
    (
        key.to_pkcs8_pem(line).unwrap().to_string(),
        key.to_pkcs1_pem(line).unwrap().to_string(),
    )
}

/// A self-signed certificate for the PKCS#8 key, valid from `not_before` to `not_after`.
pub(crate) fn test_cert_pem(
    pkcs8: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> String {
    let key = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(pkcs8, &rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["entra-sync-test".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "entra-sync-test");
    params.not_before = not_before;
    params.not_after = not_after;
    params.self_signed(&key).unwrap().pem()
}

/// The test certificate loaded as config would load it.
pub(crate) fn test_certificate() -> super::Certificate {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.pem");
    let pem = test_pem();
    write_mode(&path, &format!("{}{}", pem.cert, pem.pkcs8), 0o600);
    let text = format!("{HEAD}client_certificate_file = \"client.pem\"\n");
    let config = Config::parse(&text, &dir.path().join("config.toml"), &Env::default()).unwrap();
    match config.entra.credential {
        super::Credential::Certificate(cert) => *cert,
        other => panic!("{other:?}"),
    }
}

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

//! Configuration errors: every problem names the file, the line and the dotted key.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::CONFIG_ENV;
use super::schema::example_of;

/// What kind of problem a [`ConfigError`] is. All kinds display the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration file does not exist.
    NotFound,
    /// The configuration file exists but cannot be read (permissions, not UTF-8, ...).
    Unreadable,
    /// Not valid TOML.
    Syntax,
    /// Valid TOML, but an unknown key, a wrong type, a missing key or a bad value.
    Invalid,
    /// No, several, or an unreadable client secret.
    Secret,
    /// A config or credential file (or its directory) that another local user could change.
    Unsafe,
}

/// A configuration problem. `Display` is one line:
/// `config: <path>[:<line>][: <dotted.key>]: <what is wrong>; <how to fix it>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub kind: ErrorKind,
    pub path: PathBuf,
    /// 1-based line in the configuration file, when the problem has one.
    pub line: Option<usize>,
    /// Dotted key, e.g. `entra.client_id`.
    pub key: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config: {}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    /// Replaces every occurrence of the given secrets in the message with `[redacted]`.
    pub(super) fn redact(mut self, secrets: &[String]) -> ConfigError {
        for secret in secrets {
            // Very short strings would mangle ordinary words; real secrets are ~40 characters.
            if secret.len() >= 8 {
                self.message = self.message.replace(secret.as_str(), "[redacted]");
                if let Some(key) = &mut self.key {
                    *key = key.replace(secret.as_str(), "[redacted]");
                }
            }
        }
        self
    }
}

pub(super) fn read_error(path: &Path, err: &io::Error) -> ConfigError {
    let p = path.display();
    let (kind, message) = match err.kind() {
        io::ErrorKind::NotFound => (
            ErrorKind::NotFound,
            format!(
                "file not found; copy config.example.toml to it (install -m 644 config.example.toml {p}) and fill in [entra], \
                 or point --config or ${CONFIG_ENV} at your file"
            ),
        ),
        io::ErrorKind::PermissionDenied => (
            ErrorKind::Unreadable,
            format!(
                "permission denied reading the file; make it readable by the user entra-sync runs as (check with ls -l {p})"
            ),
        ),
        io::ErrorKind::IsADirectory => (
            ErrorKind::Unreadable,
            "is a directory; give the path of the TOML file itself".to_owned(),
        ),
        _ => (
            ErrorKind::Unreadable,
            format!("cannot read the file: {err}"),
        ),
    };
    ConfigError {
        kind,
        path: path.to_path_buf(),
        line: None,
        key: None,
        message,
    }
}

// ---------------------------------------------------------------------------------------------
// Error construction
// ---------------------------------------------------------------------------------------------

/// 1-based line of byte `offset` in `bytes`.
pub(super) fn line_of(bytes: &[u8], offset: usize) -> usize {
    let end = offset.min(bytes.len());
    bytes[..end].iter().filter(|b| **b == b'\n').count() + 1
}

/// Collapses all whitespace runs (including newlines) into single spaces.
pub(super) fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(super) struct Ctx<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn error(
        &self,
        kind: ErrorKind,
        span: Option<Range<usize>>,
        key: Option<&str>,
        message: String,
    ) -> ConfigError {
        ConfigError {
            kind,
            path: self.path.to_path_buf(),
            line: span.map(|s| line_of(self.text.as_bytes(), s.start)),
            key: key.map(str::to_owned),
            message,
        }
    }

    /// A bad value at `key`, located by its span.
    pub(super) fn invalid(&self, span: Range<usize>, key: &str, message: String) -> ConfigError {
        self.error(ErrorKind::Invalid, Some(span), Some(key), message)
    }

    pub(super) fn syntax_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span();
        let mut what = one_line(err.message());
        if what == "duplicate key"
            && let Some(name) = span.clone().and_then(|s| self.text.get(s))
            && !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c))
        {
            what = format!(
                "duplicate key `{name}`; a key or table may appear only once, so delete or merge the repeated one"
            );
            return self.error(
                ErrorKind::Syntax,
                span,
                None,
                format!("not valid TOML: {what}"),
            );
        }
        self.error(
            ErrorKind::Syntax,
            span,
            None,
            format!("not valid TOML: {what}; fix the syntax on this line (see https://toml.io)"),
        )
    }

    /// A serde error (wrong type) from deserializing `RawConfig`.
    pub(super) fn type_error(&self, err: &toml::de::Error, root: &DeTable<'_>) -> ConfigError {
        let span = err.span();
        let key = span.as_ref().and_then(|s| key_at(root, s.start, ""));
        let mut message = one_line(err.message());
        if let Some(example) = key.as_deref().and_then(example_of) {
            message.push_str(&format!("; write it like {example}"));
        }
        self.error(ErrorKind::Invalid, span, key.as_deref(), message)
    }
}

/// The dotted key whose key or value span contains `offset` (the deepest one).
pub(super) fn key_at(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    let contains =
        |span: Range<usize>| span.start <= offset && offset < span.end.max(span.start + 1);
    for (key, value) in table.iter() {
        let name = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        if let DeValue::Table(inner) = value.get_ref()
            && let Some(found) = key_at(inner, offset, &name)
        {
            return Some(found);
        }
        if contains(key.span()) || contains(value.span()) {
            return Some(name);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is fine in tests only
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::*;

    #[test]
    fn error_display_shape() {
        let error = ConfigError {
            kind: ErrorKind::Invalid,
            path: PathBuf::from(P),
            line: Some(3),
            key: Some("entra.client_id".to_owned()),
            message: "what; how".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "config: /etc/entra-sync/config.toml:3: entra.client_id: what; how"
        );
        let error = ConfigError {
            line: None,
            key: None,
            ..error
        };
        assert_eq!(
            error.to_string(),
            "config: /etc/entra-sync/config.toml: what; how"
        );
        assert_eq!(EX_CONFIG, 78);
        // Every error is one line.
        for text in [
            "[entra\n",
            "x = [\n1,\n2\n",
            "[entra]\ntenant_id = \"\"\"a\nb\"\"\"\n",
        ] {
            assert!(!err(text).contains('\n'), "{}", err(text));
        }
    }
}

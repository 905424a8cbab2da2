//! The configuration file: one TOML file that is the admin's only way to steer entra-sync.
//!
//! [`Config::load`] reads and validates it. Every problem becomes a [`ConfigError`] whose
//! `Display` is one line naming the file, the line, the dotted key, what is wrong and how to fix
//! it, e.g.
//!
//! ```text
//! config: /etc/entra-sync/config.toml:3: entra.client_id: "abc" is not a GUID; copy the Application (client) ID from ...
//! ```
//!
//! The file is read in three steps: TOML syntax ([`DeTable::parse`]), the shape of the document
//! (known tables and keys, checked by hand for good messages), then types (serde into `RawConfig`,
//! which mirrors the TOML with [`Spanned`] fields). [`Config`] is then built from `RawConfig` in
//! one place, `build`, which does all value validation and resolves the client secret.
//!
//! The client secret never appears in any error or `Debug` output: [`Secret`] prints
//! `[redacted]`, and error messages are scrubbed of it as a second line of defence.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where the configuration lives unless `--config` or `$ENTRA_SYNC_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/entra-sync/config.toml";
/// sysexits.h `EX_CONFIG`: the exit status for a configuration error (systemd shows it as
/// `status=78/CONFIG`).
pub const EX_CONFIG: i32 = 78;
/// Environment variable naming the configuration file (below `--config`, above the default).
pub const CONFIG_ENV: &str = "ENTRA_SYNC_CONFIG";
/// Environment variable that may carry the client secret.
pub const SECRET_ENV: &str = "ENTRA_SYNC_CLIENT_SECRET";
/// Set by systemd for units with `LoadCredential=`.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";
/// Name of the systemd credential holding the client secret (`LoadCredential=client-secret:...`).
pub const CREDENTIAL_NAME: &str = "client-secret";

/// Default of `sync.interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default of `sync.full_sync_interval`.
pub const DEFAULT_FULL_SYNC_INTERVAL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Smallest accepted `sync.interval`.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Default of `sync.database`.
pub const DEFAULT_DATABASE: &str = "/var/lib/entra-sync/entra-sync.db";
/// Default of `mapping.team`.
pub const DEFAULT_TEAM: &str = "Microsoft Entra ID Users";

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from, as given.
    pub path: PathBuf,
    pub entra: Entra,
    pub sync: SyncSettings,
    pub mapping: Mapping,
    /// Problems that do not stop entra-sync but that the admin should fix (e.g. a secret that
    /// other users can read). The caller logs them.
    pub warnings: Vec<String>,
}

/// The `[entra]` table: which tenant, which app registration, which cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entra {
    pub tenant_id: String,
    pub client_id: String,
    pub secret: Secret,
    pub secret_source: SecretSource,
    pub client_secret_expires: Option<time::Date>,
    pub cloud: Cloud,
    /// Origin of the login endpoint, without a trailing slash.
    pub authority_host: String,
    /// Origin of Microsoft Graph, without a trailing slash.
    pub graph_endpoint: String,
}

impl Entra {
    /// The OAuth scope for client credentials: the cloud's Graph resource plus `/.default`
    /// (e.g. `https://graph.microsoft.com/.default`). It names the token's audience, so it
    /// stays the cloud's even when `graph_endpoint` points elsewhere (a proxy, a test server).
    pub fn scope(&self) -> String {
        format!("{}/.default", self.cloud.graph_endpoint())
    }

    /// The token endpoint: `{authority_host}/{tenant_id}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority_host, self.tenant_id
        )
    }
}

/// The national cloud the tenant lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Cloud {
    #[default]
    Global,
    UsGov,
    UsGovDod,
    China,
}

impl Cloud {
    pub const ALL: [Cloud; 4] = [Cloud::Global, Cloud::UsGov, Cloud::UsGovDod, Cloud::China];

    /// The TOML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Global => "global",
            Cloud::UsGov => "usgov",
            Cloud::UsGovDod => "usgov-dod",
            Cloud::China => "china",
        }
    }

    /// Parses the TOML spelling, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Cloud> {
        Cloud::ALL
            .into_iter()
            .find(|cloud| cloud.as_str().eq_ignore_ascii_case(name))
    }

    /// The login origin of this cloud.
    pub fn authority_host(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGov | Cloud::UsGovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.partner.microsoftonline.cn",
        }
    }

    /// The Microsoft Graph origin of this cloud.
    pub fn graph_endpoint(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGov => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the client secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `client_secret` in the configuration file.
    Inline,
    /// `client_secret_file` (the resolved path).
    File(PathBuf),
    /// `$ENTRA_SYNC_CLIENT_SECRET`.
    Env,
    /// `$CREDENTIALS_DIRECTORY/client-secret` (the resolved path).
    Credential(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline => f.write_str("client_secret in the config file"),
            SecretSource::File(path) => write!(f, "client_secret_file {}", path.display()),
            SecretSource::Env => write!(f, "environment variable {SECRET_ENV}"),
            SecretSource::Credential(path) => write!(
                f,
                "systemd credential $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME} ({})",
                path.display()
            ),
        }
    }
}

/// The client secret. `Debug` and `Display` print `[redacted]`; use [`Secret::expose`] only
/// where the value is sent to the token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The `[sync]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    pub enabled: bool,
    pub interval: Duration,
    pub full_sync_interval: Duration,
    /// Absolute unless the configuration path itself could not be made absolute.
    pub database: PathBuf,
}

/// The `[mapping]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub team: String,
    pub groups: Vec<String>,
    pub nested: bool,
    pub include_disabled: bool,
}

/// The parts of the process environment that the configuration depends on. Passed in
/// explicitly so tests need not touch the process environment.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// `$ENTRA_SYNC_CLIENT_SECRET`.
    pub secret: Option<String>,
    /// `$CREDENTIALS_DIRECTORY`.
    pub credentials_directory: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            // A non-UTF-8 value is kept (lossily) so that it still counts as a source; Entra
            // secrets are ASCII, so the token endpoint will reject it with a clear error.
            secret: std::env::var_os(SECRET_ENV).map(|v| v.to_string_lossy().into_owned()),
            credentials_directory: std::env::var_os(CREDENTIALS_DIRECTORY_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("credentials_directory", &self.credentials_directory)
            .finish()
    }
}

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
    fn redact(mut self, secrets: &[String]) -> ConfigError {
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

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Reads and validates the file at `path`, taking the secret sources from the process
    /// environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = fs::read(path).map_err(|e| read_error(path, &e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = line_of(&e.as_bytes()[..e.utf8_error().valid_up_to()], usize::MAX);
            ConfigError {
                kind: ErrorKind::Unreadable,
                path: path.to_path_buf(),
                line: Some(line),
                key: None,
                message: "the file is not UTF-8 text; save it as UTF-8".to_owned(),
            }
        })?;
        Config::parse(&text, path, &Env::from_process())
    }

    /// Validates `text` as the contents of the file at `path`. Reads the secret file or
    /// credential if that is the secret source, and checks the permissions of the
    /// configuration file (if it exists) and of the secret file.
    pub fn parse(text: &str, path: &Path, env: &Env) -> Result<Config, ConfigError> {
        parse_checked(text, path, env).map_err(|err| {
            let mut secrets = inline_secret(text).into_iter().collect::<Vec<_>>();
            secrets.extend(env.secret.iter().map(|s| s.trim_end().to_owned()));
            err.redact(&secrets)
        })
    }

    /// The configuration path: the `--config` flag, else `$ENTRA_SYNC_CONFIG`, else
    /// [`DEFAULT_PATH`]. Empty values count as unset.
    pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
        Config::resolve_path_from(flag, std::env::var_os(CONFIG_ENV))
    }

    /// [`Config::resolve_path`] with the value of `$ENTRA_SYNC_CONFIG` passed in.
    pub fn resolve_path_from(flag: Option<PathBuf>, env_value: Option<OsString>) -> PathBuf {
        flag.filter(|p| !p.as_os_str().is_empty())
            .or_else(|| env_value.filter(|v| !v.is_empty()).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    /// Days from `today` until `entra.client_secret_expires` (negative once it has passed),
    /// or `None` if the expiry date is not configured.
    pub fn secret_days_left(&self, today: time::Date) -> Option<i64> {
        self.entra
            .client_secret_expires
            .map(|expires| (expires - today).whole_days())
    }

    /// Dotted keys that differ between `self` and `new` and that cannot be applied to a
    /// running daemon (a restart is needed). Everything else can be applied on reload.
    pub fn needs_restart(&self, new: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.sync.database != new.sync.database {
            keys.push("sync.database");
        }
        keys
    }
}

fn read_error(path: &Path, err: &io::Error) -> ConfigError {
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

/// The inline `client_secret`, if the text has one, for scrubbing error messages.
fn inline_secret(text: &str) -> Option<String> {
    let (doc, _) = DeTable::parse_recoverable(text);
    let entra = doc.get_ref().get("entra")?;
    let secret = entra.get_ref().as_table()?.get("client_secret")?;
    secret
        .get_ref()
        .as_str()
        .map(|s| s.trim_end().to_owned())
        // A value that looks like a path is rejected as one (never used as the secret), and the
        // message must be able to show it.
        .filter(|s| !s.starts_with('/'))
}

fn parse_checked(text: &str, path: &Path, env: &Env) -> Result<Config, ConfigError> {
    let ctx = Ctx { path, text };
    let doc = DeTable::parse(text).map_err(|e| ctx.syntax_error(&e))?;
    check_shape(&ctx, doc.get_ref())?;
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(doc.clone()))
        .map_err(|e| ctx.type_error(&e, doc.get_ref()))?;
    build(&ctx, raw, env)
}

// ---------------------------------------------------------------------------------------------
// The schema: every table and key, with an example value used in hints
// ---------------------------------------------------------------------------------------------

type KeyExample = (&'static str, &'static str);

const SCHEMA: &[(&str, &[KeyExample])] = &[
    (
        "entra",
        &[
            ("tenant_id", "\"contoso.onmicrosoft.com\""),
            ("client_id", "\"11111111-2222-3333-4444-555555555555\""),
            ("client_secret", "\"<the secret's Value>\""),
            ("client_secret_file", "\"/etc/entra-sync/client-secret\""),
            ("client_secret_expires", "2028-11-26"),
            ("cloud", "\"global\""),
            ("authority_host", "\"https://login.microsoftonline.com\""),
            ("graph_endpoint", "\"https://graph.microsoft.com\""),
        ],
    ),
    (
        "sync",
        &[
            ("enabled", "true"),
            ("interval", "\"5m\""),
            ("full_sync_interval", "\"7d\""),
            ("database", "\"/var/lib/entra-sync/entra-sync.db\""),
        ],
    ),
    (
        "mapping",
        &[
            ("team", "\"Microsoft Entra ID Users\""),
            ("groups", "[\"Engineering\", \"Sales\"]"),
            ("nested", "true"),
            ("include_disabled", "false"),
        ],
    ),
];

fn table_keys(table: &str) -> Option<&'static [KeyExample]> {
    SCHEMA
        .iter()
        .find(|(name, _)| *name == table)
        .map(|(_, keys)| *keys)
}

/// `key = example` for a dotted key, e.g. `interval = "5m"`.
fn example_of(dotted: &str) -> Option<String> {
    let (table, key) = dotted.split_once('.')?;
    let (key, example) = table_keys(table)?.iter().find(|(k, _)| *k == key)?;
    Some(format!("{key} = {example}"))
}

fn tables_list() -> String {
    SCHEMA
        .iter()
        .map(|(name, _)| format!("[{name}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// The raw document, mirroring the TOML. No Debug: it may hold the secret.
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    entra: Option<Spanned<RawEntra>>,
    sync: Option<Spanned<RawSync>>,
    mapping: Option<Spanned<RawMapping>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntra {
    tenant_id: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    client_secret: Option<Spanned<String>>,
    client_secret_file: Option<Spanned<String>>,
    /// Any TOML value, so that a quoted date or a date-time gets a precise message.
    client_secret_expires: Option<Spanned<toml::Value>>,
    cloud: Option<Spanned<String>>,
    authority_host: Option<Spanned<String>>,
    graph_endpoint: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSync {
    enabled: Option<Spanned<bool>>,
    interval: Option<Spanned<String>>,
    full_sync_interval: Option<Spanned<String>>,
    database: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    team: Option<Spanned<String>>,
    groups: Option<Spanned<Vec<Spanned<String>>>>,
    nested: Option<Spanned<bool>>,
    include_disabled: Option<Spanned<bool>>,
}

// ---------------------------------------------------------------------------------------------
// Error construction
// ---------------------------------------------------------------------------------------------

/// 1-based line of byte `offset` in `bytes`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    let end = offset.min(bytes.len());
    bytes[..end].iter().filter(|b| **b == b'\n').count() + 1
}

/// Collapses all whitespace runs (including newlines) into single spaces.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn error(
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
    fn invalid(&self, span: Range<usize>, key: &str, message: String) -> ConfigError {
        self.error(ErrorKind::Invalid, Some(span), Some(key), message)
    }

    fn syntax_error(&self, err: &toml::de::Error) -> ConfigError {
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
    fn type_error(&self, err: &toml::de::Error, root: &DeTable<'_>) -> ConfigError {
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
fn key_at(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
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

// ---------------------------------------------------------------------------------------------
// Shape: known tables and keys only
// ---------------------------------------------------------------------------------------------

fn sorted_entries<'t, 'i>(
    table: &'t DeTable<'i>,
) -> Vec<(
    &'t Spanned<std::borrow::Cow<'i, str>>,
    &'t Spanned<DeValue<'i>>,
)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

fn check_shape(ctx: &Ctx<'_>, root: &DeTable<'_>) -> Result<(), ConfigError> {
    for (key, value) in sorted_entries(root) {
        let name: &str = key.get_ref();
        let Some(keys) = table_keys(name) else {
            return Err(ctx.invalid(key.span(), name, unknown_top_level(name, value.get_ref())));
        };
        let DeValue::Table(table) = value.get_ref() else {
            let is_array_of_tables = value
                .get_ref()
                .as_array()
                .is_some_and(|items| items.iter().any(|item| item.get_ref().is_table()));
            let message = if is_array_of_tables {
                format!(
                    "is written [[{name}]] (an array of tables); write [{name}] with single brackets"
                )
            } else {
                format!(
                    "must be a table but is {}; write a section header [{name}] with its keys on the lines below it",
                    with_article(value.get_ref().type_str())
                )
            };
            return Err(ctx.invalid(key.span(), name, message));
        };
        for (inner, _) in sorted_entries(table) {
            let inner_name: &str = inner.get_ref();
            if !keys.iter().any(|(k, _)| *k == inner_name) {
                return Err(ctx.invalid(
                    inner.span(),
                    &format!("{name}.{inner_name}"),
                    unknown_in_table(name, inner_name, keys),
                ));
            }
        }
    }
    Ok(())
}

/// "an integer", "a string".
fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

fn unknown_in_table(table: &str, key: &str, keys: &[KeyExample]) -> String {
    let valid = keys.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
    if let Some((home, _)) = SCHEMA
        .iter()
        .find(|(t, ks)| *t != table && ks.iter().any(|(k, _)| *k == key))
    {
        return format!(
            "unknown key in [{table}]; {key} belongs in the [{home}] table, so move it below the [{home}] header"
        );
    }
    match suggest(key, keys.iter().map(|(k, _)| *k)) {
        Some(near) => {
            format!("unknown key; did you mean {near}? (valid keys in [{table}]: {valid})")
        }
        None => format!("unknown key; valid keys in [{table}] are: {valid}"),
    }
}

fn unknown_top_level(name: &str, value: &DeValue<'_>) -> String {
    let tables = tables_list();
    if let Some((home, _)) = SCHEMA
        .iter()
        .find(|(_, keys)| keys.iter().any(|(k, _)| *k == name))
    {
        return format!(
            "unknown top-level key; {name} belongs in the [{home}] table, so move it below the [{home}] header"
        );
    }
    let near = suggest(name, SCHEMA.iter().map(|(t, _)| *t));
    match (value.is_table(), near) {
        (true, Some(near)) => {
            format!("unknown table [{name}]; did you mean [{near}]? (valid tables: {tables})")
        }
        (true, None) => format!("unknown table [{name}]; valid tables are {tables}"),
        (false, _) => {
            format!("unknown top-level key; every key goes in one of the tables {tables}")
        }
    }
}

/// The candidate closest to `word` (at most two edits away, or equal ignoring case and `-`/`_`).
fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let normal = word.to_ascii_lowercase().replace('-', "_");
    candidates
        .map(|c| (edit_distance(&normal, c), c))
        .filter(|(distance, c)| *distance == 0 || (*distance <= 2 && *distance < c.len() / 2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------------------------
// Building Config from RawConfig: all value validation happens here
// ---------------------------------------------------------------------------------------------

const TENANT_HINT: &str = "use the Directory (tenant) ID from the app registration's Overview page in the Microsoft Entra admin center, \
     or a verified domain such as contoso.onmicrosoft.com";
const CLIENT_HINT: &str = "copy the Application (client) ID from the app registration's Overview page in the Microsoft Entra admin center";
const DURATION_HINT: &str = "write a duration like \"30s\", \"5m\", \"1h 30m\" or \"7d\"";

fn build(ctx: &Ctx<'_>, raw: RawConfig, env: &Env) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    let base_dir = config_dir(ctx.path);

    // [entra]
    let Some(entra) = raw.entra else {
        return Err(ctx.error(
            ErrorKind::Invalid,
            None,
            Some("entra.tenant_id"),
            "required key is missing (there is no [entra] table); add an [entra] table with \
             tenant_id = \"contoso.onmicrosoft.com\", client_id = \"11111111-2222-3333-4444-555555555555\" \
             and a client secret (see config.example.toml)"
                .to_owned(),
        ));
    };
    let entra_span = entra.span();
    let entra = entra.into_inner();

    let tenant = required(
        ctx,
        entra.tenant_id.as_ref(),
        &entra_span,
        "entra",
        "tenant_id",
        "the Directory (tenant) ID or a verified domain",
    )?;
    let tenant_id = validate_tenant(tenant.get_ref())
        .map_err(|m| ctx.invalid(tenant.span(), "entra.tenant_id", m))?;

    let client = required(
        ctx,
        entra.client_id.as_ref(),
        &entra_span,
        "entra",
        "client_id",
        "the Application (client) ID",
    )?;
    let client_id = client.get_ref().clone();
    if !is_guid(&client_id) {
        return Err(ctx.invalid(
            client.span(),
            "entra.client_id",
            format!("{client_id:?} is not a GUID; {CLIENT_HINT}"),
        ));
    }
    if client_id.eq_ignore_ascii_case(&tenant_id) {
        return Err(ctx.invalid(
            client.span(),
            "entra.client_id",
            format!("{client_id:?} is the tenant ID, not the application's ID; {CLIENT_HINT}"),
        ));
    }

    let cloud = match &entra.cloud {
        None => Cloud::default(),
        Some(value) => Cloud::from_name(value.get_ref()).ok_or_else(|| {
            let valid = Cloud::ALL.map(Cloud::as_str).join(", ");
            ctx.invalid(
                value.span(),
                "entra.cloud",
                format!(
                    "{:?} is not a known cloud; use one of {valid} (global unless the tenant is in a US Government or China cloud)",
                    value.get_ref()
                ),
            )
        })?,
    };

    let authority_host = match &entra.authority_host {
        None => cloud.authority_host().to_owned(),
        Some(value) => parse_origin(
            value.get_ref(),
            cloud.authority_host(),
            " (the tenant goes in entra.tenant_id)",
        )
        .map_err(|m| ctx.invalid(value.span(), "entra.authority_host", m))?,
    };
    let graph_endpoint = match &entra.graph_endpoint {
        None => cloud.graph_endpoint().to_owned(),
        Some(value) => parse_origin(
            value.get_ref(),
            cloud.graph_endpoint(),
            " (entra-sync adds the API version itself)",
        )
        .map_err(|m| ctx.invalid(value.span(), "entra.graph_endpoint", m))?,
    };

    let client_secret_expires = match &entra.client_secret_expires {
        None => None,
        Some(value) => Some(
            parse_local_date(value.get_ref())
                .map_err(|m| ctx.invalid(value.span(), "entra.client_secret_expires", m))?,
        ),
    };

    let sync = build_sync(
        ctx,
        raw.sync.map(Spanned::into_inner).unwrap_or_default(),
        &base_dir,
    )?;
    let mapping = build_mapping(
        ctx,
        raw.mapping.map(Spanned::into_inner).unwrap_or_default(),
    )?;

    // The secret last: it may read files.
    let (secret, secret_source) =
        resolve_secret(ctx, &entra, &entra_span, env, &base_dir, &mut warnings)?;

    Ok(Config {
        path: ctx.path.to_path_buf(),
        entra: Entra {
            tenant_id,
            client_id,
            secret,
            secret_source,
            client_secret_expires,
            cloud,
            authority_host,
            graph_endpoint,
        },
        sync,
        mapping,
        warnings,
    })
}

fn build_sync(ctx: &Ctx<'_>, sync: RawSync, base_dir: &Path) -> Result<SyncSettings, ConfigError> {
    let enabled = sync.enabled.as_ref().is_none_or(|v| *v.get_ref());
    let interval = match &sync.interval {
        None => DEFAULT_INTERVAL,
        Some(value) => {
            let d = parse_duration(value.get_ref())
                .map_err(|m| ctx.invalid(value.span(), "sync.interval", m))?;
            if d < MIN_INTERVAL {
                return Err(ctx.invalid(
                    value.span(),
                    "sync.interval",
                    format!(
                        "{:?} is shorter than 1s; use at least \"1s\" (the default is \"5m\")",
                        value.get_ref()
                    ),
                ));
            }
            d
        }
    };
    let full_sync_interval = match &sync.full_sync_interval {
        None => DEFAULT_FULL_SYNC_INTERVAL,
        Some(value) => parse_duration(value.get_ref())
            .map_err(|m| ctx.invalid(value.span(), "sync.full_sync_interval", m))?,
    };
    if full_sync_interval < interval {
        return Err(match (&sync.full_sync_interval, &sync.interval) {
            (Some(full), _) => ctx.invalid(
                full.span(),
                "sync.full_sync_interval",
                format!(
                    "{:?} is shorter than sync.interval ({}); make it at least as long as interval",
                    full.get_ref(),
                    humantime::format_duration(interval)
                ),
            ),
            (None, value) => {
                // `value` is never None here: the defaults are ordered, so interval was set.
                let shown = value.as_ref().map_or_else(
                    || humantime::format_duration(interval).to_string(),
                    |v| format!("{:?}", v.get_ref()),
                );
                ctx.error(
                    ErrorKind::Invalid,
                    value.as_ref().map(Spanned::span),
                    Some("sync.interval"),
                    format!(
                        "{shown} is longer than full_sync_interval (default \"7d\"); shorten interval or set full_sync_interval to at least that"
                    ),
                )
            }
        });
    }
    let database = match &sync.database {
        None => PathBuf::from(DEFAULT_DATABASE),
        Some(value) => {
            let raw_path = value.get_ref();
            if raw_path.trim().is_empty() {
                return Err(ctx.invalid(
                    value.span(),
                    "sync.database",
                    format!("is empty; give the SQLite file's path, or remove the key to use the default \"{DEFAULT_DATABASE}\""),
                ));
            }
            if raw_path.ends_with('/') {
                return Err(ctx.invalid(
                    value.span(),
                    "sync.database",
                    format!("{raw_path:?} is a directory; give a file path such as \"{DEFAULT_DATABASE}\""),
                ));
            }
            base_dir.join(raw_path)
        }
    };
    Ok(SyncSettings {
        enabled,
        interval,
        full_sync_interval,
        database,
    })
}

fn build_mapping(ctx: &Ctx<'_>, mapping: RawMapping) -> Result<Mapping, ConfigError> {
    let team = match &mapping.team {
        None => DEFAULT_TEAM.to_owned(),
        Some(value) if value.get_ref().trim().is_empty() => {
            return Err(ctx.invalid(
                value.span(),
                "mapping.team",
                format!("is empty; give the local team's name, or remove the key to use the default \"{DEFAULT_TEAM}\""),
            ));
        }
        Some(value) => value.get_ref().clone(),
    };
    let mut groups: Vec<String> = Vec::new();
    let mut seen: Vec<(String, &Spanned<String>)> = Vec::new();
    for group in mapping.groups.iter().flat_map(|g| g.get_ref()) {
        let name = group.get_ref();
        if name.trim().is_empty() {
            return Err(ctx.invalid(
                group.span(),
                "mapping.groups",
                "contains an empty string; give each group's display name or object ID, or remove the empty entry".to_owned(),
            ));
        }
        let folded = name.to_lowercase();
        if let Some((_, first)) = seen.iter().find(|(f, _)| *f == folded) {
            let first_line = line_of(ctx.text.as_bytes(), first.span().start);
            return Err(ctx.invalid(
                group.span(),
                "mapping.groups",
                format!(
                    "{name:?} is listed twice (also on line {first_line} as {:?}; names and IDs are compared ignoring case); remove one of them",
                    first.get_ref()
                ),
            ));
        }
        seen.push((folded, group));
        groups.push(name.clone());
    }
    Ok(Mapping {
        team,
        groups,
        nested: mapping.nested.as_ref().is_none_or(|v| *v.get_ref()),
        include_disabled: mapping
            .include_disabled
            .as_ref()
            .is_some_and(|v| *v.get_ref()),
    })
}

fn required<'v>(
    ctx: &Ctx<'_>,
    value: Option<&'v Spanned<String>>,
    table_span: &Range<usize>,
    table: &str,
    key: &str,
    what: &str,
) -> Result<&'v Spanned<String>, ConfigError> {
    value.ok_or_else(|| {
        let dotted = format!("{table}.{key}");
        let example = example_of(&dotted).unwrap_or_default();
        ctx.error(
            ErrorKind::Invalid,
            Some(table_span.clone()),
            Some(&dotted),
            format!(
                "required key is missing; add it to the [{table}] table, e.g. {example} ({what})"
            ),
        )
    })
}

/// Directory that relative paths in the file are relative to.
fn config_dir(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match absolute.parent() {
        Some(parent) => parent.to_path_buf(),
        None => PathBuf::from("/"),
    }
}

fn is_guid(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A DNS name: dot-separated labels of ASCII letters, digits and hyphens, 1-63 characters,
/// not starting or ending with a hyphen, 253 characters at most.
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn validate_tenant(tenant: &str) -> Result<String, String> {
    if tenant.trim().is_empty() {
        return Err(format!("is empty; {TENANT_HINT}"));
    }
    let lower = tenant.to_ascii_lowercase();
    if ["common", "organizations", "consumers"].contains(&lower.as_str()) {
        return Err(format!(
            "{tenant:?} is a multi-tenant alias, but client credentials needs a tenant-specific authority; {TENANT_HINT}"
        ));
    }
    if is_guid(tenant) {
        return Ok(tenant.to_owned());
    }
    let all_numeric_tld = tenant
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    if tenant.contains('.') && is_dns_name(tenant) && !all_numeric_tld {
        return Ok(tenant.to_owned());
    }
    Err(format!(
        "{tenant:?} is neither a GUID nor a domain name; {TENANT_HINT}"
    ))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!(
            "{text:?} is not a duration ({}); {DURATION_HINT}",
            one_line(&e.to_string())
        )
    })
}

fn parse_local_date(value: &toml::Value) -> Result<time::Date, String> {
    const HINT: &str = "write the date the secret expires (the Expires column under Certificates & secrets) \
                        without quotes, e.g. client_secret_expires = 2028-11-26";
    match value {
        toml::Value::Datetime(dt) => match (&dt.date, &dt.time, &dt.offset) {
            (Some(date), None, None) => time::Month::try_from(date.month)
                .ok()
                .and_then(|month| {
                    time::Date::from_calendar_date(i32::from(date.year), month, date.day).ok()
                })
                .ok_or_else(|| format!("{dt} is not a valid date; {HINT}")),
            _ => Err(format!(
                "{dt} is not a plain date (it has a time of day); {HINT}"
            )),
        },
        toml::Value::String(s) => Err(format!("{s:?} is a string, not a TOML date; {HINT}")),
        other => Err(format!(
            "is {}, not a TOML date; {HINT}",
            with_article(other.type_str())
        )),
    }
}

/// Parses a bare origin `scheme://host[:port]` (one trailing `/` allowed) into its normal form:
/// lower-case scheme and host, no trailing slash. `http` only for loopback hosts.
fn parse_origin(raw: &str, example: &str, path_note: &str) -> Result<String, String> {
    let shape = "give only scheme://host[:port]";
    if raw.is_empty() {
        return Err(format!(
            "is empty; remove the key to use the cloud's default, or give an origin like \"{example}\""
        ));
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(format!("{raw:?} is not a URL; {shape}, e.g. \"{example}\""));
    };
    // Userinfo may hold a password: do not echo the value.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(format!(
            "contains a user name or password (user@host); credentials never go in the URL: {shape}, e.g. \"{example}\""
        ));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{raw:?} contains whitespace; {shape}, e.g. \"{example}\""
        ));
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!(
            "{raw:?} has scheme {scheme:?}; use https://, e.g. \"{example}\""
        ));
    }
    if tail.contains(['?', '#']) {
        return Err(format!(
            "{raw:?} has a query or fragment; {shape}, e.g. \"{example}\""
        ));
    }
    if !tail.is_empty() && tail != "/" {
        return Err(format!(
            "{raw:?} has a path ({tail:?}); {shape}, e.g. \"{example}\"{path_note}"
        ));
    }

    let (host, port, loopback) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err(format!(
                "{raw:?} has an unclosed IPv6 address (missing ']'); {shape}"
            ));
        };
        let Ok(ip) = inside.parse::<Ipv6Addr>() else {
            return Err(format!(
                "{raw:?}: [{inside}] is not a valid IPv6 address; {shape}"
            ));
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => {
                    return Err(format!(
                        "{raw:?} has {after:?} after the IPv6 address; {shape}"
                    ));
                }
            },
        };
        (format!("[{ip}]"), port, ip.is_loopback())
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(format!("{raw:?} has no host; {shape}, e.g. \"{example}\""));
        }
        if !host.is_ascii() {
            return Err(format!(
                "{raw:?} has a non-ASCII host; write it in its punycode (xn--) form"
            ));
        }
        let host = host.to_ascii_lowercase();
        let numeric = host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
        let loopback = if numeric {
            match host.parse::<Ipv4Addr>() {
                Ok(ip) => ip.is_loopback(),
                Err(_) => {
                    return Err(format!(
                        "{raw:?}: {host:?} is not a valid IPv4 address; {shape}"
                    ));
                }
            }
        } else if is_dns_name(&host) {
            host == "localhost"
        } else {
            return Err(format!(
                "{raw:?}: {host:?} is not a valid host name (letters, digits, hyphens and dots only); {shape}, e.g. \"{example}\""
            ));
        };
        (host, port, loopback)
    };

    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => {
                return Err(format!(
                    "{raw:?} has port {p:?}, which is not a number from 1 to 65535; {shape}"
                ));
            }
        },
    };
    let port = port.map(|n| format!(":{n}")).unwrap_or_default();

    if scheme == "http" && !loopback {
        return Err(format!(
            "{raw:?} uses plain http, which is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]); use https://{host}{port}"
        ));
    }
    Ok(format!("{scheme}://{host}{port}"))
}

// ---------------------------------------------------------------------------------------------
// The client secret
// ---------------------------------------------------------------------------------------------

/// One way the secret is given, before it is read.
enum Given<'a> {
    Inline(&'a Spanned<String>),
    File {
        path: PathBuf,
        span: Range<usize>,
        /// How to name the file in messages; `None` when the "path" looks like the secret
        /// itself and must not be echoed.
        shown: Option<String>,
    },
    Env(&'a str),
    Credential(PathBuf),
}

impl Given<'_> {
    fn source(&self) -> SecretSource {
        match self {
            Given::Inline(_) => SecretSource::Inline,
            Given::File { path, .. } => SecretSource::File(path.clone()),
            Given::Env(_) => SecretSource::Env,
            Given::Credential(path) => SecretSource::Credential(path.clone()),
        }
    }

    /// How to name it in the "several sources" error.
    fn describe(&self) -> String {
        match self {
            Given::File { shown: None, .. } => "client_secret_file".to_owned(),
            other => other.source().to_string(),
        }
    }

    /// Dotted key and span, for the sources in the file.
    fn at(&self) -> Option<(&'static str, Range<usize>)> {
        match self {
            Given::Inline(value) => Some(("entra.client_secret", value.span())),
            Given::File { span, .. } => Some(("entra.client_secret_file", span.clone())),
            Given::Env(_) | Given::Credential(_) => None,
        }
    }
}

/// A value that is probably a secret pasted where a path belongs: it is then never echoed.
fn looks_like_secret(value: &str) -> bool {
    !value.contains('/') && value.len() >= 30 && !value.contains(char::is_whitespace)
}

fn resolve_secret(
    ctx: &Ctx<'_>,
    entra: &RawEntra,
    entra_span: &Range<usize>,
    env: &Env,
    base_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<(Secret, SecretSource), ConfigError> {
    let mut given = Vec::new();
    if let Some(inline) = &entra.client_secret {
        given.push(Given::Inline(inline));
    }
    if let Some(file) = &entra.client_secret_file {
        let value = file.get_ref();
        if value.trim().is_empty() {
            return Err(ctx.invalid(
                file.span(),
                "entra.client_secret_file",
                "is empty; give the path of a file holding only the client secret, e.g. \"/etc/entra-sync/client-secret\"".to_owned(),
            ));
        }
        let path = base_dir.join(value);
        given.push(Given::File {
            shown: (!looks_like_secret(value)).then(|| path.display().to_string()),
            path,
            span: file.span(),
        });
    }
    if let Some(secret) = env.secret.as_deref().map(str::trim_end)
        && !secret.is_empty()
    {
        given.push(Given::Env(secret));
    }
    if let Some(dir) = &env.credentials_directory {
        let path = dir.join(CREDENTIAL_NAME);
        let present = match fs::symlink_metadata(&path) {
            Ok(_) => true,
            // Present but unreadable: let the read report it.
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        };
        if present {
            given.push(Given::Credential(path));
        }
    }

    if given.is_empty() {
        return Err(ctx.error(
            ErrorKind::Secret,
            Some(entra_span.clone()),
            Some("entra.client_secret"),
            format!(
                "no client secret is configured; do one of: add client_secret_file = \"/etc/entra-sync/client-secret\" \
                 (a file holding only the secret) to [entra], add client_secret = \"...\" to [entra], \
                 set the environment variable {SECRET_ENV}, or pass a systemd credential \
                 (LoadCredential={CREDENTIAL_NAME}:/path/to/secret, read from $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME})"
            ),
        ));
    }
    if given.len() > 1 {
        let names = given
            .iter()
            .map(Given::describe)
            .collect::<Vec<_>>()
            .join(", ");
        let at = given.iter().find_map(Given::at);
        return Err(ctx.error(
            ErrorKind::Secret,
            at.as_ref().map(|(_, span)| span.clone()),
            at.as_ref().map(|(key, _)| *key),
            format!(
                "the client secret is given {} ways ({names}); keep exactly one of them and remove the others",
                given.len()
            ),
        ));
    }
    let given = given.remove(0);

    let value = match &given {
        Given::Inline(inline) => {
            let value = inline.get_ref().trim_end();
            if value.is_empty() {
                return Err(ctx.invalid(
                    inline.span(),
                    "entra.client_secret",
                    "is empty; put the client secret's Value here, or remove the key and use client_secret_file".to_owned(),
                ));
            }
            if value.starts_with('/') {
                return Err(ctx.invalid(
                    inline.span(),
                    "entra.client_secret",
                    format!(
                        "{value:?} looks like a file path; to read the secret from that file write client_secret_file = {value:?} instead"
                    ),
                ));
            }
            if let Ok(meta) = fs::metadata(ctx.path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    warnings.push(format!(
                        "{path} contains client_secret and is readable by other users (mode {mode:04o}); \
                         run: chmod 600 {path} (or move the secret to client_secret_file or a systemd credential)",
                        path = ctx.path.display(),
                    ));
                }
            }
            value.to_owned()
        }
        Given::Env(secret) => (*secret).to_owned(),
        Given::File { path, span, shown } => {
            let value = read_secret_file(path, shown.as_deref()).map_err(|m| {
                ctx.error(
                    ErrorKind::Secret,
                    Some(span.clone()),
                    Some("entra.client_secret_file"),
                    m,
                )
            })?;
            if let (Some(shown), Ok(meta)) = (shown, fs::metadata(path)) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o007 != 0 {
                    warnings.push(format!(
                        "client_secret_file {shown} is accessible by other users (mode {mode:04o}); run: chmod 600 {shown}"
                    ));
                }
            }
            value
        }
        Given::Credential(path) => {
            let shown = format!("systemd credential {}", path.display());
            read_secret_file(path, Some(&shown))
                .map_err(|m| ctx.error(ErrorKind::Secret, None, None, m))?
        }
    };

    let source = given.source();
    if is_guid(&value) {
        warnings.push(format!(
            "the client secret from {source} looks like a GUID, which is the Secret ID; \
             entra-sync needs the secret's Value (shown once, when the secret is created)"
        ));
    }
    Ok((Secret(value), source))
}

/// Reads a file holding only the secret. `shown` is how to name the file in messages (`None`:
/// do not show it). Errors are the message part only.
fn read_secret_file(path: &Path, shown: Option<&str>) -> Result<String, String> {
    let name = shown.map_or_else(
        || "the file (its name is not shown because it looks like a secret; client_secret_file takes a path)".to_owned(),
        str::to_owned,
    );
    let bytes = fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!(
            "{name} does not exist; create it holding only the client secret's Value (chmod 600), or correct the path"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "cannot read {name}: permission denied; make it readable by the user entra-sync runs as \
             (check the owner with ls -l, then chown it to that user and chmod 600 it)"
        ),
        _ => format!("cannot read {name}: {e}; it must be a file holding only the client secret's Value"),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        format!("{name} is not UTF-8 text; it must hold only the client secret's Value")
    })?;
    let value = text.trim_end();
    if value.is_empty() {
        return Err(format!(
            "{name} is empty; put the client secret's Value in it (Certificates & secrets in the app registration; the Value, not the Secret ID)"
        ));
    }
    if value.contains(['\n', '\r']) {
        return Err(format!(
            "{name} has more than one line; it must hold only the client secret's Value"
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is fine in tests only
mod tests {
    use super::*;
    use std::io::Write as _;

    const P: &str = "/etc/entra-sync/config.toml";
    const SECRET: &str = "Zq8~s3cr3t.VALUE_abcdefghijklmnopqrstuv";
    const TENANT: &str = "contoso.onmicrosoft.com";
    const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
    /// Lines 1-3 of most test documents.
    const HEAD: &str = "[entra]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"11111111-2222-3333-4444-555555555555\"\n";

    fn env_secret() -> Env {
        Env {
            secret: Some(SECRET.to_owned()),
            credentials_directory: None,
        }
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new(P), &env_secret())
    }

    fn ok(text: &str) -> Config {
        match parse(text) {
            Ok(config) => config,
            Err(e) => panic!("expected {text:?} to parse, got: {e}"),
        }
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("expected {text:?} to fail"),
            Err(e) => e.to_string(),
        }
    }

    /// Runs (document, expected Display) cases, reporting all mismatches at once.
    fn check_errors(cases: &[(&str, &str)]) {
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

    fn with_head(rest: &str) -> String {
        format!("{HEAD}{rest}")
    }

    // ---- errors: the shape of the document ----

    #[test]
    fn syntax_shape_and_type_errors() {
        check_errors(&[
            (
                "[entra]\ntenant_id = \"x\n",
                "config: /etc/entra-sync/config.toml:2: not valid TOML: invalid basic string, expected `\"`; fix the syntax on this line (see https://toml.io)",
            ),
            (
                "[entra\n",
                "config: /etc/entra-sync/config.toml:1: not valid TOML: unclosed table, expected `]`; fix the syntax on this line (see https://toml.io)",
            ),
            (
                &with_head("\n[sync]\ninterval = 5m\n"),
                "config: /etc/entra-sync/config.toml:6: not valid TOML: string values must be quoted, expected literal string; fix the syntax on this line (see https://toml.io)",
            ),
            (
                &with_head("tenant_id = \"fabrikam.com\"\n"),
                "config: /etc/entra-sync/config.toml:4: not valid TOML: duplicate key `tenant_id`; a key or table may appear only once, so delete or merge the repeated one",
            ),
            (
                &with_head("[sync]\n[sync]\n"),
                "config: /etc/entra-sync/config.toml:5: not valid TOML: duplicate key `sync`; a key or table may appear only once, so delete or merge the repeated one",
            ),
            (
                &with_head("foo = 1\n"),
                "config: /etc/entra-sync/config.toml:4: entra.foo: unknown key; valid keys in [entra] are: tenant_id, client_id, client_secret, client_secret_file, client_secret_expires, cloud, authority_host, graph_endpoint",
            ),
            (
                &with_head("[sync]\nintervall = \"5m\"\n"),
                "config: /etc/entra-sync/config.toml:5: sync.intervall: unknown key; did you mean interval? (valid keys in [sync]: enabled, interval, full_sync_interval, database)",
            ),
            (
                &with_head("[mapping]\nInclude-Disabled = true\n"),
                "config: /etc/entra-sync/config.toml:5: mapping.Include-Disabled: unknown key; did you mean include_disabled? (valid keys in [mapping]: team, groups, nested, include_disabled)",
            ),
            (
                &with_head("interval = \"5m\"\n"),
                "config: /etc/entra-sync/config.toml:4: entra.interval: unknown key in [entra]; interval belongs in the [sync] table, so move it below the [sync] header",
            ),
            (
                "tenant_id = \"contoso.onmicrosoft.com\"\n[entra]\n",
                "config: /etc/entra-sync/config.toml:1: tenant_id: unknown top-level key; tenant_id belongs in the [entra] table, so move it below the [entra] header",
            ),
            (
                "verbose = true\n",
                "config: /etc/entra-sync/config.toml:1: verbose: unknown top-level key; every key goes in one of the tables [entra], [sync], [mapping]",
            ),
            (
                &with_head("[synk]\nenabled = true\n"),
                "config: /etc/entra-sync/config.toml:4: synk: unknown table [synk]; did you mean [sync]? (valid tables: [entra], [sync], [mapping])",
            ),
            (
                &with_head("[logging]\nlevel = \"debug\"\n"),
                "config: /etc/entra-sync/config.toml:4: logging: unknown table [logging]; valid tables are [entra], [sync], [mapping]",
            ),
            (
                &with_head("[entra.extra]\nx = 1\n"),
                "config: /etc/entra-sync/config.toml:4: entra.extra: unknown key; valid keys in [entra] are: tenant_id, client_id, client_secret, client_secret_file, client_secret_expires, cloud, authority_host, graph_endpoint",
            ),
            (
                "[[entra]]\ntenant_id = \"contoso.onmicrosoft.com\"\n",
                "config: /etc/entra-sync/config.toml:1: entra: is written [[entra]] (an array of tables); write [entra] with single brackets",
            ),
            (
                "sync = 5\n",
                "config: /etc/entra-sync/config.toml:1: sync: must be a table but is an integer; write a section header [sync] with its keys on the lines below it",
            ),
            (
                "[entra]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = 12\n",
                "config: /etc/entra-sync/config.toml:3: entra.client_id: invalid type: integer `12`, expected a string; write it like client_id = \"11111111-2222-3333-4444-555555555555\"",
            ),
            (
                &with_head("[sync]\ninterval = 300\n"),
                "config: /etc/entra-sync/config.toml:5: sync.interval: invalid type: integer `300`, expected a string; write it like interval = \"5m\"",
            ),
            (
                &with_head("[sync]\nenabled = \"yes\"\n"),
                "config: /etc/entra-sync/config.toml:5: sync.enabled: invalid type: string \"yes\", expected a boolean; write it like enabled = true",
            ),
            (
                &with_head("[mapping]\ngroups = [\n  \"Engineering\",\n  5,\n]\n"),
                "config: /etc/entra-sync/config.toml:7: mapping.groups: invalid type: integer `5`, expected a string; write it like groups = [\"Engineering\", \"Sales\"]",
            ),
            (
                &with_head("[mapping]\ngroups = \"Engineering\"\n"),
                "config: /etc/entra-sync/config.toml:5: mapping.groups: invalid type: string \"Engineering\", expected a sequence; write it like groups = [\"Engineering\", \"Sales\"]",
            ),
            // Dotted keys at the top level are the same as a table.
            (
                "entra.tenant_id = \"contoso.onmicrosoft.com\"\nentra.client_id = \"abc\"\n",
                "config: /etc/entra-sync/config.toml:2: entra.client_id: \"abc\" is not a GUID; copy the Application (client) ID from the app registration's Overview page in the Microsoft Entra admin center",
            ),
        ]);
    }

    #[test]
    fn missing_required_keys() {
        check_errors(&[
            (
                "[entra]\nclient_id = \"11111111-2222-3333-4444-555555555555\"\n",
                "config: /etc/entra-sync/config.toml:1: entra.tenant_id: required key is missing; add it to the [entra] table, e.g. tenant_id = \"contoso.onmicrosoft.com\" (the Directory (tenant) ID or a verified domain)",
            ),
            (
                "# comment\n\n[entra]\ntenant_id = \"contoso.onmicrosoft.com\"\n",
                "config: /etc/entra-sync/config.toml:3: entra.client_id: required key is missing; add it to the [entra] table, e.g. client_id = \"11111111-2222-3333-4444-555555555555\" (the Application (client) ID)",
            ),
            (
                "[sync]\nenabled = true\n",
                "config: /etc/entra-sync/config.toml: entra.tenant_id: required key is missing (there is no [entra] table); add an [entra] table with tenant_id = \"contoso.onmicrosoft.com\", client_id = \"11111111-2222-3333-4444-555555555555\" and a client secret (see config.example.toml)",
            ),
            (
                "",
                "config: /etc/entra-sync/config.toml: entra.tenant_id: required key is missing (there is no [entra] table); add an [entra] table with tenant_id = \"contoso.onmicrosoft.com\", client_id = \"11111111-2222-3333-4444-555555555555\" and a client secret (see config.example.toml)",
            ),
        ]);
    }

    // ---- errors: values ----

    #[test]
    fn tenant_and_client_rules() {
        let tenant =
            |value: &str| format!("[entra]\ntenant_id = {value:?}\nclient_id = \"{CLIENT}\"\n");
        let hint = "use the Directory (tenant) ID from the app registration's Overview page in the Microsoft Entra admin center, or a verified domain such as contoso.onmicrosoft.com";
        let cases = [
            (
                "common",
                format!(
                    "\"common\" is a multi-tenant alias, but client credentials needs a tenant-specific authority; {hint}"
                ),
            ),
            (
                "Organizations",
                format!(
                    "\"Organizations\" is a multi-tenant alias, but client credentials needs a tenant-specific authority; {hint}"
                ),
            ),
            (
                "consumers",
                format!(
                    "\"consumers\" is a multi-tenant alias, but client credentials needs a tenant-specific authority; {hint}"
                ),
            ),
            (
                "contoso",
                format!("\"contoso\" is neither a GUID nor a domain name; {hint}"),
            ),
            ("", format!("is empty; {hint}")),
            (
                "contoso..com",
                format!("\"contoso..com\" is neither a GUID nor a domain name; {hint}"),
            ),
            (
                "contoso.com.",
                format!("\"contoso.com.\" is neither a GUID nor a domain name; {hint}"),
            ),
            (
                "-contoso.com",
                format!("\"-contoso.com\" is neither a GUID nor a domain name; {hint}"),
            ),
            (
                "contoso_x.com",
                format!("\"contoso_x.com\" is neither a GUID nor a domain name; {hint}"),
            ),
            (
                "10.0.0.1",
                format!("\"10.0.0.1\" is neither a GUID nor a domain name; {hint}"),
            ),
            (
                " contoso.com",
                format!("\" contoso.com\" is neither a GUID nor a domain name; {hint}"),
            ),
            (
                "https://login.microsoftonline.com/contoso.com",
                format!(
                    "\"https://login.microsoftonline.com/contoso.com\" is neither a GUID nor a domain name; {hint}"
                ),
            ),
            (
                "1234567-aaaa-bbbb-cccc-dddddddddddd",
                format!(
                    "\"1234567-aaaa-bbbb-cccc-dddddddddddd\" is neither a GUID nor a domain name; {hint}"
                ),
            ),
        ];
        let long_label = format!("{}.com", "a".repeat(64));
        let mut owned: Vec<(String, String)> = cases
            .iter()
            .map(|(value, message)| {
                (
                    tenant(value),
                    format!("config: {P}:2: entra.tenant_id: {message}"),
                )
            })
            .collect();
        owned.push((
            tenant(&long_label),
            format!("config: {P}:2: entra.tenant_id: {long_label:?} is neither a GUID nor a domain name; {hint}"),
        ));
        let client_hint = "copy the Application (client) ID from the app registration's Overview page in the Microsoft Entra admin center";
        for bad in [
            "abc",
            "",
            "11111111222233334444555555555555",
            "{11111111-2222-3333-4444-555555555555}",
            "11111111-2222-3333-4444-55555555555g",
        ] {
            owned.push((
                format!("[entra]\ntenant_id = \"{TENANT}\"\nclient_id = {bad:?}\n"),
                format!("config: {P}:3: entra.client_id: {bad:?} is not a GUID; {client_hint}"),
            ));
        }
        owned.push((
            "[entra]\ntenant_id = \"AAAAAAAA-2222-3333-4444-555555555555\"\nclient_id = \"aaaaaaaa-2222-3333-4444-555555555555\"\n".to_owned(),
            format!("config: {P}:3: entra.client_id: \"aaaaaaaa-2222-3333-4444-555555555555\" is the tenant ID, not the application's ID; {client_hint}"),
        ));
        let cases: Vec<(&str, &str)> = owned
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        check_errors(&cases);

        // Accepted forms.
        for good in [
            "contoso.onmicrosoft.com",
            "Contoso.COM",
            "a-b.c-d.example",
            "6f1b8c3e-0000-4000-8000-000000000001",
            "6F1B8C3E-0000-4000-8000-00000000000A",
            "xn--bcher-kva.example",
        ] {
            assert_eq!(ok(&tenant(good)).entra.tenant_id, good);
        }
    }

    #[test]
    fn cloud_and_endpoints() {
        let e = |rest: &str| err(&with_head(rest));
        assert_eq!(
            e("cloud = \"azure\"\n"),
            "config: /etc/entra-sync/config.toml:4: entra.cloud: \"azure\" is not a known cloud; use one of global, usgov, usgov-dod, china (global unless the tenant is in a US Government or China cloud)"
        );
        for (name, cloud, login, graph) in [
            (
                "global",
                Cloud::Global,
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com",
            ),
            (
                "usgov",
                Cloud::UsGov,
                "https://login.microsoftonline.us",
                "https://graph.microsoft.us",
            ),
            (
                "USGov-DoD",
                Cloud::UsGovDod,
                "https://login.microsoftonline.us",
                "https://dod-graph.microsoft.us",
            ),
            (
                "china",
                Cloud::China,
                "https://login.partner.microsoftonline.cn",
                "https://microsoftgraph.chinacloudapi.cn",
            ),
        ] {
            let config = ok(&with_head(&format!("cloud = {name:?}\n")));
            assert_eq!(config.entra.cloud, cloud);
            assert_eq!(config.entra.authority_host, login);
            assert_eq!(config.entra.graph_endpoint, graph);
            assert_eq!(cloud.to_string(), name.to_ascii_lowercase());
            assert_eq!(Cloud::from_name(&cloud.to_string()), Some(cloud));
        }
        // An override wins over the cloud's host, for that host only.
        let config = ok(&with_head(
            "cloud = \"usgov\"\ngraph_endpoint = \"https://graph.example.test:8443/\"\n",
        ));
        assert_eq!(
            config.entra.authority_host,
            "https://login.microsoftonline.us"
        );
        assert_eq!(
            config.entra.graph_endpoint,
            "https://graph.example.test:8443"
        );
        // The token's audience stays the cloud's Graph resource.
        assert_eq!(config.entra.scope(), "https://graph.microsoft.us/.default");
        assert_eq!(
            config.entra.token_url(),
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
    }

    #[test]
    fn endpoint_normal_forms() {
        for (given, stored) in [
            ("https://graph.microsoft.com", "https://graph.microsoft.com"),
            (
                "https://graph.microsoft.com/",
                "https://graph.microsoft.com",
            ),
            ("HTTPS://Graph.Microsoft.COM", "https://graph.microsoft.com"),
            ("https://graph.example:0443", "https://graph.example:443"),
            ("https://10.1.2.3:8443", "https://10.1.2.3:8443"),
            ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
            // http only for loopback
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://LOCALHOST/", "http://localhost"),
            ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
            ("http://127.45.6.7", "http://127.45.6.7"),
            ("http://[::1]:9000", "http://[::1]:9000"),
            ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
        ] {
            let config = ok(&with_head(&format!(
                "graph_endpoint = {given:?}\nauthority_host = {given:?}\n"
            )));
            assert_eq!(
                config.entra.graph_endpoint, stored,
                "graph_endpoint = {given:?}"
            );
            assert_eq!(
                config.entra.authority_host, stored,
                "authority_host = {given:?}"
            );
        }
    }

    #[test]
    fn endpoint_errors() {
        let shape = "give only scheme://host[:port]";
        let ex = "\"https://graph.microsoft.com\"";
        let cases: Vec<(&str, String)> = vec![
            ("graph.microsoft.com", format!("\"graph.microsoft.com\" is not a URL; {shape}, e.g. {ex}")),
            ("", format!("is empty; remove the key to use the cloud's default, or give an origin like {ex}")),
            ("ftp://graph.microsoft.com", format!("\"ftp://graph.microsoft.com\" has scheme \"ftp\"; use https://, e.g. {ex}")),
            ("https://", format!("\"https://\" has no host; {shape}, e.g. {ex}")),
            ("https://:443", format!("\"https://:443\" has no host; {shape}, e.g. {ex}")),
            ("https://graph.microsoft.com/v1.0", format!("\"https://graph.microsoft.com/v1.0\" has a path (\"/v1.0\"); {shape}, e.g. {ex} (entra-sync adds the API version itself)")),
            ("https://graph.microsoft.com//", format!("\"https://graph.microsoft.com//\" has a path (\"//\"); {shape}, e.g. {ex} (entra-sync adds the API version itself)")),
            ("https://graph.microsoft.com?x=1", format!("\"https://graph.microsoft.com?x=1\" has a query or fragment; {shape}, e.g. {ex}")),
            ("https://graph.microsoft.com/#top", format!("\"https://graph.microsoft.com/#top\" has a query or fragment; {shape}, e.g. {ex}")),
            ("https://admin:hunter2@graph.microsoft.com", format!("contains a user name or password (user@host); credentials never go in the URL: {shape}, e.g. {ex}")),
            ("https://graph.microsoft.com:0", format!("\"https://graph.microsoft.com:0\" has port \"0\", which is not a number from 1 to 65535; {shape}")),
            ("https://graph.microsoft.com:65536", format!("\"https://graph.microsoft.com:65536\" has port \"65536\", which is not a number from 1 to 65535; {shape}")),
            ("https://graph.microsoft.com:", format!("\"https://graph.microsoft.com:\" has port \"\", which is not a number from 1 to 65535; {shape}")),
            ("https://graph.microsoft.com:+80", format!("\"https://graph.microsoft.com:+80\" has port \"+80\", which is not a number from 1 to 65535; {shape}")),
            ("https://graph_api.example", format!("\"https://graph_api.example\": \"graph_api.example\" is not a valid host name (letters, digits, hyphens and dots only); {shape}, e.g. {ex}")),
            ("https://graph..example", format!("\"https://graph..example\": \"graph..example\" is not a valid host name (letters, digits, hyphens and dots only); {shape}, e.g. {ex}")),
            ("https://gräph.example", "\"https://gräph.example\" has a non-ASCII host; write it in its punycode (xn--) form".to_owned()),
            ("https://999.1.1.1", format!("\"https://999.1.1.1\": \"999.1.1.1\" is not a valid IPv4 address; {shape}")),
            ("https://[::1", format!("\"https://[::1\" has an unclosed IPv6 address (missing ']'); {shape}")),
            ("https://[zz::1]", format!("\"https://[zz::1]\": [zz::1] is not a valid IPv6 address; {shape}")),
            ("https://[::1]x", format!("\"https://[::1]x\" has \"x\" after the IPv6 address; {shape}")),
            (" https://graph.microsoft.com", format!("\" https://graph.microsoft.com\" contains whitespace; {shape}, e.g. {ex}")),
            ("https://graph.microsoft.com ", format!("\"https://graph.microsoft.com \" contains whitespace; {shape}, e.g. {ex}")),
            ("http://graph.microsoft.com", "\"http://graph.microsoft.com\" uses plain http, which is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]); use https://graph.microsoft.com".to_owned()),
            ("http://10.0.0.1:8080", "\"http://10.0.0.1:8080\" uses plain http, which is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]); use https://10.0.0.1:8080".to_owned()),
            ("http://[2001:db8::1]", "\"http://[2001:db8::1]\" uses plain http, which is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]); use https://[2001:db8::1]".to_owned()),
            ("http://localhost.evil.example", "\"http://localhost.evil.example\" uses plain http, which is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]); use https://localhost.evil.example".to_owned()),
            ("http://128.0.0.1", "\"http://128.0.0.1\" uses plain http, which is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]); use https://128.0.0.1".to_owned()),
        ];
        let owned: Vec<(String, String)> = cases
            .iter()
            .map(|(value, message)| {
                (
                    with_head(&format!("graph_endpoint = {value:?}\n")),
                    format!("config: {P}:4: entra.graph_endpoint: {message}"),
                )
            })
            .collect();
        let cases: Vec<(&str, &str)> = owned
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        check_errors(&cases);
        // The password is not echoed.
        assert!(
            !err(&with_head(
                "graph_endpoint = \"https://admin:hunter2@graph.microsoft.com\"\n"
            ))
            .contains("hunter2")
        );
        // authority_host has its own note about paths.
        assert_eq!(
            err(&with_head(
                "authority_host = \"https://login.microsoftonline.com/contoso.onmicrosoft.com\"\n"
            )),
            "config: /etc/entra-sync/config.toml:4: entra.authority_host: \"https://login.microsoftonline.com/contoso.onmicrosoft.com\" has a path (\"/contoso.onmicrosoft.com\"); give only scheme://host[:port], e.g. \"https://login.microsoftonline.com\" (the tenant goes in entra.tenant_id)"
        );
    }

    #[test]
    fn secret_expiry() {
        let config = ok(&with_head("client_secret_expires = 2028-11-26\n"));
        let expires = time::macros::date!(2028 - 11 - 26);
        assert_eq!(config.entra.client_secret_expires, Some(expires));
        assert_eq!(
            config.secret_days_left(time::macros::date!(2028 - 11 - 16)),
            Some(10)
        );
        assert_eq!(config.secret_days_left(expires), Some(0));
        assert_eq!(
            config.secret_days_left(time::macros::date!(2028 - 12 - 01)),
            Some(-5)
        );
        assert_eq!(ok(HEAD).secret_days_left(expires), None);
        // Far in the future (API-created secrets): accepted without a warning.
        let config = ok(&with_head("client_secret_expires = 2099-01-01\n"));
        assert!(config.warnings.is_empty());

        let hint = "write the date the secret expires (the Expires column under Certificates & secrets) without quotes, e.g. client_secret_expires = 2028-11-26";
        check_errors(&[
            (
                &with_head("client_secret_expires = \"2028-11-26\"\n"),
                &format!(
                    "config: {P}:4: entra.client_secret_expires: \"2028-11-26\" is a string, not a TOML date; {hint}"
                ),
            ),
            (
                &with_head("client_secret_expires = 2028-11-26T10:00:00Z\n"),
                &format!(
                    "config: {P}:4: entra.client_secret_expires: 2028-11-26T10:00:00Z is not a plain date (it has a time of day); {hint}"
                ),
            ),
            (
                &with_head("client_secret_expires = 2028-11-26T10:00:00\n"),
                &format!(
                    "config: {P}:4: entra.client_secret_expires: 2028-11-26T10:00:00 is not a plain date (it has a time of day); {hint}"
                ),
            ),
            (
                &with_head("client_secret_expires = 10:00:00\n"),
                &format!(
                    "config: {P}:4: entra.client_secret_expires: 10:00:00 is not a plain date (it has a time of day); {hint}"
                ),
            ),
            (
                &with_head("client_secret_expires = 20281126\n"),
                &format!(
                    "config: {P}:4: entra.client_secret_expires: is an integer, not a TOML date; {hint}"
                ),
            ),
            (
                &with_head("client_secret_expires = 2028-02-30\n"),
                "config: /etc/entra-sync/config.toml:4: not valid TOML: invalid date, expected day between 01 and 29; fix the syntax on this line (see https://toml.io)",
            ),
        ]);
    }

    #[test]
    fn sync_rules() {
        let hint = "write a duration like \"30s\", \"5m\", \"1h 30m\" or \"7d\"";
        let config = ok(&with_head(
            "[sync]\ninterval = \"1s\"\nfull_sync_interval = \"1s\"\nenabled = false\n",
        ));
        assert_eq!(config.sync.interval, Duration::from_secs(1));
        assert_eq!(config.sync.full_sync_interval, Duration::from_secs(1));
        assert!(!config.sync.enabled);
        let config = ok(&with_head(
            "[sync]\ninterval = \"1h 30m\"\nfull_sync_interval = \"2weeks\"\n",
        ));
        assert_eq!(config.sync.interval, Duration::from_secs(5400));
        assert_eq!(
            config.sync.full_sync_interval,
            Duration::from_secs(14 * 86400)
        );

        check_errors(&[
            (
                &with_head("[sync]\ninterval = \"0s\"\n"),
                &format!(
                    "config: {P}:5: sync.interval: \"0s\" is shorter than 1s; use at least \"1s\" (the default is \"5m\")"
                ),
            ),
            (
                &with_head("[sync]\ninterval = \"500ms\"\n"),
                &format!(
                    "config: {P}:5: sync.interval: \"500ms\" is shorter than 1s; use at least \"1s\" (the default is \"5m\")"
                ),
            ),
            (
                &with_head("[sync]\ninterval = \"five minutes\"\n"),
                &format!(
                    "config: {P}:5: sync.interval: \"five minutes\" is not a duration (expected number at 0); {hint}"
                ),
            ),
            (
                &with_head("[sync]\ninterval = \"5 parsecs\"\n"),
                &format!(
                    "config: {P}:5: sync.interval: \"5 parsecs\" is not a duration (unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)); {hint}"
                ),
            ),
            (
                &with_head("[sync]\nfull_sync_interval = \"\"\n"),
                &format!(
                    "config: {P}:5: sync.full_sync_interval: \"\" is not a duration (value was empty); {hint}"
                ),
            ),
            (
                &with_head("[sync]\ninterval = \"1h\"\nfull_sync_interval = \"30m\"\n"),
                &format!(
                    "config: {P}:6: sync.full_sync_interval: \"30m\" is shorter than sync.interval (1h); make it at least as long as interval"
                ),
            ),
            (
                &with_head("[sync]\ninterval = \"8d\"\n"),
                &format!(
                    "config: {P}:5: sync.interval: \"8d\" is longer than full_sync_interval (default \"7d\"); shorten interval or set full_sync_interval to at least that"
                ),
            ),
            (
                &with_head("[sync]\ndatabase = \"\"\n"),
                &format!(
                    "config: {P}:5: sync.database: is empty; give the SQLite file's path, or remove the key to use the default \"/var/lib/entra-sync/entra-sync.db\""
                ),
            ),
            (
                &with_head("[sync]\ndatabase = \"/var/lib/entra-sync/\"\n"),
                &format!(
                    "config: {P}:5: sync.database: \"/var/lib/entra-sync/\" is a directory; give a file path such as \"/var/lib/entra-sync/entra-sync.db\""
                ),
            ),
        ]);
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let config = ok(&with_head("[sync]\ndatabase = \"data/mirror.db\"\n"));
        assert_eq!(
            config.sync.database,
            PathBuf::from("/etc/entra-sync/data/mirror.db")
        );
        let config = ok(&with_head("[sync]\ndatabase = \"/srv/mirror.db\"\n"));
        assert_eq!(config.sync.database, PathBuf::from("/srv/mirror.db"));

        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
        let path = dir.path().join("config.toml");
        let text = with_head("client_secret_file = \"secret\"\n");
        let config = Config::parse(&text, &path, &Env::default()).unwrap();
        assert_eq!(
            config.entra.secret_source,
            SecretSource::File(dir.path().join("secret"))
        );
        assert_eq!(config.entra.secret.expose(), SECRET);
    }

    #[test]
    fn mapping_rules() {
        let config = ok(&with_head(
            "[mapping]\nteam = \"Staff\"\ngroups = [\"Engineering\", \"6f1b8c3e-0000-4000-8000-000000000001\"]\nnested = false\ninclude_disabled = true\n",
        ));
        assert_eq!(
            config.mapping,
            Mapping {
                team: "Staff".to_owned(),
                groups: vec![
                    "Engineering".to_owned(),
                    "6f1b8c3e-0000-4000-8000-000000000001".to_owned()
                ],
                nested: false,
                include_disabled: true,
            }
        );
        check_errors(&[
            (
                &with_head("[mapping]\nteam = \" \"\n"),
                &format!(
                    "config: {P}:5: mapping.team: is empty; give the local team's name, or remove the key to use the default \"Microsoft Entra ID Users\""
                ),
            ),
            (
                &with_head("[mapping]\ngroups = [\"Engineering\", \"\"]\n"),
                &format!(
                    "config: {P}:5: mapping.groups: contains an empty string; give each group's display name or object ID, or remove the empty entry"
                ),
            ),
            (
                &with_head(
                    "[mapping]\ngroups = [\n  \"Engineering\",\n  \"Sales\",\n  \"ENGINEERING\",\n]\n",
                ),
                &format!(
                    "config: {P}:8: mapping.groups: \"ENGINEERING\" is listed twice (also on line 6 as \"Engineering\"; names and IDs are compared ignoring case); remove one of them"
                ),
            ),
            (
                &with_head(
                    "[mapping]\ngroups = [\"6F1B8C3E-0000-4000-8000-000000000001\", \"6f1b8c3e-0000-4000-8000-000000000001\"]\n",
                ),
                &format!(
                    "config: {P}:5: mapping.groups: \"6f1b8c3e-0000-4000-8000-000000000001\" is listed twice (also on line 5 as \"6F1B8C3E-0000-4000-8000-000000000001\"; names and IDs are compared ignoring case); remove one of them"
                ),
            ),
        ]);
    }

    #[test]
    fn defaults() {
        let config = ok(HEAD);
        assert_eq!(
            config,
            Config {
                path: PathBuf::from(P),
                entra: Entra {
                    tenant_id: TENANT.to_owned(),
                    client_id: CLIENT.to_owned(),
                    secret: Secret::new(SECRET),
                    secret_source: SecretSource::Env,
                    client_secret_expires: None,
                    cloud: Cloud::Global,
                    authority_host: "https://login.microsoftonline.com".to_owned(),
                    graph_endpoint: "https://graph.microsoft.com".to_owned(),
                },
                sync: SyncSettings {
                    enabled: true,
                    interval: Duration::from_secs(300),
                    full_sync_interval: Duration::from_secs(7 * 86400),
                    database: PathBuf::from("/var/lib/entra-sync/entra-sync.db"),
                },
                mapping: Mapping {
                    team: "Microsoft Entra ID Users".to_owned(),
                    groups: vec![],
                    nested: true,
                    include_disabled: false,
                },
                warnings: vec![],
            }
        );
        // Empty tables are the same as absent ones.
        assert_eq!(ok(&with_head("[sync]\n[mapping]\n")), config);
        assert_eq!(config.entra.scope(), "https://graph.microsoft.com/.default");
        assert_eq!(
            config.entra.token_url(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(config.entra.graph_endpoint, "https://graph.microsoft.com");
    }

    // ---- the client secret ----

    fn write_mode(path: &Path, contents: &str, mode: u32) {
        let mut file = fs::File::create(path).unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn each_secret_source() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.toml");

        // Inline (trailing whitespace trimmed), in a 0600 file: no warning.
        let text = with_head(&format!("client_secret = \"{SECRET}  \"\n"));
        write_mode(&config_path, &text, 0o600);
        let config = Config::parse(&text, &config_path, &Env::default()).unwrap();
        assert_eq!(config.entra.secret.expose(), SECRET);
        assert_eq!(config.entra.secret_source, SecretSource::Inline);
        assert_eq!(
            config.entra.secret_source.to_string(),
            "client_secret in the config file"
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);

        // File, with a trailing newline.
        let secret_path = dir.path().join("client-secret");
        write_mode(&secret_path, &format!("{SECRET}\r\n\n"), 0o600);
        let text = with_head(&format!(
            "client_secret_file = {:?}\n",
            secret_path.display().to_string()
        ));
        let config = Config::parse(&text, &config_path, &Env::default()).unwrap();
        assert_eq!(config.entra.secret.expose(), SECRET);
        assert_eq!(
            config.entra.secret_source,
            SecretSource::File(secret_path.clone())
        );
        assert_eq!(
            config.entra.secret_source.to_string(),
            format!("client_secret_file {}", secret_path.display())
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);

        // Environment variable (trimmed); an empty one does not count.
        let env = Env {
            secret: Some(format!("{SECRET}\n")),
            credentials_directory: None,
        };
        let config = Config::parse(HEAD, &config_path, &env).unwrap();
        assert_eq!(config.entra.secret.expose(), SECRET);
        assert_eq!(config.entra.secret_source, SecretSource::Env);
        assert_eq!(
            config.entra.secret_source.to_string(),
            "environment variable ENTRA_SYNC_CLIENT_SECRET"
        );

        // systemd credential.
        let creds = tempfile::tempdir().unwrap();
        write_mode(
            &creds.path().join("client-secret"),
            &format!("{SECRET}\n"),
            0o400,
        );
        let env = Env {
            secret: Some(" \n".to_owned()),
            credentials_directory: Some(creds.path().to_path_buf()),
        };
        let config = Config::parse(HEAD, &config_path, &env).unwrap();
        assert_eq!(config.entra.secret.expose(), SECRET);
        let credential = creds.path().join("client-secret");
        assert_eq!(
            config.entra.secret_source,
            SecretSource::Credential(credential.clone())
        );
        assert_eq!(
            config.entra.secret_source.to_string(),
            format!(
                "systemd credential $CREDENTIALS_DIRECTORY/client-secret ({})",
                credential.display()
            )
        );

        // A credentials directory without our credential does not count.
        let empty = tempfile::tempdir().unwrap();
        let env = Env {
            secret: Some(SECRET.to_owned()),
            credentials_directory: Some(empty.path().to_path_buf()),
        };
        assert_eq!(
            Config::parse(HEAD, &config_path, &env)
                .unwrap()
                .entra
                .secret_source,
            SecretSource::Env
        );
    }

    #[test]
    fn no_or_several_secret_sources() {
        let none = "config: /etc/entra-sync/config.toml:1: entra.client_secret: no client secret is configured; do one of: \
            add client_secret_file = \"/etc/entra-sync/client-secret\" (a file holding only the secret) to [entra], \
            add client_secret = \"...\" to [entra], set the environment variable ENTRA_SYNC_CLIENT_SECRET, \
            or pass a systemd credential (LoadCredential=client-secret:/path/to/secret, read from $CREDENTIALS_DIRECTORY/client-secret)";
        let p = Path::new(P);
        assert_eq!(
            Config::parse(HEAD, p, &Env::default())
                .unwrap_err()
                .to_string(),
            none
        );
        let blank = Env {
            secret: Some(String::new()),
            credentials_directory: None,
        };
        let error = Config::parse(HEAD, p, &blank).unwrap_err();
        assert_eq!(error.to_string(), none);
        assert_eq!(error.kind, ErrorKind::Secret);

        // Inline and environment: points at the inline key.
        let text = with_head(&format!("client_secret = \"{SECRET}\"\n"));
        assert_eq!(
            Config::parse(&text, p, &env_secret())
                .unwrap_err()
                .to_string(),
            "config: /etc/entra-sync/config.toml:4: entra.client_secret: the client secret is given 2 ways (client_secret in the config file, \
             environment variable ENTRA_SYNC_CLIENT_SECRET); keep exactly one of them and remove the others"
        );
        // Both keys in the file.
        let text = with_head(&format!(
            "client_secret_file = \"/etc/entra-sync/client-secret\"\nclient_secret = \"{SECRET}\"\n"
        ));
        assert_eq!(
            Config::parse(&text, p, &Env::default())
                .unwrap_err()
                .to_string(),
            "config: /etc/entra-sync/config.toml:5: entra.client_secret: the client secret is given 2 ways (client_secret in the config file, \
             client_secret_file /etc/entra-sync/client-secret); keep exactly one of them and remove the others"
        );
        // Environment and credential: nothing in the file to point at.
        let creds = tempfile::tempdir().unwrap();
        write_mode(&creds.path().join("client-secret"), SECRET, 0o400);
        let env = Env {
            secret: Some(SECRET.to_owned()),
            credentials_directory: Some(creds.path().to_path_buf()),
        };
        assert_eq!(
            Config::parse(HEAD, p, &env).unwrap_err().to_string(),
            format!(
                "config: /etc/entra-sync/config.toml: the client secret is given 2 ways (environment variable ENTRA_SYNC_CLIENT_SECRET, \
                 systemd credential $CREDENTIALS_DIRECTORY/client-secret ({})); keep exactly one of them and remove the others",
                creds.path().join("client-secret").display()
            )
        );
        // All four.
        let text = with_head(&format!(
            "client_secret = \"{SECRET}\"\nclient_secret_file = \"/nonexistent\"\n"
        ));
        let message = Config::parse(&text, p, &env).unwrap_err().to_string();
        assert!(
            message.contains("the client secret is given 4 ways"),
            "{message}"
        );
    }

    #[test]
    fn secret_file_problems() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let parse_file = |name: &str| {
            let text = with_head(&format!("client_secret_file = {name:?}\n"));
            Config::parse(&text, &dir.path().join("config.toml"), &Env::default())
        };
        let cfg = format!("{d}/config.toml");

        assert_eq!(
            parse_file("missing").unwrap_err().to_string(),
            format!(
                "config: {cfg}:4: entra.client_secret_file: {d}/missing does not exist; create it holding only the client secret's Value (chmod 600), or correct the path"
            )
        );
        write_mode(&dir.path().join("empty"), " \n\n", 0o600);
        assert_eq!(
            parse_file("empty").unwrap_err().to_string(),
            format!(
                "config: {cfg}:4: entra.client_secret_file: {d}/empty is empty; put the client secret's Value in it (Certificates & secrets in the app registration; the Value, not the Secret ID)"
            )
        );
        write_mode(
            &dir.path().join("two-lines"),
            &format!("{SECRET}\nsecond\n"),
            0o600,
        );
        let error = parse_file("two-lines").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "config: {cfg}:4: entra.client_secret_file: {d}/two-lines has more than one line; it must hold only the client secret's Value"
            )
        );
        assert!(!error.to_string().contains(SECRET));
        fs::create_dir(dir.path().join("a-dir")).unwrap();
        let message = parse_file("a-dir").unwrap_err().to_string();
        assert!(
            message.starts_with(&format!(
                "config: {cfg}:4: entra.client_secret_file: cannot read {d}/a-dir: "
            )),
            "{message}"
        );
        fs::write(dir.path().join("binary"), [0xff, 0xfe, 0x00]).unwrap();
        assert_eq!(
            parse_file("binary").unwrap_err().to_string(),
            format!(
                "config: {cfg}:4: entra.client_secret_file: {d}/binary is not UTF-8 text; it must hold only the client secret's Value"
            )
        );
        assert_eq!(
            parse_file("").unwrap_err().to_string(),
            format!(
                "config: {cfg}:4: entra.client_secret_file: is empty; give the path of a file holding only the client secret, e.g. \"/etc/entra-sync/client-secret\""
            )
        );
        // The secret pasted where the path belongs is not echoed.
        let error = parse_file(SECRET).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "config: {cfg}:4: entra.client_secret_file: the file (its name is not shown because it looks like a secret; client_secret_file takes a path) does not exist; create it holding only the client secret's Value (chmod 600), or correct the path"
            )
        );
        // A credential that is present but empty.
        let creds = tempfile::tempdir().unwrap();
        write_mode(&creds.path().join("client-secret"), "\n", 0o400);
        let env = Env {
            secret: None,
            credentials_directory: Some(creds.path().to_path_buf()),
        };
        assert_eq!(
            Config::parse(HEAD, Path::new(P), &env)
                .unwrap_err()
                .to_string(),
            format!(
                "config: {P}: systemd credential {}/client-secret is empty; put the client secret's Value in it (Certificates & secrets in the app registration; the Value, not the Secret ID)",
                creds.path().display()
            )
        );
        // Inline problems.
        let inline = |value: &str| {
            Config::parse(
                &with_head(&format!("client_secret = {value:?}\n")),
                Path::new(P),
                &Env::default(),
            )
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            inline(""),
            format!(
                "config: {P}:4: entra.client_secret: is empty; put the client secret's Value here, or remove the key and use client_secret_file"
            )
        );
        assert_eq!(
            inline("/etc/entra-sync/client-secret"),
            format!(
                "config: {P}:4: entra.client_secret: \"/etc/entra-sync/client-secret\" looks like a file path; to read the secret from that file write client_secret_file = \"/etc/entra-sync/client-secret\" instead"
            )
        );
    }

    #[test]
    fn permission_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.toml");
        let text = with_head(&format!("client_secret = \"{SECRET}\"\n"));
        for mode in [0o640, 0o644, 0o604] {
            write_mode(&config_path, &text, mode);
            let config = Config::parse(&text, &config_path, &Env::default()).unwrap();
            let p = config_path.display();
            assert_eq!(
                config.warnings,
                vec![format!(
                    "{p} contains client_secret and is readable by other users (mode {mode:04o}); run: chmod 600 {p} \
                     (or move the secret to client_secret_file or a systemd credential)"
                )]
            );
            assert!(config.warnings[0].contains(&format!("chmod 600 {p}")));
        }
        // Group or world readable config without an inline secret: fine.
        write_mode(&config_path, HEAD, 0o644);
        assert!(
            Config::parse(HEAD, &config_path, &env_secret())
                .unwrap()
                .warnings
                .is_empty()
        );

        // Secret file accessible by others: warning; by the group only: fine.
        let secret_path = dir.path().join("client-secret");
        let text = with_head("client_secret_file = \"client-secret\"\n");
        write_mode(&secret_path, SECRET, 0o644);
        let config = Config::parse(&text, &config_path, &Env::default()).unwrap();
        let s = secret_path.display();
        assert_eq!(
            config.warnings,
            vec![format!(
                "client_secret_file {s} is accessible by other users (mode 0644); run: chmod 600 {s}"
            )]
        );
        write_mode(&secret_path, SECRET, 0o640);
        assert!(
            Config::parse(&text, &config_path, &Env::default())
                .unwrap()
                .warnings
                .is_empty()
        );

        // A GUID in place of the secret value.
        let env = Env {
            secret: Some("6f1b8c3e-0000-4000-8000-000000000001".to_owned()),
            credentials_directory: None,
        };
        assert_eq!(
            Config::parse(HEAD, &config_path, &env).unwrap().warnings,
            vec!["the client secret from environment variable ENTRA_SYNC_CLIENT_SECRET looks like a GUID, which is the Secret ID; \
                  entra-sync needs the secret's Value (shown once, when the secret is created)".to_owned()]
        );
    }

    #[test]
    fn secret_never_in_error_or_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        let secret_path = dir.path().join("client-secret");
        write_mode(&secret_path, &format!("{SECRET}\n"), 0o600);
        let inline = format!("client_secret = \"{SECRET}\"\n");
        let env_only = env_secret();
        let documents = [
            // several sources
            (with_head(&inline), env_only.clone()),
            // a bad value next to an inline secret
            (
                format!("[entra]\n{inline}tenant_id = \"common\"\nclient_id = \"x\"\n"),
                Env::default(),
            ),
            // the secret where a path belongs, and where other values belong
            (
                with_head(&format!("client_secret_file = \"{SECRET}\"\n")),
                Env::default(),
            ),
            (
                with_head(&format!("cloud = \"{SECRET}\"\n")),
                env_only.clone(),
            ),
            (
                with_head(&format!("graph_endpoint = \"{SECRET}\"\n")),
                env_only.clone(),
            ),
            (
                format!("[entra]\ntenant_id = \"{SECRET}\"\n"),
                env_only.clone(),
            ),
            (
                with_head(&format!("[sync]\nenabled = \"{SECRET}\"\n")),
                env_only.clone(),
            ),
            (
                with_head(&format!("[sync]\ninterval = \"{SECRET}\"\n")),
                env_only.clone(),
            ),
            (
                with_head(&format!(
                    "[mapping]\ngroups = [\"{SECRET}\", \"{SECRET}\"]\n"
                )),
                env_only.clone(),
            ),
            // syntax errors on the secret's line
            (
                with_head(&format!("client_secret = \"{SECRET}\n")),
                Env::default(),
            ),
            (
                with_head(&format!("client_secret = {SECRET}\n")),
                Env::default(),
            ),
            (with_head(&format!("{inline}{inline}")), Env::default()),
            // a secret file plus the environment
            (
                with_head(&format!(
                    "client_secret_file = {:?}\n",
                    secret_path.display().to_string()
                )),
                env_only.clone(),
            ),
        ];
        for (text, env) in &documents {
            let error = Config::parse(text, &dir.path().join("config.toml"), env).unwrap_err();
            let shown = error.to_string();
            let debug = format!("{error:?}");
            assert!(
                !shown.contains(SECRET) && !debug.contains(SECRET),
                "leak for {text:?}: {shown}"
            );
            assert!(
                !shown.contains(&SECRET[..20]),
                "partial leak for {text:?}: {shown}"
            );
        }
        // Debug and Display of everything that holds the secret.
        let config = Config::parse(
            &with_head(&format!(
                "client_secret_file = {:?}\n",
                secret_path.display().to_string()
            )),
            &dir.path().join("config.toml"),
            &Env::default(),
        )
        .unwrap();
        assert_eq!(config.entra.secret.expose(), SECRET);
        for shown in [
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{:?}", config.entra),
            format!("{}", config.entra.secret),
            format!("{:?}", env_secret()),
        ] {
            assert!(!shown.contains(SECRET), "{shown}");
        }
        assert_eq!(config.entra.secret.to_string(), "[redacted]");
        assert_eq!(format!("{:?}", config.entra.secret), "[redacted]");
        assert_eq!(
            format!("{:?}", env_secret()),
            "Env { secret: Some(\"[redacted]\"), credentials_directory: None }"
        );
        // A reload can still tell that the secret changed.
        let mut other = config.clone();
        other.entra.secret = Secret::new("another");
        assert_ne!(config, other);
    }

    // ---- the example file ----

    const EXAMPLE: &str = include_str!("../config.example.toml");

    /// The example with its client_secret_file pointed at `secret_path`.
    fn example_with_secret(secret_path: &Path) -> String {
        // The example documents the file as an option (the systemd credential is the default
        // way); the test takes that option.
        let line = "#          client_secret_file = \"/etc/entra-sync/client-secret\"";
        assert_eq!(
            EXAMPLE.matches(line).count(),
            1,
            "the example must have exactly one {line}"
        );
        EXAMPLE.replace(
            line,
            &format!(
                "client_secret_file = {:?}",
                secret_path.display().to_string()
            ),
        )
    }

    /// Uncomments every `# key = value` line whose key belongs to the table it is in.
    fn uncomment_defaults(text: &str) -> (String, usize) {
        let mut table = "";
        let mut count = 0;
        let mut out = String::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                table = name;
            }
            let candidate = line
                .strip_prefix("# ")
                .and_then(|rest| rest.split_once(" = "))
                .filter(|(key, _)| {
                    table_keys(table).is_some_and(|keys| keys.iter().any(|(k, _)| k == key))
                });
            match candidate {
                Some(_) => {
                    out.push_str(&line[2..]);
                    count += 1;
                }
                None => out.push_str(line),
            }
            out.push('\n');
        }
        (out, count)
    }

    #[test]
    fn example_file_parses_to_the_documented_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let secret_path = dir.path().join("client-secret");
        write_mode(&secret_path, &format!("{SECRET}\n"), 0o600);
        let config_path = dir.path().join("config.toml");
        let text = example_with_secret(&secret_path);
        let config = Config::parse(&text, &config_path, &Env::default()).unwrap();

        let expected = Config {
            path: config_path.clone(),
            entra: Entra {
                tenant_id: TENANT.to_owned(),
                client_id: CLIENT.to_owned(),
                secret: Secret::new(SECRET),
                secret_source: SecretSource::File(secret_path.clone()),
                client_secret_expires: None,
                cloud: Cloud::Global,
                authority_host: Cloud::Global.authority_host().to_owned(),
                graph_endpoint: Cloud::Global.graph_endpoint().to_owned(),
            },
            sync: SyncSettings {
                enabled: true,
                interval: DEFAULT_INTERVAL,
                full_sync_interval: DEFAULT_FULL_SYNC_INTERVAL,
                database: PathBuf::from(DEFAULT_DATABASE),
            },
            mapping: Mapping {
                team: DEFAULT_TEAM.to_owned(),
                groups: vec![],
                nested: true,
                include_disabled: false,
            },
            warnings: vec![],
        };
        assert_eq!(config, expected);

        // The commented-out keys show the defaults: uncommenting all of them changes nothing.
        let (uncommented, count) = uncomment_defaults(&text);
        assert_eq!(
            count, 11,
            "every optional key with a default is shown:\n{uncommented}"
        );
        let config = Config::parse(&uncommented, &config_path, &Env::default()).unwrap();
        assert_eq!(config, expected);

        // Every key of the schema is documented in the example.
        for (table, keys) in SCHEMA {
            assert!(
                EXAMPLE.contains(&format!("\n[{table}]\n")),
                "[{table}] missing"
            );
            for (key, _) in *keys {
                assert!(
                    EXAMPLE.contains(&format!("{key} = ")),
                    "{table}.{key} is not documented"
                );
            }
        }
    }

    // ---- loading, paths, reloads ----

    #[test]
    fn load_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("config.toml");
        let m = missing.display();
        let error = Config::load(&missing).unwrap_err();
        assert_eq!(error.kind, ErrorKind::NotFound);
        assert_eq!(
            error.to_string(),
            format!(
                "config: {m}: file not found; copy config.example.toml to it (install -m 644 config.example.toml {m}) and fill in [entra], \
                 or point --config or $ENTRA_SYNC_CONFIG at your file"
            )
        );
        let d = dir.path().display();
        let error = Config::load(dir.path()).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Unreadable);
        assert_eq!(
            error.to_string(),
            format!("config: {d}: is a directory; give the path of the TOML file itself")
        );

        // Tests run as root here, so permission denied is checked on the mapping itself.
        let error = read_error(
            Path::new(P),
            &io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(
            error.to_string(),
            "config: /etc/entra-sync/config.toml: permission denied reading the file; make it readable by the user entra-sync runs as (check with ls -l /etc/entra-sync/config.toml)"
        );

        fs::write(&missing, b"[entra]\n# caf\xe9\n").unwrap();
        assert_eq!(
            Config::load(&missing).unwrap_err().to_string(),
            format!("config: {m}:2: the file is not UTF-8 text; save it as UTF-8")
        );

        // A syntax error through load: same shape.
        fs::write(&missing, "[entra]\ntenant_id = \n").unwrap();
        assert_eq!(
            Config::load(&missing).unwrap_err().to_string(),
            format!(
                "config: {m}:2: not valid TOML: string values must be quoted, expected literal string; fix the syntax on this line (see https://toml.io)"
            )
        );
    }

    #[test]
    fn resolve_path_precedence() {
        let flag = Some(PathBuf::from("/tmp/flag.toml"));
        let env = Some(OsString::from("/tmp/env.toml"));
        assert_eq!(
            Config::resolve_path_from(flag.clone(), env.clone()),
            PathBuf::from("/tmp/flag.toml")
        );
        assert_eq!(
            Config::resolve_path_from(None, env.clone()),
            PathBuf::from("/tmp/env.toml")
        );
        assert_eq!(
            Config::resolve_path_from(None, None),
            PathBuf::from(DEFAULT_PATH)
        );
        assert_eq!(
            Config::resolve_path_from(None, Some(OsString::new())),
            PathBuf::from(DEFAULT_PATH)
        );
        assert_eq!(
            Config::resolve_path_from(Some(PathBuf::new()), env),
            PathBuf::from("/tmp/env.toml")
        );
        assert_eq!(Config::resolve_path(flag), PathBuf::from("/tmp/flag.toml"));
    }

    #[test]
    fn needs_restart_only_for_the_database() {
        let old = ok(HEAD);
        let mut new = ok(&with_head(
            "[sync]\ninterval = \"1m\"\n[mapping]\ngroups = [\"Sales\"]\n",
        ));
        assert!(old.needs_restart(&new).is_empty());
        new.sync.database = PathBuf::from("/srv/other.db");
        assert_eq!(old.needs_restart(&new), vec!["sync.database"]);
    }

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

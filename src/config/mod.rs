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

mod build;
mod certificate;
mod credential;
mod error;
mod files;
mod schema;
mod secret;
#[cfg(test)]
mod test_support;
mod values;

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;

pub use certificate::{Certificate, PrivateKey};
pub use credential::{
    ARC_TOKENS_DIR, CERTIFICATE_CREDENTIAL_NAME, Credential, FederatedToken, IMDS_TOKEN_URL,
    ManagedIdentity, ManagedIdentityKind, read_federated_token,
};
pub use error::{ConfigError, ErrorKind};
use error::{Ctx, line_of, read_error};
use schema::{RawConfig, check_shape};
pub use secret::{Secret, SecretSource};
#[cfg(test)]
pub(crate) use test_support::test_certificate;
pub use values::is_guid;

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
    /// The app registration's Application (client) ID; `None` with a managed identity, which
    /// signs in as itself.
    pub client_id: Option<String>,
    /// Exactly one credential (issue 9).
    pub credential: Credential,
    /// Only with a client secret.
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

    /// The client secret, when that is the credential.
    pub fn secret(&self) -> Option<&Secret> {
        match &self.credential {
            Credential::Secret { secret, .. } => Some(secret),
            _ => None,
        }
    }

    /// Where the client secret came from, when that is the credential.
    pub fn secret_source(&self) -> Option<&SecretSource> {
        match &self.credential {
            Credential::Secret { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The managed-identity `resource`: the cloud's Graph origin with a trailing slash
    /// (graph-protocol.md 1.4: `resource`, not `scope`, no `/.default`).
    pub fn resource(&self) -> String {
        format!("{}/", self.cloud.graph_endpoint())
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

/// The `[sync]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    pub enabled: bool,
    pub interval: Duration,
    pub full_sync_interval: Duration,
    /// `sync.max_deletions`: the deletion guard's limit per kind and pass.
    pub max_deletions: MaxDeletions,
    /// Absolute unless the configuration path itself could not be made absolute.
    pub database: PathBuf,
    /// Where the daemon writes its Prometheus metrics (textfile collector format), if set.
    pub metrics_file: Option<PathBuf>,
    /// `sync.full_pass`: how a full pass reads the tenant.
    pub full_pass: FullPass,
    /// `sync.max_concurrency`: requests in flight during a snapshot, within
    /// [`MAX_CONCURRENCY`].
    pub max_concurrency: usize,
}

/// `sync.full_pass`: how a full pass reads the tenant (graph-protocol.md 3.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullPass {
    /// `"snapshot"`: a "latest" delta link first, then the non-delta lists read in parallel,
    /// then delta rounds from that link to catch up.
    #[default]
    Snapshot,
    /// `"delta"`: one delta round per resource from the start, one page after another.
    Delta,
}

impl FullPass {
    pub const ALL: [FullPass; 2] = [FullPass::Snapshot, FullPass::Delta];

    /// The TOML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FullPass::Snapshot => "snapshot",
            FullPass::Delta => "delta",
        }
    }

    /// Parses the TOML spelling, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<FullPass> {
        FullPass::ALL
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for FullPass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default of `sync.max_concurrency`.
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;
/// Accepted values of `sync.max_concurrency` (Microsoft's sample uses 16 connections).
pub const MAX_CONCURRENCY: std::ops::RangeInclusive<usize> = 1..=16;

/// `sync.max_deletions`: how many users marked deleted, groups marked deleted, or members
/// removed from the team one pass may apply, each kind counted on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxDeletions {
    /// `0`: no limit.
    Off,
    Count(u64),
    /// `"10%"`: a share of the live objects of that kind (of the team's size for members).
    Percent(u32),
}

/// Default of `sync.max_deletions` (Entra Connect's "prevent accidental deletes" default).
pub const DEFAULT_MAX_DELETIONS: MaxDeletions = MaxDeletions::Count(500);

impl MaxDeletions {
    /// The limit for a kind of which `live` are stored; `None` means no limit.
    pub fn limit(self, live: u64) -> Option<u64> {
        match self {
            MaxDeletions::Off => None,
            MaxDeletions::Count(n) => Some(n),
            MaxDeletions::Percent(p) => Some(live.saturating_mul(u64::from(p)) / 100),
        }
    }
}

impl fmt::Display for MaxDeletions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxDeletions::Off => f.write_str("0 (off)"),
            MaxDeletions::Count(n) => write!(f, "{n}"),
            MaxDeletions::Percent(p) => write!(f, "\"{p}%\""),
        }
    }
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
    /// `$AZURE_FEDERATED_TOKEN_FILE` (the AKS workload identity convention).
    pub federated_token_file: Option<PathBuf>,
    /// `$AZURE_CLIENT_ID`, used with a federated token when `client_id` is left out.
    pub azure_client_id: Option<String>,
    /// `$AZURE_TENANT_ID`, used with a federated token when `tenant_id` is left out.
    pub azure_tenant_id: Option<String>,
    /// `$IDENTITY_ENDPOINT` and `$IMDS_ENDPOINT`, set by the Azure Arc agent.
    pub identity_endpoint: Option<String>,
    pub imds_endpoint: Option<String>,
    /// The Arc agent's `himds` is installed (its default endpoint applies).
    pub himds_installed: bool,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            // A non-UTF-8 value is kept (lossily) so that it still counts as a source; Entra
            // secrets are ASCII, so the token endpoint will reject it with a clear error.
            secret: handed_over_secret()
                .or_else(|| std::env::var_os(SECRET_ENV).map(|v| v.to_string_lossy().into_owned())),
            credentials_directory: std::env::var_os(CREDENTIALS_DIRECTORY_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            federated_token_file: std::env::var_os(credential::FEDERATED_TOKEN_FILE_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            azure_client_id: non_empty_var(credential::AZURE_CLIENT_ID_ENV),
            azure_tenant_id: non_empty_var(credential::AZURE_TENANT_ID_ENV),
            identity_endpoint: non_empty_var(credential::IDENTITY_ENDPOINT_ENV),
            imds_endpoint: non_empty_var(credential::IMDS_ENDPOINT_ENV),
            himds_installed: Path::new(credential::HIMDS_PATH).exists(),
        }
    }
}

/// The value of `$ENTRA_SYNC_CLIENT_SECRET` that `hardening::at_start` took out of the
/// process environment at start; it counts as that variable from then on.
static HANDED_OVER_SECRET: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records the secret taken out of the environment (once; later calls are ignored).
pub fn hand_over_secret(secret: String) {
    let _ = HANDED_OVER_SECRET.set(secret);
}

fn handed_over_secret() -> Option<String> {
    HANDED_OVER_SECRET.get().cloned()
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("credentials_directory", &self.credentials_directory)
            .field("federated_token_file", &self.federated_token_file)
            .field("azure_client_id", &self.azure_client_id)
            .field("azure_tenant_id", &self.azure_tenant_id)
            .field("identity_endpoint", &self.identity_endpoint)
            .field("imds_endpoint", &self.imds_endpoint)
            .field("himds_installed", &self.himds_installed)
            .finish()
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

    /// When the credential in use expires: `entra.client_secret_expires` for a secret, the
    /// certificate's `notAfter` (UTC date) for a certificate, `None` otherwise or unknown.
    pub fn credential_expires(&self) -> Option<time::Date> {
        match &self.entra.credential {
            Credential::Certificate(cert) => Some(cert.not_after.date()),
            _ => self.entra.client_secret_expires,
        }
    }

    /// Days from `today` until [`Config::credential_expires`] (negative once it has passed),
    /// or `None` if the expiry is not known.
    pub fn secret_days_left(&self, today: time::Date) -> Option<i64> {
        self.credential_expires()
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

/// Loads the configuration and logs what the admin should fix but need not stop for: what
/// every command and every reload of the daemon calls.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::load(path)?;
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    Ok(config)
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
    // Before anything in it is believed: the file says where the credential goes.
    files::check_trusted(path, "the config file")
        .map_err(|m| ctx.error(ErrorKind::Unsafe, None, None, m))?;
    let doc = DeTable::parse(text).map_err(|e| ctx.syntax_error(&e))?;
    check_shape(&ctx, doc.get_ref())?;
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(doc.clone()))
        .map_err(|e| ctx.type_error(&e, doc.get_ref()))?;
    build::build(&ctx, raw, env)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is fine in tests only
mod tests {
    use super::*;
    use crate::config::schema::{SCHEMA, table_keys};
    use crate::config::test_support::*;
    use std::io;
    use std::os::unix::fs::PermissionsExt;

    // ---- the example file ----

    const EXAMPLE: &str = include_str!("../../config.example.toml");

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
                client_id: Some(CLIENT.to_owned()),
                credential: Credential::Secret {
                    secret: Secret::new(SECRET),
                    source: SecretSource::File(secret_path.clone()),
                },
                client_secret_expires: None,
                cloud: Cloud::Global,
                authority_host: Cloud::Global.authority_host().to_owned(),
                graph_endpoint: Cloud::Global.graph_endpoint().to_owned(),
            },
            sync: SyncSettings {
                enabled: true,
                interval: DEFAULT_INTERVAL,
                full_sync_interval: DEFAULT_FULL_SYNC_INTERVAL,
                max_deletions: DEFAULT_MAX_DELETIONS,
                database: PathBuf::from(DEFAULT_DATABASE),
                metrics_file: None,
                full_pass: FullPass::Snapshot,
                max_concurrency: DEFAULT_MAX_CONCURRENCY,
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
            count, 14,
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

    proptest::proptest! {
        /// Issue 7 item 6: random and mutated documents (the example file with bytes replaced,
        /// inserted or cut, and arbitrary text) give a Config or a ConfigError, never a panic.
        #[test]
        fn the_config_parser_never_panics(
            edits in proptest::collection::vec((0usize..4000, 0u8..3, proptest::char::any()), 0..8),
            cut in 0usize..4000,
            junk in "\\PC{0,200}",
        ) {
            let mut text: Vec<char> = EXAMPLE.chars().collect();
            for (at, op, c) in edits {
                let at = at % (text.len() + 1);
                match op {
                    0 if at < text.len() => text[at] = c,
                    1 => text.insert(at, c),
                    _ if at < text.len() => {
                        text.remove(at);
                    }
                    _ => {}
                }
            }
            let text: String = text.into_iter().collect();
            let env = env_secret();
            let _ = Config::parse(&text, Path::new(P), &env);
            let cut: String = text.chars().take(cut).collect();
            let _ = Config::parse(&cut, Path::new(P), &env);
            let _ = Config::parse(&junk, Path::new(P), &env);
            let _ = Config::parse(&format!("{HEAD}{junk}"), Path::new(P), &env);
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

    /// Issue 7 item 2: a config or secret file another local user could change is refused
    /// on load (and so on every reload, which loads the same way).
    #[test]
    fn files_others_can_change_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let secret = dir.path().join("client-secret");
        write_mode(&secret, SECRET, 0o600);
        let text = with_head("client_secret_file = \"client-secret\"\n");
        write_mode(&config, &text, 0o600);
        assert!(Config::load(&config).is_ok());

        write_mode(&config, &text, 0o666);
        let error = Config::load(&config).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Unsafe);
        let c = config.display();
        assert!(
            error.to_string().starts_with(&format!(
                "config: {c}: the config file {c} is writable by group and others (mode 0666, owner "
            )),
            "{error}"
        );
        assert!(error.to_string().ends_with(&format!("run: chmod go-w {c}")));

        write_mode(&config, &text, 0o600);
        write_mode(&secret, SECRET, 0o620);
        let error = Config::load(&config).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Unsafe);
        assert_eq!(error.key.as_deref(), Some("entra.client_secret_file"));
        assert!(
            error.message.starts_with(&format!(
                "client_secret_file {} is writable by its group (mode 0620",
                secret.display()
            )),
            "{error}"
        );
        assert!(!error.to_string().contains(SECRET));

        write_mode(&secret, SECRET, 0o600);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let error = Config::load(&config).unwrap_err();
        assert!(
            error.message.starts_with(&format!(
                "the directory {} holding the config file {c} is writable by group and others (mode 0777",
                dir.path().display()
            )),
            "{error}"
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
}

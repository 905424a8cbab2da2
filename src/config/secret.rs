//! The credential sources: where the client secret comes from, and reading it.

use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{ConfigError, Ctx, ErrorKind};
use super::files;
use super::schema::RawEntra;
use super::values::is_guid;
use super::{CREDENTIAL_NAME, Env, SECRET_ENV};

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

// ---------------------------------------------------------------------------------------------
// The client secret
// ---------------------------------------------------------------------------------------------

/// One way the secret is given, before it is read.
pub(super) enum Given<'a> {
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
    pub(super) fn describe(&self) -> String {
        match self {
            Given::File { shown: None, .. } => "client_secret_file".to_owned(),
            other => other.source().to_string(),
        }
    }

    /// Dotted key and span, for the sources in the file.
    pub(super) fn at(&self) -> Option<(&'static str, Range<usize>)> {
        match self {
            Given::Inline(value) => Some(("entra.client_secret", value.span())),
            Given::File { span, .. } => Some(("entra.client_secret_file", span.clone())),
            Given::Env(_) | Given::Credential(_) => None,
        }
    }
}

/// A value that is probably a secret pasted where a path belongs: it is then never echoed.
pub(super) fn looks_like_secret(value: &str) -> bool {
    !value.contains('/') && value.len() >= 30 && !value.contains(char::is_whitespace)
}

/// Every way the client secret is given (none, one or several), not yet read.
pub(super) fn secret_sources<'a>(
    ctx: &Ctx<'_>,
    entra: &'a RawEntra,
    env: &'a Env,
    base_dir: &Path,
) -> Result<Vec<Given<'a>>, ConfigError> {
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

    Ok(given)
}

/// Reads the one secret source chosen.
pub(super) fn read_secret(
    ctx: &Ctx<'_>,
    given: Given<'_>,
    warnings: &mut Vec<String>,
) -> Result<(Secret, SecretSource), ConfigError> {
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
            files::check_trusted(path, "client_secret_file").map_err(|m| {
                ctx.error(
                    ErrorKind::Unsafe,
                    Some(span.clone()),
                    Some("entra.client_secret_file"),
                    m,
                )
            })?;
            let value = read_secret_file(path, shown.as_deref()).map_err(|m| {
                ctx.error(
                    ErrorKind::Secret,
                    Some(span.clone()),
                    Some("entra.client_secret_file"),
                    m,
                )
            })?;
            if let Some(shown) = shown
                && let Some(warning) =
                    files::readable_warning(path, &format!("client_secret_file {shown}"))
            {
                warnings.push(warning);
            }
            value
        }
        Given::Credential(path) => {
            files::check_trusted(path, "systemd credential")
                .map_err(|m| ctx.error(ErrorKind::Unsafe, None, None, m))?;
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
pub(super) fn read_secret_file(path: &Path, shown: Option<&str>) -> Result<String, String> {
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
    use crate::config::test_support::*;
    use crate::config::*;

    // ---- the client secret ----

    #[test]
    fn each_secret_source() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.toml");

        // Inline (trailing whitespace trimmed), in a 0600 file: no warning.
        let text = with_head(&format!("client_secret = \"{SECRET}  \"\n"));
        write_mode(&config_path, &text, 0o600);
        let config = Config::parse(&text, &config_path, &Env::default()).unwrap();
        assert_eq!(config.entra.secret().cloned().unwrap().expose(), SECRET);
        assert_eq!(
            config.entra.secret_source().cloned().unwrap(),
            SecretSource::Inline
        );
        assert_eq!(
            config.entra.secret_source().cloned().unwrap().to_string(),
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
        assert_eq!(config.entra.secret().cloned().unwrap().expose(), SECRET);
        assert_eq!(
            config.entra.secret_source().cloned().unwrap(),
            SecretSource::File(secret_path.clone())
        );
        assert_eq!(
            config.entra.secret_source().cloned().unwrap().to_string(),
            format!("client_secret_file {}", secret_path.display())
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);

        // Environment variable (trimmed); an empty one does not count.
        let env = Env {
            secret: Some(format!("{SECRET}\n")),
            credentials_directory: None,
            ..Env::default()
        };
        let config = Config::parse(HEAD, &config_path, &env).unwrap();
        assert_eq!(config.entra.secret().cloned().unwrap().expose(), SECRET);
        assert_eq!(
            config.entra.secret_source().cloned().unwrap(),
            SecretSource::Env
        );
        assert_eq!(
            config.entra.secret_source().cloned().unwrap().to_string(),
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
            ..Env::default()
        };
        let config = Config::parse(HEAD, &config_path, &env).unwrap();
        assert_eq!(config.entra.secret().cloned().unwrap().expose(), SECRET);
        let credential = creds.path().join("client-secret");
        assert_eq!(
            config.entra.secret_source().cloned().unwrap(),
            SecretSource::Credential(credential.clone())
        );
        assert_eq!(
            config.entra.secret_source().cloned().unwrap().to_string(),
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
            ..Env::default()
        };
        assert_eq!(
            Config::parse(HEAD, &config_path, &env)
                .unwrap()
                .entra
                .secret_source()
                .cloned()
                .unwrap(),
            SecretSource::Env
        );
    }

    #[test]
    fn no_or_several_secret_sources() {
        // Issue 9 §1: none lists one example of each credential.
        let none = "config: /etc/entra-sync/config.toml:1: entra: no credential is configured; give exactly one in [entra]: \
            a client secret (client_secret_file = \"/etc/entra-sync/client-secret\", client_secret = \"...\", the environment \
            variable ENTRA_SYNC_CLIENT_SECRET, or the systemd credential client-secret), a certificate (client_certificate_file = \
            \"/etc/entra-sync/client.pem\" or the systemd credential client-certificate), a managed identity (managed_identity = true, \
            or managed_identity_client_id = \"<GUID>\" for a user-assigned one), or a federated token (federated_token_file = \
            \"/var/run/secrets/azure/tokens/azure-identity-token\" or the environment variable AZURE_FEDERATED_TOKEN_FILE)";
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
            ..Env::default()
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
            ..Env::default()
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
            ..Env::default()
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
        // Issue 7 item 2: group read counts too (0o077).
        for mode in [0o644, 0o640] {
            write_mode(&secret_path, SECRET, mode);
            let config = Config::parse(&text, &config_path, &Env::default()).unwrap();
            let s = secret_path.display();
            assert_eq!(
                config.warnings,
                vec![format!(
                    "client_secret_file {s} is readable by other users (mode {mode:04o}); run: chmod 600 {s}"
                )]
            );
        }
        write_mode(&secret_path, SECRET, 0o600);
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
            ..Env::default()
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
        assert_eq!(config.entra.secret().cloned().unwrap().expose(), SECRET);
        for shown in [
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{:?}", config.entra),
            format!("{}", config.entra.secret().cloned().unwrap()),
            format!("{:?}", env_secret()),
        ] {
            assert!(!shown.contains(SECRET), "{shown}");
        }
        assert_eq!(
            config.entra.secret().cloned().unwrap().to_string(),
            "[redacted]"
        );
        assert_eq!(
            format!("{:?}", config.entra.secret().cloned().unwrap()),
            "[redacted]"
        );
        assert_eq!(
            format!("{:?}", env_secret()),
            "Env { secret: Some(\"[redacted]\"), credentials_directory: None, federated_token_file: None, azure_client_id: None, azure_tenant_id: None, identity_endpoint: None, imds_endpoint: None, himds_installed: false }"
        );
        // A reload can still tell that the secret changed.
        let mut other = config.clone();
        other.entra.credential = Credential::Secret {
            secret: Secret::new("another"),
            source: SecretSource::Env,
        };
        assert_ne!(config, other);
    }
}

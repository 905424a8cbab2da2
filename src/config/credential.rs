//! The credential entra-sync signs in with: exactly one of a client secret, a certificate, a
//! managed identity (Azure VM or Arc-enabled server) or a federated token file (issue 9 §1).
//! This module finds every credential the file and the environment name, refuses none or
//! several, and reads the chosen one; `auth` turns it into tokens.

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::certificate::{self, Certificate};
use super::error::{ConfigError, Ctx, ErrorKind};
use super::files;
use super::schema::RawEntra;
use super::secret::{self, Given, Secret, SecretSource};
use super::values::{is_guid, parse_endpoint};
use super::{CREDENTIAL_NAME, Env};

/// Name of the systemd credential holding the client certificate and key
/// (`LoadCredential=client-certificate:/etc/entra-sync/client.pem`).
pub const CERTIFICATE_CREDENTIAL_NAME: &str = "client-certificate";
/// The Azure VM Instance Metadata Service's token endpoint (graph-protocol.md 1.4).
pub const IMDS_TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// The Arc agent's endpoint when its `himds` is installed but the variables are not set (1.4a).
pub const ARC_DEFAULT_TOKEN_URL: &str = "http://127.0.0.1:40342/metadata/identity/oauth2/token";
/// Where the Arc agent writes the challenge key files (1.4a step 3).
pub const ARC_TOKENS_DIR: &str = "/var/opt/azcmagent/tokens";
/// The Arc agent's metadata service; its presence means "this is an Arc-enabled server".
pub const HIMDS_PATH: &str = "/opt/azcmagent/bin/himds";

/// How entra-sync signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A client secret (graph-protocol.md 1.1).
    Secret {
        secret: Secret,
        source: SecretSource,
    },
    /// A certificate whose key signs a client assertion (1.3).
    Certificate(Box<Certificate>),
    /// The machine's managed identity (1.4, 1.4a).
    ManagedIdentity(ManagedIdentity),
    /// A token file another identity provider keeps fresh (workload identity federation).
    FederatedToken(FederatedToken),
}

impl Credential {
    /// "client secret", "certificate", "managed identity", "federated token".
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Secret { .. } => "client secret",
            Credential::Certificate(_) => "certificate",
            Credential::ManagedIdentity(_) => "managed identity",
            Credential::FederatedToken(_) => "federated token",
        }
    }

    /// One line saying what it is and where it comes from, without any secret.
    pub fn describe(&self) -> String {
        match self {
            Credential::Secret { source, .. } => format!("client secret from {source}"),
            Credential::Certificate(cert) => {
                let from = if cert.from_systemd_credential {
                    format!(
                        "systemd credential $CREDENTIALS_DIRECTORY/{CERTIFICATE_CREDENTIAL_NAME} ({})",
                        cert.path.display()
                    )
                } else {
                    format!("client_certificate_file {}", cert.path.display())
                };
                let key = cert
                    .key_path
                    .as_ref()
                    .map(|p| format!(", key {}", p.display()))
                    .unwrap_or_default();
                format!(
                    "certificate {} from {from}{key}, SHA-1 thumbprint {}",
                    cert.subject,
                    cert.thumbprint()
                )
            }
            Credential::ManagedIdentity(mi) => mi.describe(),
            Credential::FederatedToken(token) => format!(
                "federated token from {} {}",
                if token.from_env {
                    "$AZURE_FEDERATED_TOKEN_FILE"
                } else {
                    "federated_token_file"
                },
                token.path.display()
            ),
        }
    }

    /// The files whose edits should reload the configuration. The federated token file is
    /// not among them: it rotates by design and is read again for every token.
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            Credential::Secret {
                source: SecretSource::File(path),
                ..
            } => vec![path.clone()],
            Credential::Certificate(cert) if !cert.from_systemd_credential => {
                let mut files = vec![cert.path.clone()];
                files.extend(cert.key_path.clone());
                files
            }
            _ => Vec::new(),
        }
    }

    /// The certificate, if this is one.
    pub fn certificate(&self) -> Option<&Certificate> {
        match self {
            Credential::Certificate(cert) => Some(cert),
            _ => None,
        }
    }
}

/// Which managed-identity service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagedIdentityKind {
    /// An Azure VM's IMDS (1.4), or the endpoint `managed_identity_endpoint` names.
    Vm,
    /// An Azure Arc-enabled server's agent (1.4a): a 401 challenge comes first.
    Arc,
}

/// A managed identity and the endpoint that issues its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedIdentity {
    /// `managed_identity_client_id`: a user-assigned identity; `None` for system-assigned.
    pub client_id: Option<String>,
    pub kind: ManagedIdentityKind,
    /// The token URL, without query.
    pub endpoint: String,
    /// Where an Arc challenge's key file must be.
    pub arc_tokens_dir: PathBuf,
}

impl ManagedIdentity {
    fn describe(&self) -> String {
        let which = match &self.client_id {
            Some(id) => format!("user-assigned managed identity {id}"),
            None => "system-assigned managed identity".to_owned(),
        };
        let service = match self.kind {
            ManagedIdentityKind::Vm => "Azure VM instance metadata service",
            ManagedIdentityKind::Arc => "Azure Arc agent",
        };
        format!("{which} via the {service} at {}", self.endpoint)
    }

    /// The `api-version` the service speaks.
    pub fn api_version(&self) -> &'static str {
        match self.kind {
            ManagedIdentityKind::Vm => "2018-02-01",
            ManagedIdentityKind::Arc => "2019-11-01",
        }
    }
}

/// A federated token file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedToken {
    pub path: PathBuf,
    /// From `$AZURE_FEDERATED_TOKEN_FILE` rather than `federated_token_file`.
    pub from_env: bool,
}

/// Which kinds the document or environment asks for, known before anything is read: the
/// rules for `client_id` and `tenant_id` depend on it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Asked {
    pub managed_identity: bool,
    pub federated: bool,
}

pub(super) fn asked(entra: &RawEntra, env: &Env) -> Asked {
    let managed_identity = entra
        .managed_identity
        .as_ref()
        .is_some_and(|v| *v.get_ref())
        || entra.managed_identity_client_id.is_some();
    let federated = entra.federated_token_file.is_some()
        || (env.federated_token_file.is_some() && !names_any_other(entra, env));
    Asked {
        managed_identity,
        federated,
    }
}

/// Whether the file (or entra-sync's own environment) names a credential other than a
/// federated token. `$AZURE_FEDERATED_TOKEN_FILE` is set by the platform for every program in
/// a pod, not by the admin for entra-sync, so it counts only when nothing else is named.
fn names_any_other(entra: &RawEntra, env: &Env) -> bool {
    entra.client_secret.is_some()
        || entra.client_secret_file.is_some()
        || entra.client_certificate_file.is_some()
        || entra
            .managed_identity
            .as_ref()
            .is_some_and(|v| *v.get_ref())
        || entra.managed_identity_client_id.is_some()
        || env.secret.as_deref().is_some_and(|s| !s.trim().is_empty())
        || env.credentials_directory.as_ref().is_some_and(|d| {
            present(&d.join(CREDENTIAL_NAME)) || present(&d.join(CERTIFICATE_CREDENTIAL_NAME))
        })
}

/// A credential as named, before it is read.
enum Found<'a> {
    Secret(Given<'a>),
    Certificate {
        path: PathBuf,
        span: Option<Range<usize>>,
        from_credential: bool,
    },
    ManagedIdentity {
        key: &'static str,
        span: Range<usize>,
    },
    Federated {
        path: PathBuf,
        span: Option<Range<usize>>,
        from_env: bool,
    },
}

impl Found<'_> {
    fn describe(&self) -> String {
        match self {
            Found::Secret(given) => given.describe(),
            Found::Certificate {
                path,
                from_credential: true,
                ..
            } => format!(
                "systemd credential $CREDENTIALS_DIRECTORY/{CERTIFICATE_CREDENTIAL_NAME} ({})",
                path.display()
            ),
            Found::Certificate { path, .. } => {
                format!("client_certificate_file {}", path.display())
            }
            Found::ManagedIdentity { key, .. } => format!("{key} (a managed identity)"),
            Found::Federated {
                path,
                from_env: true,
                ..
            } => format!("$AZURE_FEDERATED_TOKEN_FILE {}", path.display()),
            Found::Federated { path, .. } => format!("federated_token_file {}", path.display()),
        }
    }

    fn at(&self) -> Option<(&'static str, Range<usize>)> {
        match self {
            Found::Secret(given) => given.at(),
            Found::Certificate {
                span: Some(span), ..
            } => Some(("entra.client_certificate_file", span.clone())),
            Found::ManagedIdentity { key, span } => Some((
                if *key == "managed_identity" {
                    "entra.managed_identity"
                } else {
                    "entra.managed_identity_client_id"
                },
                span.clone(),
            )),
            Found::Federated {
                span: Some(span), ..
            } => Some(("entra.federated_token_file", span.clone())),
            _ => None,
        }
    }
}

/// Present (or present but unreadable, which the read then reports).
fn present(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// One example of each credential, for the "none" and "several" messages.
const EXAMPLES: &str = "a client secret (client_secret_file = \"/etc/entra-sync/client-secret\", \
     client_secret = \"...\", the environment variable ENTRA_SYNC_CLIENT_SECRET, or the systemd \
     credential client-secret), a certificate (client_certificate_file = \"/etc/entra-sync/client.pem\" \
     or the systemd credential client-certificate), a managed identity (managed_identity = true, or \
     managed_identity_client_id = \"<GUID>\" for a user-assigned one), or a federated token \
     (federated_token_file = \"/var/run/secrets/azure/tokens/azure-identity-token\" or the \
     environment variable AZURE_FEDERATED_TOKEN_FILE)";

fn non_empty_path(
    ctx: &Ctx<'_>,
    value: &toml::Spanned<String>,
    key: &str,
    example: &str,
) -> Result<(), ConfigError> {
    if value.get_ref().trim().is_empty() {
        return Err(ctx.invalid(
            value.span(),
            &format!("entra.{key}"),
            format!("is empty; give the file's path, e.g. {key} = \"{example}\""),
        ));
    }
    Ok(())
}

/// Finds exactly one credential and reads it.
pub(super) fn resolve(
    ctx: &Ctx<'_>,
    entra: &RawEntra,
    entra_span: &Range<usize>,
    env: &Env,
    base_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Credential, ConfigError> {
    let mut found: Vec<Found<'_>> = secret::secret_sources(ctx, entra, env, base_dir)?
        .into_iter()
        .map(Found::Secret)
        .collect();
    if let Some(file) = &entra.client_certificate_file {
        non_empty_path(
            ctx,
            file,
            "client_certificate_file",
            "/etc/entra-sync/client.pem",
        )?;
        found.push(Found::Certificate {
            path: base_dir.join(file.get_ref()),
            span: Some(file.span()),
            from_credential: false,
        });
    }
    if let Some(dir) = &env.credentials_directory {
        let path = dir.join(CERTIFICATE_CREDENTIAL_NAME);
        if present(&path) {
            found.push(Found::Certificate {
                path,
                span: None,
                from_credential: true,
            });
        }
    }
    let mi_off = entra.managed_identity.as_ref().filter(|v| !*v.get_ref());
    match (&entra.managed_identity, &entra.managed_identity_client_id) {
        (_, Some(id)) => {
            if let Some(off) = mi_off {
                return Err(ctx.invalid(
                    off.span(),
                    "entra.managed_identity",
                    "is false, but managed_identity_client_id names a user-assigned identity; remove one of the two".to_owned(),
                ));
            }
            found.push(Found::ManagedIdentity {
                key: "managed_identity_client_id",
                span: id.span(),
            });
        }
        (Some(on), None) if *on.get_ref() => found.push(Found::ManagedIdentity {
            key: "managed_identity",
            span: on.span(),
        }),
        _ => {}
    }
    if let Some(file) = &entra.federated_token_file {
        non_empty_path(
            ctx,
            file,
            "federated_token_file",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        )?;
        found.push(Found::Federated {
            path: base_dir.join(file.get_ref()),
            span: Some(file.span()),
            from_env: false,
        });
    } else if let Some(path) = &env.federated_token_file
        && found.is_empty()
    {
        found.push(Found::Federated {
            path: path.clone(),
            span: None,
            from_env: true,
        });
    }

    if found.is_empty() {
        if let Some(key) = &entra.client_certificate_key_file {
            return Err(ctx.invalid(
                key.span(),
                "entra.client_certificate_key_file",
                "is set, but there is no certificate; add client_certificate_file = \"/etc/entra-sync/client.pem\" \
                 (the certificate the key belongs to)"
                    .to_owned(),
            ));
        }
        return Err(ctx.error(
            ErrorKind::Secret,
            Some(entra_span.clone()),
            Some("entra"),
            format!("no credential is configured; give exactly one in [entra]: {EXAMPLES}"),
        ));
    }
    if found.len() > 1 {
        let names = found
            .iter()
            .map(Found::describe)
            .collect::<Vec<_>>()
            .join(", ");
        let at = found.iter().find_map(Found::at);
        let all_secrets = found.iter().all(|f| matches!(f, Found::Secret(_)));
        let message = if all_secrets {
            format!(
                "the client secret is given {} ways ({names}); keep exactly one of them and remove the others",
                found.len()
            )
        } else {
            format!(
                "{} credentials are configured ({names}); entra-sync signs in with exactly one, so keep one and \
                 remove the others",
                found.len()
            )
        };
        return Err(ctx.error(
            ErrorKind::Secret,
            at.as_ref().map(|(_, span)| span.clone()),
            at.as_ref().map(|(key, _)| *key),
            message,
        ));
    }
    let chosen = found.remove(0);
    if !matches!(chosen, Found::Certificate { .. })
        && let Some(key) = &entra.client_certificate_key_file
    {
        return Err(ctx.invalid(
            key.span(),
            "entra.client_certificate_key_file",
            "belongs to a certificate, but the credential in use is not one; remove it".to_owned(),
        ));
    }
    if !matches!(chosen, Found::ManagedIdentity { .. })
        && let Some(endpoint) = &entra.managed_identity_endpoint
    {
        return Err(ctx.invalid(
            endpoint.span(),
            "entra.managed_identity_endpoint",
            "is only used with a managed identity (managed_identity = true); remove it".to_owned(),
        ));
    }
    if !matches!(chosen, Found::Secret(_))
        && let Some(expires) = &entra.client_secret_expires
    {
        let why = if matches!(chosen, Found::Certificate { .. }) {
            "entra-sync reads a certificate's expiry (notAfter) from the certificate itself"
        } else {
            "this credential has no secret that expires"
        };
        return Err(ctx.invalid(
            expires.span(),
            "entra.client_secret_expires",
            format!(
                "is for a client secret, but the credential in use is not one ({why}); remove it"
            ),
        ));
    }

    match chosen {
        Found::Secret(given) => {
            let (secret, source) = secret::read_secret(ctx, given, warnings)?;
            Ok(Credential::Secret { secret, source })
        }
        Found::Certificate {
            path,
            span,
            from_credential,
        } => read_certificate(ctx, entra, base_dir, path, span, from_credential, warnings),
        Found::ManagedIdentity { .. } => managed_identity(ctx, entra, env),
        Found::Federated {
            path,
            span,
            from_env,
        } => {
            let key = (!from_env).then_some("entra.federated_token_file");
            let shown = if from_env {
                format!("$AZURE_FEDERATED_TOKEN_FILE {}", path.display())
            } else {
                format!("federated_token_file {}", path.display())
            };
            let fail = |m: String| ctx.error(ErrorKind::Secret, span.clone(), key, m);
            files::check_trusted(&path, &shown).map_err(&fail)?;
            read_federated_token(&path, &shown).map_err(&fail)?;
            Ok(Credential::FederatedToken(FederatedToken {
                path,
                from_env,
            }))
        }
    }
}

fn read_certificate(
    ctx: &Ctx<'_>,
    entra: &RawEntra,
    base_dir: &Path,
    path: PathBuf,
    span: Option<Range<usize>>,
    from_credential: bool,
    warnings: &mut Vec<String>,
) -> Result<Credential, ConfigError> {
    let key = if from_credential {
        None
    } else {
        Some("entra.client_certificate_file")
    };
    let shown = if from_credential {
        format!("systemd credential {}", path.display())
    } else {
        format!("client_certificate_file {}", path.display())
    };
    let key_path = match &entra.client_certificate_key_file {
        Some(value) => {
            non_empty_path(
                ctx,
                value,
                "client_certificate_key_file",
                "/etc/entra-sync/client.key",
            )?;
            Some((base_dir.join(value.get_ref()), value.span()))
        }
        None => None,
    };
    files::check_trusted(&path, &shown)
        .map_err(|m| ctx.error(ErrorKind::Unsafe, span.clone(), key, m))?;
    if let Some((key_file, key_span)) = &key_path {
        files::check_trusted(key_file, "client_certificate_key_file").map_err(|m| {
            ctx.error(
                ErrorKind::Unsafe,
                Some(key_span.clone()),
                Some("entra.client_certificate_key_file"),
                m,
            )
        })?;
    }
    let (cert, private_key) =
        certificate::load(&path, key_path.as_ref().map(|(p, _)| p.as_path()), &shown).map_err(
            |m| {
                // Problems with the separate key file point at its key.
                match (&key_path, m.contains("client_certificate_key_file")) {
                    (Some((_, key_span)), true) => ctx.error(
                        ErrorKind::Secret,
                        Some(key_span.clone()),
                        Some("entra.client_certificate_key_file"),
                        m,
                    ),
                    _ => ctx.error(ErrorKind::Secret, span.clone(), key, m),
                }
            },
        )?;
    // The file holding the key must be private (the certificate alone is public).
    let key_file = key_path.as_ref().map_or(&path, |(p, _)| p);
    if !from_credential
        && let Some(warning) = files::readable_warning(
            key_file,
            &format!("the private key file {}", key_file.display()),
        )
    {
        warnings.push(warning);
    }
    let (sha1, sha256) = certificate::thumbprints(&cert.der);
    Ok(Credential::Certificate(Box::new(Certificate {
        path,
        key_path: key_path.map(|(p, _)| p),
        from_systemd_credential: from_credential,
        der: cert.der,
        key: private_key,
        sha1,
        sha256,
        not_before: cert.not_before,
        not_after: cert.not_after,
        subject: cert.subject,
    })))
}

fn managed_identity(ctx: &Ctx<'_>, entra: &RawEntra, env: &Env) -> Result<Credential, ConfigError> {
    let client_id = match &entra.managed_identity_client_id {
        None => None,
        Some(id) if is_guid(id.get_ref()) => Some(id.get_ref().to_ascii_lowercase()),
        Some(id) => {
            return Err(ctx.invalid(
                id.span(),
                "entra.managed_identity_client_id",
                format!(
                    "{:?} is not a GUID; copy the Client ID from the user-assigned managed identity's Overview page in the Azure portal",
                    id.get_ref()
                ),
            ));
        }
    };
    let (kind, endpoint) = match &entra.managed_identity_endpoint {
        Some(value) => {
            let url = parse_endpoint(value.get_ref(), IMDS_TOKEN_URL)
                .map_err(|m| ctx.invalid(value.span(), "entra.managed_identity_endpoint", m))?;
            (ManagedIdentityKind::Vm, url)
        }
        None => match (&env.identity_endpoint, &env.imds_endpoint) {
            // The Arc agent sets both for services (1.4a step 1).
            (Some(identity), Some(_)) => {
                let url = parse_endpoint(identity, ARC_DEFAULT_TOKEN_URL).map_err(|m| {
                    ctx.error(
                        ErrorKind::Invalid,
                        None,
                        Some("entra.managed_identity"),
                        format!(
                            "the environment variable IDENTITY_ENDPOINT (set by the Azure Arc agent) {m}; \
                             fix the variable or set managed_identity_endpoint"
                        ),
                    )
                })?;
                (ManagedIdentityKind::Arc, url)
            }
            _ if env.himds_installed => {
                (ManagedIdentityKind::Arc, ARC_DEFAULT_TOKEN_URL.to_owned())
            }
            _ => (ManagedIdentityKind::Vm, IMDS_TOKEN_URL.to_owned()),
        },
    };
    Ok(Credential::ManagedIdentity(ManagedIdentity {
        client_id,
        kind,
        endpoint,
        arc_tokens_dir: PathBuf::from(ARC_TOKENS_DIR),
    }))
}

/// Largest federated token file read: real tokens are about 1-2 KiB.
const MAX_FEDERATED_TOKEN_BYTES: u64 = 64 * 1024;

/// Reads the federated token (a JWT another identity provider wrote). Called at load and for
/// every token request, since the file rotates. Errors are the message part; the token never
/// appears in them.
pub fn read_federated_token(path: &Path, shown: &str) -> Result<Secret, String> {
    let file = fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!(
            "{shown} does not exist; check the path (on AKS the workload identity webhook mounts it \
             when the pod's service account has azure.workload.identity/client-id and the pod the \
             azure.workload.identity/use label)"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "cannot read {shown}: permission denied; make it readable by the user entra-sync runs as"
        ),
        _ => format!("cannot read {shown}: {e}"),
    })?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(
        &mut io::Read::take(file, MAX_FEDERATED_TOKEN_BYTES + 1),
        &mut bytes,
    )
    .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_FEDERATED_TOKEN_BYTES {
        return Err(format!(
            "{shown} is larger than 64 KiB, so it is not a token; check the path"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        format!("{shown} is not text; it must hold only the federated token (a JWT)")
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "{shown} is empty; the identity provider has not written the token yet"
        ));
    }
    if token.split('.').count() != 3 || token.contains(char::is_whitespace) {
        return Err(format!(
            "{shown} does not hold a JWT (three base64url parts joined by dots); point the key at the \
             token file the identity provider writes"
        ));
    }
    Ok(Secret::new(token))
}

/// The environment variable names of this module, for `Env::from_process`.
pub(super) const FEDERATED_TOKEN_FILE_ENV: &str = "AZURE_FEDERATED_TOKEN_FILE";
pub(super) const AZURE_CLIENT_ID_ENV: &str = "AZURE_CLIENT_ID";
pub(super) const AZURE_TENANT_ID_ENV: &str = "AZURE_TENANT_ID";
pub(super) const IDENTITY_ENDPOINT_ENV: &str = "IDENTITY_ENDPOINT";
pub(super) const IMDS_ENDPOINT_ENV: &str = "IMDS_ENDPOINT";

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is fine in tests only
mod tests;

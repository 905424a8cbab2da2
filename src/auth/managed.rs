//! Managed identity tokens: the Azure VM Instance Metadata Service (graph-protocol.md 1.4) and
//! the Azure Arc agent (1.4a), which first answers 401 naming a key file whose content is the
//! password for a second request. Never through a proxy (the caller's agent has none).

use std::fs;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{AccessToken, AuthError, parse_token_response};
use crate::config::{ManagedIdentity, ManagedIdentityKind};
use crate::http::{self, server_text};
use crate::shutdown::Shutdown;

/// IMDS's documented retry schedule (1.4): 5 attempts, exponential backoff with a 2 s step
/// and a 60 s cap, i.e. waits of 2, 4, 8 and 16 s.
const ATTEMPTS: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(2);
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The Arc agent's key files are small; SDKs refuse anything larger (1.4a step 3).
const MAX_KEY_FILE_BYTES: u64 = 4096;

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// The wait before attempt `attempt + 1` (1-based): 2, 4, 8, 16 ... s, at most 60 s.
fn wait_after(attempt: u32) -> Duration {
    FIRST_WAIT
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(MAX_WAIT)
}

/// One token for `resource` (the cloud's Graph origin with a trailing slash).
pub(super) fn request(
    agent: &ureq::Agent,
    identity: &ManagedIdentity,
    resource: &str,
    shutdown: &Shutdown,
) -> Result<(AccessToken, Duration), AuthError> {
    let mut basic: Option<String> = None;
    let mut last_detail = String::new();
    let mut attempt = 0;
    while attempt < ATTEMPTS {
        attempt += 1;
        let mut get = agent
            .get(&identity.endpoint)
            .query("api-version", identity.api_version())
            .query("resource", resource)
            .header("Metadata", "true");
        if let Some(id) = &identity.client_id {
            get = get.query("client_id", id);
        }
        if let Some(password) = &basic {
            get = get.header("Authorization", &format!("Basic {password}"));
        }
        log::debug!("auth: GET {} (managed identity)", identity.endpoint);
        let retry = match get.call() {
            Ok(response) => {
                let status = response.status().as_u16();
                let challenge = response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = http::read_body(response).unwrap_or_default();
                if status == 200 {
                    return parse_token_response(&body).map_err(|why| {
                        rejected(identity, status, "", &format!("unreadable response: {why}"))
                    });
                }
                if status == 401 && basic.is_none() {
                    // The Arc challenge: read the key file it names, then ask again at once.
                    let realm = challenge.as_deref().and_then(basic_realm).ok_or_else(|| {
                        rejected(
                            identity,
                            status,
                            "",
                            "HTTP 401 without a Basic realm challenge",
                        )
                    })?;
                    basic = Some(read_key_file(Path::new(&realm), &identity.arc_tokens_dir)?);
                    attempt -= 1;
                    continue;
                }
                let error = serde_json::from_slice::<ErrorBody>(&body).unwrap_or_default();
                let transient = matches!(status, 404 | 410 | 429) || status >= 500;
                if !transient {
                    return Err(rejected(
                        identity,
                        status,
                        &error.error,
                        &error.error_description,
                    ));
                }
                last_detail = format!("HTTP {status} {}", server_text(&error.error));
                true
            }
            Err(e) => {
                last_detail = server_text(&e.to_string());
                true
            }
        };
        if retry && attempt < ATTEMPTS {
            let wait = wait_after(attempt);
            log::warn!(
                "auth: managed identity endpoint failed ({last_detail}), retrying in {}s",
                wait.as_secs()
            );
            if shutdown.sleep(wait) {
                return Err(AuthError::Stopped);
            }
        }
    }
    Err(AuthError::Unavailable {
        url: identity.endpoint.clone(),
        attempts: ATTEMPTS,
        detail: last_detail,
        hint: match identity.kind {
            ManagedIdentityKind::Vm => {
                "managed_identity needs an Azure VM (or an Arc-enabled server): check that \
                 entra-sync runs on one and that nothing blocks http://169.254.169.254"
            }
            ManagedIdentityKind::Arc => {
                "check the Azure Connected Machine agent runs and is connected (azcmagent show; \
                 systemctl status himdsd)"
            }
        },
    })
}

/// The path in `WWW-Authenticate: Basic realm=<path>` (quoted or not).
fn basic_realm(header: &str) -> Option<String> {
    let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let (name, value) = rest.trim().split_once('=')?;
    if !name.trim().eq_ignore_ascii_case("realm") {
        return None;
    }
    let value = value.trim().trim_matches('"');
    (!value.is_empty()).then(|| value.to_owned())
}

/// Reads the Arc challenge's key file after the checks SDKs make (1.4a step 3): a `.key`
/// file of at most 4096 bytes directly in the agent's tokens directory. A local program that
/// answers on the agent's port must not make entra-sync read (and send) another file.
fn read_key_file(path: &Path, tokens_dir: &Path) -> Result<String, AuthError> {
    let shown = server_text(&path.display().to_string());
    let refuse = |why: &str| {
        AuthError::Credential(format!(
            "the managed identity endpoint's challenge names {shown}, which {why}; entra-sync reads \
             only a .key file of at most {MAX_KEY_FILE_BYTES} bytes in {} (a program other than the \
             Azure Arc agent may be answering on its port)",
            tokens_dir.display()
        ))
    };
    let canonical_dir = fs::canonicalize(tokens_dir).unwrap_or_else(|_| tokens_dir.to_path_buf());
    let canonical = fs::canonicalize(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => permission_denied(&shown),
        _ => refuse("does not exist"),
    })?;
    if path.extension().and_then(|e| e.to_str()) != Some("key")
        || canonical.extension().and_then(|e| e.to_str()) != Some("key")
    {
        return Err(refuse("is not a .key file"));
    }
    if canonical.parent() != Some(canonical_dir.as_path()) {
        return Err(refuse("is not in the agent's tokens directory"));
    }
    let meta = fs::metadata(&canonical).map_err(|_| refuse("cannot be examined"))?;
    if !meta.is_file() {
        return Err(refuse("is not a regular file"));
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(refuse("is too large"));
    }
    let mut text = String::new();
    fs::File::open(&canonical)
        .and_then(|f| f.take(MAX_KEY_FILE_BYTES).read_to_string(&mut text))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => permission_denied(&shown),
            _ => refuse("cannot be read as text"),
        })?;
    let key = text.trim();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse("does not hold a key"));
    }
    Ok(key.to_owned())
}

fn permission_denied(shown: &str) -> AuthError {
    AuthError::Credential(format!(
        "cannot read the Azure Arc agent's key file {shown}: permission denied; the user entra-sync \
         runs as must be in the himds group (usermod -aG himds <user>, or SupplementaryGroups=himds \
         in the unit)"
    ))
}

/// A refusal from IMDS or the Arc agent as advice (1.4's table).
fn rejected(identity: &ManagedIdentity, status: u16, error: &str, description: &str) -> AuthError {
    let which = match &identity.client_id {
        Some(id) => format!("user-assigned managed identity {id}"),
        None => "system-assigned managed identity".to_owned(),
    };
    let not_found = error == "unauthorized_client"
        || (status == 400
            && description
                .to_ascii_lowercase()
                .contains("identity not found"));
    let advice = if not_found {
        match identity.kind {
            ManagedIdentityKind::Vm => format!(
                "this VM has no {which}: enable it in the Azure portal (the VM > Security > Identity; \
                 for a system-assigned one set Status to On) or with the CLI (az vm identity assign \
                 -g <resource group> -n <vm>{}), then check entra.managed_identity_client_id",
                if identity.client_id.is_some() {
                    " --identities <identity resource id>"
                } else {
                    ""
                }
            ),
            ManagedIdentityKind::Arc => format!(
                "this Arc-enabled server has no {which}: check the agent is connected (azcmagent show); \
                 Arc servers have a system-assigned identity, so remove managed_identity_client_id \
                 unless you assigned that identity to the server"
            ),
        }
    } else if error == "invalid_resource" {
        "the Graph resource was not found: check entra.cloud is the tenant's cloud".to_owned()
    } else if error.starts_with("bad_request") {
        "the metadata service refused the request's form (a bug in entra-sync: please report it)"
            .to_owned()
    } else {
        format!(
            "the managed identity endpoint refused the request: error \"{}\": {}",
            server_text(error),
            server_text(description.lines().next().unwrap_or_default())
        )
    };
    AuthError::Rejected {
        status,
        code: None,
        error: server_text(error),
        advice,
        details: format!("HTTP {status} from {}", identity.endpoint),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is fine in tests only
mod tests {
    use super::*;

    #[test]
    fn the_documented_retry_schedule() {
        let waits: Vec<u64> = (1..ATTEMPTS).map(|a| wait_after(a).as_secs()).collect();
        // Cumulative 2, 6, 14, 30 s: "delays of about 0, 2, 6, 14, 30 s".
        assert_eq!(waits, vec![2, 4, 8, 16]);
        assert_eq!(wait_after(10), MAX_WAIT);
        assert_eq!(wait_after(u32::MAX), MAX_WAIT);
    }

    #[test]
    fn challenge_realms() {
        assert_eq!(
            basic_realm("Basic realm=/var/opt/azcmagent/tokens/a.key").as_deref(),
            Some("/var/opt/azcmagent/tokens/a.key")
        );
        assert_eq!(
            basic_realm("basic realm=\"/x/a.key\"").as_deref(),
            Some("/x/a.key")
        );
        assert_eq!(basic_realm("Bearer realm=x"), None);
        assert_eq!(basic_realm("Basic"), None);
    }

    #[test]
    fn key_files_outside_the_rules_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        fs::create_dir(&tokens).unwrap();
        let good = tokens.join("abc.key");
        fs::write(&good, "s3cr3t-key\n").unwrap();
        assert_eq!(read_key_file(&good, &tokens).unwrap(), "s3cr3t-key");

        let refused = |path: &Path| match read_key_file(path, &tokens) {
            Err(AuthError::Credential(m)) => {
                assert!(!m.contains("s3cr3t"), "{m}");
                m
            }
            other => panic!("{other:?}"),
        };
        let wrong_ext = tokens.join("abc.txt");
        fs::write(&wrong_ext, "s3cr3t").unwrap();
        assert!(refused(&wrong_ext).contains("is not a .key file"));
        let outside = dir.path().join("other.key");
        fs::write(&outside, "s3cr3t").unwrap();
        assert!(refused(&outside).contains("is not in the agent's tokens directory"));
        // A .. path that leaves the directory.
        let sneaky = tokens.join("..").join("other.key");
        assert!(refused(&sneaky).contains("is not in the agent's tokens directory"));
        // A symlink in the directory pointing outside.
        let link = tokens.join("link.key");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(refused(&link).contains("is not in the agent's tokens directory"));
        let big = tokens.join("big.key");
        fs::write(&big, "x".repeat(4097)).unwrap();
        assert!(refused(&big).contains("is too large"));
        assert!(refused(&tokens.join("absent.key")).contains("does not exist"));
        let m = refused(Path::new("/etc/shadow"));
        assert!(m.contains("/etc/shadow"), "{m}");
    }
}

//! Sign-in: access tokens for Microsoft Graph with whichever credential the configuration
//! holds (issue 9). A client secret, a certificate's client assertion or a federated token
//! goes to the Entra token endpoint (`entra.rs`); a managed identity asks the VM's IMDS or the
//! Arc agent (`managed.rs`). One [`Auth::token`] path and one cache serve them all.
//!
//! Nothing here logs or returns a secret, key, assertion or token text.

mod advice;
mod assertion;
mod entra;
mod managed;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::config::{Config, Credential, Entra};
use crate::http;
use crate::shutdown::Shutdown;

pub use assertion::Form as AssertionForm;

/// Tokens are renewed this long before Entra says they expire, so a page request never goes
/// out with a token that dies on the way.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Warn this many days before the credential's expiry.
const EXPIRY_WARNING_DAYS: i64 = 30;
/// The range a server's `expires_in` is clamped to (issue 7 item 6): below it, a broken
/// server would make every call fetch a token (AADSTS50196); above it, a far-future value
/// would overflow `Instant` arithmetic. Real tokens live 60-90 minutes (24 h for managed
/// identities at most).
const MIN_LIFETIME: Duration = Duration::from_secs(60);
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Lifetime assumed when a response has no readable `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3599);
/// Longest access token accepted (real ones are 1-4 KiB).
const MAX_TOKEN_LEN: usize = 64 * 1024;

/// An access token. Its text is only reachable through [`AccessToken::bearer`], so it cannot
/// end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    /// The `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Best-effort read of the token's claims, for diagnostics only: Microsoft says tokens
    /// for its APIs are opaque, so nothing may depend on this.
    fn claims(&self) -> Option<serde_json::Value> {
        let payload = self.0.split('.').nth(1)?;
        let bytes = base64url_decode(payload)?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The `roles` claim (best effort, see [`AccessToken::claims`]).
    pub fn roles(&self) -> Option<Vec<String>> {
        let claims = self.claims()?;
        let roles = claims.get("roles")?.as_array()?;
        Some(
            roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// The `oid` claim: the object id of the identity the token is for (best effort).
    pub fn object_id(&self) -> Option<String> {
        let claims = self.claims()?;
        let oid = claims.get("oid")?.as_str()?;
        // An identifier, shown in `check`: only a GUID is passed on.
        crate::config::is_guid(oid).then(|| oid.to_owned())
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// base64url without padding (JWT segments); also accepts padded or standard-alphabet input.
pub(crate) fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    let normal: String = trimmed
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(normal)
        .ok()
}

/// base64 in either alphabet, padded or not (Graph's Binary values are standard base64).
pub(crate) fn base64_decode_any(text: &str) -> Option<Vec<u8>> {
    base64url_decode(text)
}

pub(crate) fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// The token service refused the credentials or the request.
    #[error("sign-in: {advice} ({details})")]
    Rejected {
        status: u16,
        /// The first AADSTS number, when the body had one.
        code: Option<u64>,
        /// The OAuth `error` class (`invalid_client` ...), escaped.
        error: String,
        advice: String,
        details: String,
    },
    /// The token service could not be reached or kept failing with transient errors.
    #[error(
        "sign-in: the token endpoint {url} is unavailable after {attempts} attempts: {detail}; {hint}"
    )]
    Unavailable {
        url: String,
        attempts: u32,
        detail: String,
        hint: &'static str,
    },
    /// The credential could not be used at all (a federated token file gone, a key that
    /// no longer loads).
    #[error("sign-in: {0}")]
    Credential(String),
    #[error("sign-in: stopped")]
    Stopped,
}

/// Fetches and caches tokens for one configured credential. Cheap to share between the
/// users and groups threads.
pub struct Auth {
    /// For the Entra token endpoint (proxy as `http::use_proxy_for` decided).
    agent: ureq::Agent,
    /// For IMDS and the Arc agent, which must never go through a proxy (1.4).
    direct: ureq::Agent,
    entra: Entra,
    /// The certificate's key, ready to sign (or why it cannot).
    key: Option<Result<ring::rsa::KeyPair, String>>,
    /// The client-assertion form Entra accepted last (PS256 first).
    form: Mutex<AssertionForm>,
    /// Whether the accepted form has been logged.
    form_logged: AtomicBool,
    cached: Mutex<Option<Cached>>,
    shutdown: Shutdown,
}

struct Cached {
    token: AccessToken,
    renew_at: Instant,
}

impl Auth {
    pub fn new(agent: ureq::Agent, entra: &Entra, shutdown: Shutdown) -> Auth {
        let key = entra.credential.certificate().map(|cert| {
            cert.key.key_pair().map_err(|e| {
                format!(
                    "the private key of {} no longer loads ({e}); check client_certificate_file",
                    cert.path.display()
                )
            })
        });
        Auth {
            agent,
            direct: http::agent(false),
            entra: entra.clone(),
            key,
            form: Mutex::new(AssertionForm::Ps256),
            form_logged: AtomicBool::new(false),
            cached: Mutex::new(None),
            shutdown,
        }
    }

    /// A valid token, from the cache when it has a few minutes left, otherwise a new one.
    pub fn token(&self) -> Result<AccessToken, AuthError> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.request_token()?;
        *cached = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + renew_in(lifetime),
        });
        Ok(token)
    }

    /// Forgets `token` after Graph refused it (401), so the next call asks for a new one.
    /// A token that was already replaced by another thread is left alone.
    pub fn invalidate(&self, token: &AccessToken) {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.as_ref().is_some_and(|c| &c.token == token) {
            *cached = None;
        }
    }

    /// The credential kind in use.
    pub fn credential(&self) -> &Credential {
        &self.entra.credential
    }

    /// The assertion form Entra accepted (meaningful after a certificate sign-in).
    pub fn assertion_form(&self) -> AssertionForm {
        *self.form.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One token request with the configured credential: the single path every kind takes.
    fn request_token(&self) -> Result<(AccessToken, Duration), AuthError> {
        let client_id = self.entra.client_id.as_deref().unwrap_or_default();
        match &self.entra.credential {
            Credential::Secret { secret, .. } => {
                self.at_entra(client_id, entra::Grant::Secret(secret.expose()))
            }
            Credential::FederatedToken(file) => {
                let shown = format!("federated token file {}", file.path.display());
                let token = crate::config::read_federated_token(&file.path, &shown)
                    .map_err(AuthError::Credential)?;
                self.at_entra(client_id, entra::Grant::Federated(token.expose()))
            }
            Credential::Certificate(cert) => {
                let key = match &self.key {
                    Some(Ok(key)) => key,
                    Some(Err(m)) => return Err(AuthError::Credential(m.clone())),
                    None => return Err(AuthError::Credential("no certificate key".into())),
                };
                self.with_certificate(client_id, cert, key)
            }
            Credential::ManagedIdentity(identity) => managed::request(
                &self.direct,
                identity,
                &self.entra.resource(),
                &self.shutdown,
            ),
        }
    }

    fn at_entra(
        &self,
        client_id: &str,
        grant: entra::Grant<'_>,
    ) -> Result<(AccessToken, Duration), AuthError> {
        let request = entra::Request {
            agent: &self.agent,
            token_url: &self.entra.token_url(),
            client_id,
            scope: &self.entra.scope(),
            credential: &self.entra.credential,
        };
        request.send(grant, &self.shutdown)
    }

    /// Signs a fresh assertion (PS256 with `x5t#S256`, or RS256 with `x5t` once Entra has
    /// accepted only that) and, when Entra refuses the first form as malformed or
    /// unsupported, retries once with the other and logs which one was accepted.
    fn with_certificate(
        &self,
        client_id: &str,
        cert: &crate::config::Certificate,
        key: &ring::rsa::KeyPair,
    ) -> Result<(AccessToken, Duration), AuthError> {
        let audience = self.entra.token_url();
        let sign = |form| {
            assertion::sign(cert, key, client_id, &audience, form, assertion::now_unix())
                .map_err(AuthError::Credential)
        };
        let form = self.assertion_form();
        let first = self.at_entra(client_id, entra::Grant::Assertion(&sign(form)?));
        let result = match first {
            Err(AuthError::Rejected {
                code, ref error, ..
            }) if form == AssertionForm::Ps256 && assertion::may_be_form_problem(code, error) => {
                log::warn!(
                    "auth: Entra refused the client assertion signed {form} ({}); retrying once with {}",
                    first
                        .as_ref()
                        .err()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    AssertionForm::Rs256
                );
                let second = self.at_entra(
                    client_id,
                    entra::Grant::Assertion(&sign(AssertionForm::Rs256)?),
                );
                if second.is_ok() {
                    *self.form.lock().unwrap_or_else(|e| e.into_inner()) = AssertionForm::Rs256;
                    self.form_logged.store(false, Ordering::Relaxed);
                }
                second.map(|ok| (ok, AssertionForm::Rs256))
            }
            other => other.map(|ok| (ok, form)),
        };
        let (token, accepted) = result?;
        if !self.form_logged.swap(true, Ordering::Relaxed) {
            log::info!("auth: Entra accepted the client assertion signed {accepted}");
        }
        Ok(token)
    }
}

/// When to renew a token that lives `lifetime`: a few minutes early, but never sooner than
/// half its life (short-lived tokens).
fn renew_in(lifetime: Duration) -> Duration {
    lifetime.saturating_sub(RENEW_BEFORE).max(lifetime / 2)
}

/// A token response (`{"access_token": ..., "expires_in": ...}`, 1.1 and 1.4) parsed
/// defensively: `expires_in` may be a number or a string (IMDS), anything out of range is
/// clamped, and a missing or unusable token is an error, never a panic.
pub(crate) fn parse_token_response(body: &[u8]) -> Result<(AccessToken, Duration), String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the response is not JSON".to_owned())?;
    let token = value
        .get("access_token")
        .and_then(|t| t.as_str())
        .ok_or_else(|| "the response has no access_token".to_owned())?;
    if token.is_empty()
        || token.len() > MAX_TOKEN_LEN
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("the access_token is empty, too long or not printable ASCII".to_owned());
    }
    let seconds = match value.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let lifetime = match seconds {
        Some(s) if s.is_finite() => {
            Duration::from_secs_f64(s.clamp(MIN_LIFETIME.as_secs_f64(), MAX_LIFETIME.as_secs_f64()))
        }
        _ => DEFAULT_LIFETIME,
    };
    Ok((AccessToken(token.into()), lifetime))
}

/// What to say about the credential's expiry, if anything, at `now`: for a client secret
/// (`entra.client_secret_expires`) or a certificate (`notAfter`), a warning from 30 days
/// before, an error after; for a certificate not yet valid (`notBefore`), an error.
pub fn credential_expiry(
    config: &Config,
    now: time::OffsetDateTime,
) -> Option<(log::Level, String)> {
    let today = now.date();
    match &config.entra.credential {
        Credential::Certificate(cert) => {
            let renew = format!(
                "create a new certificate, upload it under App registrations > Certificates & secrets, \
                 and replace {}",
                cert.path.display()
            );
            let thumbprint = cert.thumbprint();
            if now < cert.not_before {
                return Some((
                    log::Level::Error,
                    format!(
                        "certificate: the certificate (SHA-1 thumbprint {thumbprint}) is not valid before {}; \
                         check this machine's clock (timedatectl) or use a certificate that is already valid",
                        cert.not_before.date()
                    ),
                ));
            }
            let expires = cert.not_after.date();
            let days = (expires - today).whole_days();
            if now >= cert.not_after {
                Some((
                    log::Level::Error,
                    format!(
                        "certificate: the certificate (SHA-1 thumbprint {thumbprint}) expired on {expires} \
                         ({} days ago): {renew}",
                        -days
                    ),
                ))
            } else if days <= EXPIRY_WARNING_DAYS {
                Some((
                    log::Level::Warn,
                    format!(
                        "certificate: the certificate (SHA-1 thumbprint {thumbprint}) expires on {expires}, \
                         in {days} days: {renew}"
                    ),
                ))
            } else {
                None
            }
        }
        Credential::Secret { .. } => {
            let expires = config.entra.client_secret_expires?;
            let days = (expires - today).whole_days();
            let renew = "create a new client secret under App registrations > Certificates & secrets \
                         (at most 24 months), then update the secret file and entra.client_secret_expires";
            if days < 0 {
                Some((
                    log::Level::Error,
                    format!(
                        "secret: the client secret expired on {expires} ({} days ago): {renew}",
                        -days
                    ),
                ))
            } else if days <= EXPIRY_WARNING_DAYS {
                Some((
                    log::Level::Warn,
                    format!(
                        "secret: the client secret expires on {expires}, in {days} days: {renew}"
                    ),
                ))
            } else {
                None
            }
        }
        Credential::ManagedIdentity(_) | Credential::FederatedToken(_) => None,
    }
}

/// [`credential_expiry`] for a date (midnight UTC), as `check` and older callers use it.
pub fn secret_expiry(config: &Config, today: time::Date) -> Option<(log::Level, String)> {
    credential_expiry(config, today.midnight().assume_utc())
}

/// Logs [`credential_expiry`] for now; called before every pass.
pub fn log_secret_expiry(config: &Config) {
    if let Some((level, message)) = credential_expiry(config, time::OffsetDateTime::now_utc()) {
        log::log!(level, "{message}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is fine in tests only
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roles_and_object_id_are_read_from_a_jwt_shaped_token() {
        let claims = base64url(
            br#"{"roles":["User.Read.All"],"oid":"6f1b8c3e-0000-4000-8000-000000000001"}"#,
        );
        let token = AccessToken(format!("h.{claims}.s").into());
        assert_eq!(token.roles(), Some(vec!["User.Read.All".to_owned()]));
        assert_eq!(
            token.object_id().as_deref(),
            Some("6f1b8c3e-0000-4000-8000-000000000001")
        );
        assert_eq!(AccessToken("opaque".into()).roles(), None);
        assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
        // Standard alphabet and padding are tolerated.
        assert_eq!(
            base64url_decode("eyJhIjoxfQ=="),
            Some(br#"{"a":1}"#.to_vec())
        );
    }

    #[test]
    fn token_lifetimes_are_clamped() {
        let parse = |body: &str| parse_token_response(body.as_bytes()).map(|(_, d)| d);
        assert_eq!(
            parse(r#"{"access_token":"a","expires_in":4374}"#),
            Ok(Duration::from_secs(4374))
        );
        // IMDS sends strings (1.4).
        assert_eq!(
            parse(r#"{"access_token":"a","expires_in":"3599"}"#),
            Ok(Duration::from_secs(3599))
        );
        // Issue 7 item 6: an enormous value once panicked Instant + Duration.
        assert_eq!(
            parse(r#"{"access_token":"a","expires_in":18446744073709551615}"#),
            Ok(MAX_LIFETIME)
        );
        assert_eq!(
            parse(r#"{"access_token":"a","expires_in":1e300}"#),
            Ok(MAX_LIFETIME)
        );
        assert_eq!(
            parse(r#"{"access_token":"a","expires_in":-5}"#),
            Ok(MIN_LIFETIME)
        );
        assert_eq!(
            parse(r#"{"access_token":"a","expires_in":0}"#),
            Ok(MIN_LIFETIME)
        );
        assert_eq!(
            parse(r#"{"access_token":"a","expires_in":"soon"}"#),
            Ok(DEFAULT_LIFETIME)
        );
        assert_eq!(parse(r#"{"access_token":"a"}"#), Ok(DEFAULT_LIFETIME));
        assert!(parse(r#"{"access_token":""}"#).is_err());
        assert!(parse(r#"{"access_token":"a\nb"}"#).is_err());
        assert!(parse(r#"{"access_token":7}"#).is_err());
        assert!(parse("not json").is_err());
        // The cache arithmetic on the clamped value cannot overflow.
        let _ = Instant::now() + renew_in(MAX_LIFETIME);
        assert_eq!(renew_in(MIN_LIFETIME), Duration::from_secs(30));
    }

    proptest! {
        /// Issue 7 item 6: no token response, random or mutated, makes the parser or the
        /// cache arithmetic panic.
        #[test]
        fn token_response_parser_never_panics(
            expires in prop_oneof![
                any::<u64>().prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|f| format!("{f:e}")),
                any::<u64>().prop_map(|n| format!("\"{n}\"")),
                ".{0,12}".prop_map(|s| serde_json::Value::String(s).to_string()),
                Just("null".to_owned()),
                Just("[]".to_owned()),
            ],
            token in "[ -~]{0,40}",
            junk in proptest::collection::vec(any::<u8>(), 0..64),
            cut in 0usize..200,
        ) {
            let body = format!(
                r#"{{"token_type":"Bearer","expires_in":{expires},"access_token":{}}}"#,
                serde_json::Value::String(token)
            );
            if let Ok((_, lifetime)) = parse_token_response(body.as_bytes()) {
                prop_assert!(lifetime >= MIN_LIFETIME && lifetime <= MAX_LIFETIME);
                let _ = Instant::now() + renew_in(lifetime);
            }
            // Truncated and garbage bodies: an error, never a panic.
            let _ = parse_token_response(&body.as_bytes()[..cut.min(body.len())]);
            let _ = parse_token_response(&junk);
        }
    }
}

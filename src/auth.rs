//! Sign-in: OAuth 2.0 client-credentials tokens from the Entra token endpoint.
//!
//! Owns the token cache and the translation of token-endpoint errors (AADSTS codes) into
//! messages an operator can act on. It never logs or returns the secret or the token text.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::{Config, Entra, Secret};
use crate::http::{self, Backoff};
use crate::shutdown::Shutdown;

/// Tokens are renewed this long before Entra says they expire, so a page request never goes
/// out with a token that dies on the way.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Attempts at the token endpoint when it answers with a transient error.
const TOKEN_ATTEMPTS: u32 = 5;
/// Warn this many days before the configured secret expiry date.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// An access token. Its text is only reachable through [`AccessToken::bearer`], so it cannot
/// end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    /// The `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Best-effort read of the `roles` claim, for diagnostics only: Microsoft says tokens
    /// for its APIs are opaque, so nothing may depend on this.
    pub fn roles(&self) -> Option<Vec<String>> {
        let payload = self.0.split('.').nth(1)?;
        let bytes = base64url_decode(payload)?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let roles = claims.get("roles")?.as_array()?;
        Some(
            roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect(),
        )
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token endpoint refused the credentials or the request.
    #[error("sign-in: {advice} ({details})")]
    Rejected {
        status: u16,
        advice: String,
        details: String,
    },
    /// The token endpoint could not be reached or kept failing with transient errors.
    #[error(
        "sign-in: the token endpoint {url} is unavailable after {attempts} attempts: {detail}; \
         check the network path (proxy settings HTTPS_PROXY/NO_PROXY) and https://status.cloud.microsoft"
    )]
    Unavailable {
        url: String,
        attempts: u32,
        detail: String,
    },
    #[error("sign-in: stopped")]
    Stopped,
}

/// Fetches and caches tokens for one (authority, tenant, client) triple. Cheap to share
/// between the users and groups threads.
pub struct Auth {
    agent: ureq::Agent,
    token_url: String,
    client_id: String,
    scope: String,
    secret: Secret,
    cached: Mutex<Option<Cached>>,
    shutdown: Shutdown,
}

struct Cached {
    token: AccessToken,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<serde_json::Value>,
}

/// The error body of the token endpoint (graph-protocol.md 1.1). Everything but `error` is
/// optional because Microsoft changes these bodies.
#[derive(Deserialize, Default)]
struct TokenErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u64>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
}

impl Auth {
    pub fn new(agent: ureq::Agent, entra: &Entra, shutdown: Shutdown) -> Auth {
        Auth {
            agent,
            token_url: entra.token_url(),
            client_id: entra.client_id.clone(),
            scope: entra.scope(),
            secret: entra.secret.clone(),
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
        let renew_in = lifetime.saturating_sub(RENEW_BEFORE).max(lifetime / 2);
        *cached = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + renew_in,
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

    fn request_token(&self) -> Result<(AccessToken, Duration), AuthError> {
        let mut backoff = Backoff::new();
        let mut last_detail = String::new();
        for attempt in 1..=TOKEN_ATTEMPTS {
            let form = [
                ("client_id", self.client_id.as_str()),
                ("scope", self.scope.as_str()),
                ("client_secret", self.secret.expose()),
                ("grant_type", "client_credentials"),
            ];
            let request_id = http::new_request_id();
            log::debug!(
                "auth: POST {} client-request-id={request_id}",
                self.token_url
            );
            let result = self
                .agent
                .post(&self.token_url)
                .header("client-request-id", &request_id)
                .header("Accept", "application/json")
                .send_form(form);
            let wait = match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = http::retry_after(response.headers());
                    let body = http::read_body(response).unwrap_or_default();
                    log::debug!("auth: {status} for client-request-id={request_id}");
                    if status == 200 {
                        return parse_token(&body);
                    }
                    let error = serde_json::from_slice::<TokenErrorBody>(&body).unwrap_or_default();
                    if !is_transient(status, &error) {
                        return Err(rejected(status, &error, &self.client_id, &self.token_url));
                    }
                    last_detail = format!("HTTP {status} {}", error.error);
                    retry_after.unwrap_or_else(|| backoff.next_delay())
                }
                Err(e) => {
                    last_detail = e.to_string();
                    backoff.next_delay()
                }
            };
            if attempt < TOKEN_ATTEMPTS {
                log::warn!(
                    "auth: token endpoint failed ({last_detail}), retrying in {:.1}s",
                    wait.as_secs_f64()
                );
                if self.shutdown.sleep(wait) {
                    return Err(AuthError::Stopped);
                }
            }
        }
        Err(AuthError::Unavailable {
            url: self.token_url.clone(),
            attempts: TOKEN_ATTEMPTS,
            detail: last_detail,
        })
    }
}

/// What to say about the client secret's expiry date, if anything: a warning from 30 days
/// before `entra.client_secret_expires`, an error after it.
pub fn secret_expiry(config: &Config, today: time::Date) -> Option<(log::Level, String)> {
    let expires = config.entra.client_secret_expires?;
    let days = config.secret_days_left(today)?;
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
            format!("secret: the client secret expires on {expires}, in {days} days: {renew}"),
        ))
    } else {
        None
    }
}

/// Logs [`secret_expiry`] for today; called before every pass.
pub fn log_secret_expiry(config: &Config) {
    if let Some((level, message)) = secret_expiry(config, time::OffsetDateTime::now_utc().date()) {
        log::log!(level, "{message}");
    }
}

fn parse_token(body: &[u8]) -> Result<(AccessToken, Duration), AuthError> {
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| AuthError::Rejected {
        status: 200,
        advice: "the token endpoint answered with something that is not a token; check \
                 authority_host points at the Microsoft Entra login host"
            .into(),
        details: format!("unreadable response: {e}"),
    })?;
    // expires_in is an integer on the v2 endpoint but a string on some others; accept both.
    let seconds = match parsed.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(3599);
    Ok((
        AccessToken(parsed.access_token.into()),
        Duration::from_secs(seconds),
    ))
}

/// Transient token-endpoint failures: throttling, outages and the AADSTS codes that mean
/// "try again" (graph-protocol.md 1.2).
fn is_transient(status: u16, error: &TokenErrorBody) -> bool {
    const RETRYABLE_CODES: [u64; 5] = [50000, 50033, 90006, 90033, 90055];
    status == 429
        || status >= 500
        || error.error == "temporarily_unavailable"
        || error
            .error_codes
            .iter()
            .any(|c| RETRYABLE_CODES.contains(c))
}

fn rejected(status: u16, error: &TokenErrorBody, client_id: &str, url: &str) -> AuthError {
    let code = error.error_codes.first().copied();
    let advice = advice_for(code, &error.error, client_id, url);
    let mut details = Vec::new();
    if let Some(code) = code {
        details.push(format!("AADSTS{code}"));
    }
    details.push(format!("HTTP {status}"));
    if !error.error.is_empty() {
        details.push(format!("error {}", error.error));
    }
    if let Some(id) = &error.trace_id {
        details.push(format!("trace id {id}"));
    }
    if let Some(id) = &error.correlation_id {
        details.push(format!("correlation id {id}"));
    }
    if let Some(ts) = &error.timestamp {
        details.push(format!("at {ts}"));
    }
    AuthError::Rejected {
        status,
        advice: if advice.is_empty() {
            generic_advice(error)
        } else {
            advice
        },
        details: details.join(", "),
    }
}

/// The operator message for the AADSTS codes a daemon meets in practice. Microsoft warns
/// that codes change, so anything unknown falls back to [`generic_advice`].
fn advice_for(code: Option<u64>, error: &str, client_id: &str, url: &str) -> String {
    let text = match code {
        Some(7000215) => {
            "the client secret is wrong: check you copied the secret Value, not the Secret ID, \
             from Certificates & secrets in the app registration, with no extra spaces"
        }
        Some(7000222) => {
            "the client secret has expired: create a new client secret under Certificates & \
             secrets (at most 24 months) and update client_secret_file (and client_secret_expires)"
        }
        Some(7000218) => "no client secret was sent: configure exactly one secret source",
        Some(700016) => {
            return format!(
                "application {client_id} was not found in the tenant: check entra.client_id and \
                 entra.tenant_id, and for a multi-tenant app grant admin consent in this tenant"
            );
        }
        Some(7000229) => {
            "the app registration has no service principal in this tenant: create the enterprise \
             application for it (Entra admin center > Enterprise applications > New application, \
             or `az ad sp create --id <client_id>`)"
        }
        Some(7000112) | Some(70001) => {
            "the application is disabled in this tenant: re-enable it under Enterprise \
             applications > Properties > Enabled for users to sign-in"
        }
        Some(90002) | Some(900023) => {
            return format!(
                "the tenant was not found at {url}: check entra.tenant_id (tenant GUID or verified \
                 domain) and entra.cloud (global, usgov, usgov-dod or china)"
            );
        }
        Some(90038) => {
            "the tenant belongs to another national cloud: set entra.cloud to that cloud \
             (global, usgov, usgov-dod or china)"
        }
        Some(1002012) | Some(70011) | Some(700022) => {
            "the token scope (the Graph resource of entra.cloud, e.g. \
             https://graph.microsoft.com/.default) was refused: check entra.cloud and entra.authority_host"
        }
        Some(500011) => {
            "the Graph resource was not found in this tenant: entra.graph_endpoint and \
             entra.cloud (or authority_host) belong to different clouds"
        }
        Some(9001023) => "client credentials need a tenant-specific authority: set entra.tenant_id",
        Some(53003) => {
            "a Conditional Access policy blocks this application: ask an administrator to \
             exclude it or allow this VM's network location"
        }
        Some(50196) => "the token service detected a loop: too many token requests; this is a bug",
        _ => match error {
            "invalid_scope" => {
                "the token scope (the Graph resource of entra.cloud, e.g. \
                 https://graph.microsoft.com/.default) was refused: check entra.cloud and entra.authority_host"
            }
            "unsupported_grant_type" => "the token endpoint does not accept client credentials",
            _ => "",
        },
    };
    text.to_owned()
}

fn generic_advice(error: &TokenErrorBody) -> String {
    let first_line = error
        .error_description
        .as_deref()
        .and_then(|d| d.lines().next())
        .unwrap_or("no description");
    let codes: Vec<String> = error.error_codes.iter().map(|c| c.to_string()).collect();
    format!(
        "the token endpoint refused the request: error {:?}, error_codes [{}]: {first_line}; look \
         the code up at https://login.microsoftonline.com/error",
        error.error,
        codes.join(", ")
    )
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> TokenErrorBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn wrong_secret_names_value_not_id() {
        let e = body(
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: t","error_codes":[7000215],"trace_id":"t-1","correlation_id":"c-1","timestamp":"2025-03-04 10:11:12Z"}"#,
        );
        let msg = rejected(401, &e, "cid", "url").to_string();
        assert!(msg.contains("secret Value, not the Secret ID"), "{msg}");
        assert!(msg.contains("AADSTS7000215"), "{msg}");
        assert!(msg.contains("trace id t-1"), "{msg}");
        assert!(msg.contains("correlation id c-1"), "{msg}");
    }

    #[test]
    fn expired_secret_says_create_new_one() {
        let e = body(r#"{"error":"invalid_client","error_codes":[7000222]}"#);
        let msg = rejected(401, &e, "cid", "url").to_string();
        assert!(
            msg.contains(
                "create a new client secret under Certificates & secrets (at most 24 months)"
            ),
            "{msg}"
        );
        assert!(msg.contains("client_secret_file"), "{msg}");
    }

    #[test]
    fn unknown_code_falls_back_to_quoting_everything() {
        let e = body(
            r#"{"error":"invalid_request","error_description":"AADSTS99999: Something new.\r\nTrace ID: x","error_codes":[99999],"trace_id":"t-2","correlation_id":"c-2"}"#,
        );
        let msg = rejected(400, &e, "cid", "url").to_string();
        assert!(msg.contains("error \"invalid_request\""), "{msg}");
        assert!(msg.contains("error_codes [99999]"), "{msg}");
        assert!(msg.contains("AADSTS99999: Something new."), "{msg}");
        assert!(msg.contains("t-2") && msg.contains("c-2"), "{msg}");
    }

    #[test]
    fn transient_codes_are_retried() {
        assert!(is_transient(503, &TokenErrorBody::default()));
        assert!(is_transient(
            400,
            &body(r#"{"error":"x","error_codes":[90055]}"#)
        ));
        assert!(!is_transient(
            401,
            &body(r#"{"error":"invalid_client","error_codes":[7000215]}"#)
        ));
    }

    #[test]
    fn roles_are_read_from_a_jwt_shaped_token() {
        // {"roles":["User.Read.All"]}
        let token = AccessToken("h.eyJyb2xlcyI6WyJVc2VyLlJlYWQuQWxsIl19.s".into());
        assert_eq!(token.roles(), Some(vec!["User.Read.All".to_owned()]));
        assert_eq!(AccessToken("opaque".into()).roles(), None);
        assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
    }
}

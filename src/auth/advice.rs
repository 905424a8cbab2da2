//! Token-service errors as operator advice: the AADSTS codes of graph-protocol.md 1.2 (and the
//! certificate, clock and federation codes of issue 9) become what to do next. Server text is
//! escaped and capped (`http::server_text`) wherever it enters a message.

use serde::Deserialize;

use super::AuthError;
use crate::config::Credential;
use crate::http::server_text;

/// The error body of the token endpoint (graph-protocol.md 1.1). Everything but `error` is
/// optional because Microsoft changes these bodies.
#[derive(Deserialize, Default)]
pub(super) struct TokenErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u64>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// What a message may say about the request that failed.
pub(super) struct Context<'a> {
    pub client_id: &'a str,
    pub url: &'a str,
    pub credential: &'a Credential,
}

/// Transient token-endpoint failures: throttling, outages and the AADSTS codes that mean
/// "try again" (graph-protocol.md 1.2).
pub(super) fn is_transient(status: u16, error: &TokenErrorBody) -> bool {
    const RETRYABLE_CODES: [u64; 5] = [50000, 50033, 90006, 90033, 90055];
    status == 429
        || status >= 500
        || error.error == "temporarily_unavailable"
        || error
            .error_codes
            .iter()
            .any(|c| RETRYABLE_CODES.contains(c))
}

pub(super) fn rejected(status: u16, error: &TokenErrorBody, ctx: &Context<'_>) -> AuthError {
    let code = error.error_codes.first().copied();
    let advice = credential_advice(code, &error.error, ctx)
        .unwrap_or_else(|| advice_for(code, &error.error, ctx.client_id, ctx.url));
    let mut details = Vec::new();
    if let Some(code) = code {
        details.push(format!("AADSTS{code}"));
    }
    details.push(format!("HTTP {status}"));
    if !error.error.is_empty() {
        details.push(format!("error {}", server_text(&error.error)));
    }
    if let Some(id) = &error.trace_id {
        details.push(format!("trace id {}", server_text(id)));
    }
    if let Some(id) = &error.correlation_id {
        details.push(format!("correlation id {}", server_text(id)));
    }
    if let Some(ts) = &error.timestamp {
        details.push(format!("at {}", server_text(ts)));
    }
    AuthError::Rejected {
        status,
        code,
        error: server_text(&error.error),
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

pub(super) fn generic_advice(error: &TokenErrorBody) -> String {
    let first_line = error
        .error_description
        .as_deref()
        .and_then(|d| d.lines().next())
        .unwrap_or("no description");
    let codes: Vec<String> = error.error_codes.iter().map(|c| c.to_string()).collect();
    format!(
        "the token endpoint refused the request: error \"{}\", error_codes [{}]: {}; look \
         the code up at https://login.microsoftonline.com/error",
        server_text(&error.error),
        codes.join(", "),
        server_text(first_line)
    )
}

/// Advice that depends on the credential in use: certificates, federated tokens and the
/// clock. `None`: the general table applies.
fn credential_advice(code: Option<u64>, error: &str, ctx: &Context<'_>) -> Option<String> {
    let _ = error;
    match (code?, ctx.credential) {
        (700027 | 50012, Credential::Certificate(cert)) => Some(format!(
            "Entra does not accept the client assertion signed with the certificate whose SHA-1 \
             thumbprint is {} (as the Entra admin center shows it): the certificate is not \
             registered on application {}, or the key is not its own; upload this certificate \
             under App registrations > the app > Certificates & secrets > Certificates, or point \
             client_certificate_file at the one that is there",
            cert.thumbprint(),
            ctx.client_id
        )),
        (700024, Credential::FederatedToken(_)) => Some(
            "the federated token is outside its validity window: the identity provider has not \
             refreshed the token file, or this machine's clock is wrong (check it with \
             timedatectl; it should say \"System clock synchronized: yes\")"
                .to_owned(),
        ),
        (700024, _) => Some(
            "the client assertion is outside its validity window (nbf/exp): this machine's clock \
             is wrong; check it with timedatectl (it should say \"System clock synchronized: \
             yes\"; enable NTP with timedatectl set-ntp true)"
                .to_owned(),
        ),
        (70021 | 700211 | 700212 | 700213, Credential::FederatedToken(_)) => Some(format!(
            "no federated credential on application {} matches the token (its issuer, subject or \
             audience): add one under App registrations > the app > Certificates & secrets > \
             Federated credentials with the issuer and subject your identity provider puts in \
             the token and the audience api://AzureADTokenExchange",
            ctx.client_id
        )),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is fine in tests only
mod tests {
    use super::*;
    use crate::config::{Secret, SecretSource};

    fn secret() -> Credential {
        Credential::Secret {
            secret: Secret::new("x"),
            source: SecretSource::Env,
        }
    }

    fn rejected(status: u16, error: &TokenErrorBody, client_id: &str, url: &str) -> AuthError {
        let credential = secret();
        super::rejected(
            status,
            error,
            &Context {
                client_id,
                url,
                credential: &credential,
            },
        )
    }

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
    fn certificate_and_clock_refusals_are_explained() {
        let cert = crate::config::test_certificate();
        let thumbprint = cert.thumbprint();
        let credential = Credential::Certificate(Box::new(cert));
        let ctx = Context {
            client_id: "cid",
            url: "url",
            credential: &credential,
        };
        for code in [700027, 50012] {
            let e = body(&format!(
                r#"{{"error":"invalid_client","error_codes":[{code}]}}"#
            ));
            let msg = super::rejected(401, &e, &ctx).to_string();
            assert!(
                msg.contains(&format!(
                    "SHA-1 thumbprint is {thumbprint} (as the Entra admin center shows it)"
                )),
                "{msg}"
            );
            assert!(
                msg.contains("point client_certificate_file at the one that is there"),
                "{msg}"
            );
        }
        let e = body(r#"{"error":"invalid_client","error_codes":[700024]}"#);
        let msg = super::rejected(400, &e, &ctx).to_string();
        assert!(
            msg.contains("this machine's clock is wrong; check it with timedatectl"),
            "{msg}"
        );
        // With a secret, 700027 keeps the general advice (no thumbprint to name).
        let msg = rejected(
            401,
            &body(r#"{"error":"invalid_client","error_codes":[700027]}"#),
            "cid",
            "url",
        )
        .to_string();
        assert!(!msg.contains("thumbprint is"), "{msg}");
    }

    #[test]
    fn server_text_is_escaped_in_messages() {
        let e = body(
            r#"{"error":"invalid_request\n<3>forged","error_description":"AADSTS99999: bad\u001b[31m\r\nTrace ID: x","error_codes":[99999],"trace_id":"t\n<2>x"}"#,
        );
        let msg = rejected(400, &e, "cid", "url").to_string();
        assert!(!msg.contains('\n') && !msg.contains('\u{1b}'), "{msg}");
        assert!(msg.contains("invalid_request\\n<3>forged"), "{msg}");
        assert!(msg.contains("trace id t\\n<2>x"), "{msg}");
    }
}

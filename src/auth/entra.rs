//! The Entra token endpoint (graph-protocol.md 1.1, 1.3): client credentials with a client
//! secret, a signed client assertion, or a federated token as the assertion.

use std::time::Duration;

use super::advice::{self, Context, TokenErrorBody};
use super::{AccessToken, AuthError, parse_token_response};
use crate::config::Credential;
use crate::http::{self, Backoff, server_text};
use crate::shutdown::Shutdown;

/// Attempts at the token endpoint when it answers with a transient error.
const TOKEN_ATTEMPTS: u32 = 5;
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What proves the client's identity in one request.
pub(super) enum Grant<'a> {
    Secret(&'a str),
    /// A client assertion entra-sync signed.
    Assertion(&'a str),
    /// A client assertion another identity provider issued.
    Federated(&'a str),
}

pub(super) struct Request<'a> {
    pub agent: &'a ureq::Agent,
    pub token_url: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub credential: &'a Credential,
}

impl Request<'_> {
    /// POSTs the form, retrying transient failures; a refusal becomes advice.
    pub fn send(
        &self,
        grant: Grant<'_>,
        shutdown: &Shutdown,
    ) -> Result<(AccessToken, Duration), AuthError> {
        let mut form = vec![
            ("client_id", self.client_id),
            ("scope", self.scope),
            ("grant_type", "client_credentials"),
        ];
        match grant {
            Grant::Secret(secret) => form.push(("client_secret", secret)),
            Grant::Assertion(jwt) | Grant::Federated(jwt) => {
                form.push(("client_assertion_type", ASSERTION_TYPE));
                form.push(("client_assertion", jwt));
            }
        }
        let ctx = Context {
            client_id: self.client_id,
            url: self.token_url,
            credential: self.credential,
        };
        let mut backoff = Backoff::new();
        let mut last_detail = String::new();
        for attempt in 1..=TOKEN_ATTEMPTS {
            let request_id = http::new_request_id();
            log::debug!(
                "auth: POST {} client-request-id={request_id}",
                self.token_url
            );
            let result = self
                .agent
                .post(self.token_url)
                .header("client-request-id", &request_id)
                .header("Accept", "application/json")
                .send_form(form.iter().copied());
            let wait = match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = http::retry_after(response.headers());
                    let body = http::read_body(response).unwrap_or_default();
                    log::debug!("auth: {status} for client-request-id={request_id}");
                    if status == 200 {
                        return parse_token_response(&body).map_err(|why| AuthError::Rejected {
                            status,
                            code: None,
                            error: String::new(),
                            advice: "the token endpoint answered with something that is not a \
                                     token; check authority_host points at the Microsoft Entra \
                                     login host"
                                .into(),
                            details: format!("unreadable response: {why}"),
                        });
                    }
                    let error = serde_json::from_slice::<TokenErrorBody>(&body).unwrap_or_default();
                    if !advice::is_transient(status, &error) {
                        return Err(advice::rejected(status, &error, &ctx));
                    }
                    last_detail = format!("HTTP {status} {}", server_text(&error.error));
                    retry_after.unwrap_or_else(|| backoff.next_delay())
                }
                Err(e) => {
                    last_detail = server_text(&e.to_string());
                    backoff.next_delay()
                }
            };
            if attempt < TOKEN_ATTEMPTS {
                log::warn!(
                    "auth: token endpoint failed ({last_detail}), retrying in {:.1}s",
                    wait.as_secs_f64()
                );
                if shutdown.sleep(wait) {
                    return Err(AuthError::Stopped);
                }
            }
        }
        Err(AuthError::Unavailable {
            url: self.token_url.to_owned(),
            attempts: TOKEN_ATTEMPTS,
            detail: last_detail,
            hint: "check the network path (proxy settings HTTPS_PROXY/NO_PROXY) and \
                   https://status.cloud.microsoft",
        })
    }
}

//! The Graph client: one page request, its retries, and the mapping of statuses to errors.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{GraphError, Next, Page, Resource, parse_page};
use crate::auth::Auth;
use crate::config::Config;
use crate::http::{self, Backoff};
use crate::origin::Origin;
use crate::shutdown::Shutdown;

/// Attempts on one page request before the pass gives up (and keeps its resume link).
const MAX_ATTEMPTS: u32 = 10;

/// A Graph client for one endpoint and one set of credentials. Cheap to clone.
#[derive(Clone)]
pub struct Graph {
    agent: ureq::Agent,
    auth: Arc<Auth>,
    /// `None` when the endpoint has no origin (config refuses that): then every link is refused.
    origin: Option<Origin>,
    endpoint: String,
    shutdown: Shutdown,
}

impl Graph {
    pub fn new(
        agent: ureq::Agent,
        auth: Arc<Auth>,
        graph_endpoint: &str,
        shutdown: Shutdown,
    ) -> Graph {
        Graph {
            agent,
            auth,
            origin: Origin::parse(graph_endpoint).ok(),
            endpoint: graph_endpoint.trim_end_matches('/').to_owned(),
            shutdown,
        }
    }

    /// A client for `config`'s endpoints and credentials, with a fresh token cache. Sign-in and
    /// Graph get an agent each, so a loopback endpoint bypasses the proxy whichever the other is.
    pub fn connect(config: &Config, shutdown: &Shutdown) -> Graph {
        let entra = &config.entra;
        let auth_agent = http::agent(http::use_proxy_for(&entra.authority_host));
        let auth = Arc::new(Auth::new(auth_agent, entra, shutdown.clone()));
        let graph_agent = http::agent(http::use_proxy_for(&entra.graph_endpoint));
        Graph::new(graph_agent, auth, &entra.graph_endpoint, shutdown.clone())
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The app registration's own secrets and certificates with their end dates (1.5), for
    /// `check`. One request, no retries: it is optional and needs Application.Read.All.
    pub fn application_credentials(&self, app_id: &str) -> Result<super::AppCredentials, String> {
        let token = self.auth.token().map_err(|e| e.to_string())?;
        let url = format!(
            "{}/v1.0/applications(appId='{app_id}')?$select=id,appId,passwordCredentials,keyCredentials",
            self.endpoint
        );
        let response = self
            .agent
            .get(&url)
            .header("Authorization", token.bearer())
            .header("Accept", "application/json")
            .header("client-request-id", &http::new_request_id())
            .call()
            .map_err(|e| http::server_text(&e.to_string()))?;
        let status = response.status().as_u16();
        let body = http::read_body(response).map_err(|e| http::server_text(&e.to_string()))?;
        match status {
            200 => super::application::parse(&body).map(super::AppCredentials::Listed),
            403 => Ok(super::AppCredentials::NotPermitted),
            _ => Err(format!("HTTP {status} reading the application")),
        }
    }

    /// A missing permission reads differently for a managed identity (issue 9 §2).
    fn for_credential(&self, error: GraphError) -> GraphError {
        match error {
            GraphError::PermissionMissing {
                resource,
                path,
                code,
                permission,
            } if matches!(
                self.auth.credential(),
                crate::config::Credential::ManagedIdentity(_)
            ) =>
            {
                let object_id = self
                    .auth
                    .token()
                    .ok()
                    .and_then(|t| t.object_id())
                    .unwrap_or_else(|| "unknown".to_owned());
                GraphError::ManagedIdentityRoleMissing {
                    resource,
                    path,
                    code,
                    permission,
                    object_id,
                }
            }
            other => other,
        }
    }

    /// GETs one delta page, retrying transient failures, and parses it whole: a body that
    /// does not parse is never half-used.
    pub fn get_page(&self, resource: Resource, url: &str) -> Result<Page, GraphError> {
        self.check_origin(resource, url)?;
        let mut backoff = Backoff::new();
        let mut refreshed_token = false;
        let mut not_found = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.auth.token()?;
            let outcome = self.try_once(resource, url, &token);
            let wait = match outcome {
                Attempt::Page(page) => {
                    // A page whose link leaves the Graph origin is refused whole: applying it
                    // would store a link that the next request must not follow.
                    let (Next::More(link) | Next::Done(link)) = &page.next;
                    self.check_origin(resource, link)?;
                    return Ok(page);
                }
                Attempt::Fatal(error) => return Err(self.for_credential(error)),
                Attempt::Unauthorized { code, message } => {
                    if refreshed_token {
                        return Err(unauthorized(resource, code, message));
                    }
                    // Graph rejects an expired token with 401: get a new one and retry once.
                    log::info!("graph: {resource}: token refused ({code}), signing in again");
                    self.auth.invalidate(&token);
                    refreshed_token = true;
                    attempt -= 1;
                    continue;
                }
                Attempt::NotFound(last) => {
                    // 404 on a delta link is undocumented; retry a few times, then resync.
                    not_found += 1;
                    if not_found >= 3 {
                        return Err(GraphError::DeltaStateLost {
                            resource,
                            status: 404,
                            code: last,
                        });
                    }
                    (backoff.next_delay(), format!("HTTP 404 {last}"))
                }
                Attempt::Retry { after, last } => {
                    (after.unwrap_or_else(|| backoff.next_delay()), last)
                }
            };
            let (delay, last) = wait;
            if attempt >= MAX_ATTEMPTS {
                return Err(GraphError::Exhausted {
                    resource,
                    attempts: attempt,
                    last,
                });
            }
            log::warn!(
                "graph: {resource}: {last}, retrying in {:.1}s (attempt {attempt} of {MAX_ATTEMPTS})",
                delay.as_secs_f64()
            );
            if self.shutdown.sleep(delay) {
                return Err(GraphError::Stopped);
            }
        }
    }

    fn try_once(&self, resource: Resource, url: &str, token: &crate::auth::AccessToken) -> Attempt {
        let request_id = http::new_request_id();
        let mut request = self
            .agent
            .get(url)
            .header("Authorization", token.bearer())
            .header("Accept", "application/json")
            .header("client-request-id", &request_id);
        // Headers are not carried in links, so Prefer is sent on every page (3.3).
        request = request.header("Prefer", "return=minimal");
        let started = std::time::Instant::now();
        let response = match request.call() {
            Ok(response) => response,
            Err(e) => {
                return Attempt::Retry {
                    after: None,
                    last: format!("request failed: {}", http::server_text(&e.to_string())),
                };
            }
        };
        let status = response.status().as_u16();
        crate::counters::graph_response(resource.name(), status);
        let graph_request_id = header(response.headers(), "request-id");
        let retry_after = http::retry_after(response.headers());
        let body = http::read_body(response);
        log::debug!(
            "graph: GET {} -> {status} in {} ms, client-request-id={request_id} request-id={graph_request_id}",
            describe_link(url),
            started.elapsed().as_millis()
        );
        let body = match body {
            Ok(body) => body,
            // The same link would send the same oversized body again: not transient.
            Err(ureq::Error::BodyExceedsLimit(_)) if status == 200 => {
                return Attempt::Fatal(GraphError::UnusablePage {
                    resource,
                    detail: format!("a body over {} MiB", http::BODY_LIMIT >> 20),
                });
            }
            Err(e) => {
                return Attempt::Retry {
                    after: None,
                    last: format!(
                        "HTTP {status}, body unreadable: {}",
                        http::server_text(&e.to_string())
                    ),
                };
            }
        };
        if status == 200 {
            return match parse_page(resource, &body) {
                Ok(page) => Attempt::Page(page),
                Err(e) => Attempt::Fatal(GraphError::UnusablePage {
                    resource,
                    detail: http::server_text(&e),
                }),
            };
        }
        let error = GraphErrorBody::parse(&body);
        classify(resource, url, status, error, retry_after)
    }

    fn check_origin(&self, resource: Resource, url: &str) -> Result<(), GraphError> {
        let origin = Origin::parse(url);
        match (&origin, &self.origin) {
            (Ok(origin), Some(expected)) if origin == expected => Ok(()),
            _ => Err(GraphError::ForeignLink {
                resource,
                origin: match origin {
                    Ok(origin) => http::server_text(&origin.to_string()),
                    Err(why) => format!("an address that {why}"),
                },
                expected: self.endpoint.clone(),
            }),
        }
    }
}

enum Attempt {
    Page(Page),
    Fatal(GraphError),
    Unauthorized {
        code: String,
        message: String,
    },
    NotFound(String),
    Retry {
        after: Option<Duration>,
        last: String,
    },
}

fn classify(
    resource: Resource,
    url: &str,
    status: u16,
    error: GraphErrorBody,
    retry_after: Option<Duration>,
) -> Attempt {
    let code = error.code.clone();
    let lost_code = ["syncstatenotfound", "syncstateinvalid", "resyncrequired"]
        .contains(&code.to_ascii_lowercase().as_str())
        || error.message.to_ascii_lowercase().contains("steady state");
    match status {
        410 => Attempt::Fatal(GraphError::DeltaStateLost {
            resource,
            status,
            code,
        }),
        400 | 404 if lost_code => Attempt::Fatal(GraphError::DeltaStateLost {
            resource,
            status,
            code,
        }),
        401 => Attempt::Unauthorized {
            code,
            message: error.message,
        },
        403 => Attempt::Fatal(GraphError::PermissionMissing {
            resource,
            path: path_of(url),
            code,
            permission: resource.permission(),
        }),
        404 => Attempt::NotFound(code),
        429 | 500 | 502 | 503 | 504 => Attempt::Retry {
            after: retry_after,
            last: format!("HTTP {status} {code}").trim_end().to_owned(),
        },
        _ => Attempt::Fatal(GraphError::Refused {
            resource,
            status,
            path: path_of(url),
            code,
            message: error.message,
        }),
    }
}

fn unauthorized(resource: Resource, code: String, message: String) -> GraphError {
    let advice = if code.eq_ignore_ascii_case("Authorization_IdentityNotFound") {
        "the application has no usable service principal in this tenant: create the enterprise \
         application and grant admin consent"
    } else {
        "check entra.graph_endpoint belongs to the same cloud as entra.authority_host, and the \
         system clock"
    };
    GraphError::Unauthorized {
        resource,
        code,
        message,
        advice,
    }
}

/// Graph's error body (graph-protocol.md 4.1); every part optional.
#[derive(Default)]
struct GraphErrorBody {
    code: String,
    message: String,
}

impl GraphErrorBody {
    fn parse(body: &[u8]) -> GraphErrorBody {
        #[derive(Deserialize)]
        struct Outer {
            error: Option<Inner>,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(default)]
            code: Option<String>,
            #[serde(default)]
            message: Option<String>,
        }
        match serde_json::from_slice::<Outer>(body) {
            // Server text: escaped and capped here, before it can reach a log line or an error.
            Ok(Outer { error: Some(inner) }) => GraphErrorBody {
                code: http::server_text(&inner.code.unwrap_or_default()),
                message: http::server_text(&inner.message.unwrap_or_default()),
            },
            _ => GraphErrorBody::default(),
        }
    }
}

/// A response header for the logs, as [`http::server_text`].
fn header(headers: &ureq::http::HeaderMap, name: &str) -> String {
    http::server_text(
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )
}

/// The path of a link without its query: the query holds state tokens, which stay out of
/// messages. A link comes from the server, so the path is shown as [`http::server_text`].
fn path_of(url: &str) -> String {
    let without_query = url.split('?').next().unwrap_or(url);
    let path = match without_query.find("://") {
        Some(i) => {
            let rest = &without_query[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => without_query,
    };
    http::server_text(path)
}

/// A link for the logs: its path plus a short hash of the whole link, never the token.
pub fn describe_link(url: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    url.hash(&mut hasher);
    format!("{} #{:08x}", path_of(url), hasher.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_loss_is_recognised_in_every_documented_shape() {
        let body = |code: &str, message: &str| GraphErrorBody {
            code: code.into(),
            message: message.into(),
        };
        let lost = |status, b| {
            matches!(
                classify(Resource::Users, "u", status, b, None),
                Attempt::Fatal(GraphError::DeltaStateLost { .. })
            )
        };
        assert!(lost(410, body("", "")));
        assert!(lost(400, body("syncStateNotFound", "")));
        assert!(lost(400, body("SyncStateNotFound", "")));
        assert!(lost(404, body("resyncRequired", "")));
        assert!(lost(410, body("syncStateInvalid", "")));
        assert!(lost(
            400,
            body("BadRequest", "Sync must reach steady state within 30 days.")
        ));
        assert!(!lost(
            400,
            body("Request_BadRequest", "Could not find a property")
        ));
    }

    #[test]
    fn links_are_described_without_tokens() {
        let d =
            describe_link("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=SECRETSTATE");
        assert!(d.starts_with("/v1.0/users/delta #"), "{d}");
        assert!(!d.contains("SECRETSTATE"));
    }
}

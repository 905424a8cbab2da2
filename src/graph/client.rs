//! The Graph client: one page request, its retries, and the mapping of statuses to errors.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::pacer::{Pacer, Signals};
use super::{GraphError, ListPage, Next, Page, Resource, parse_list, parse_page};
use crate::auth::{AccessToken, Auth};
use crate::config::Config;
use crate::http::{self, Backoff};
use crate::origin::Origin;
use crate::shutdown::Shutdown;

/// Attempts on one request before the pass gives up (and keeps its resume link); 429s are
/// not counted.
const MAX_ATTEMPTS: u32 = 10;

/// A Graph client for one endpoint and one set of credentials. Cheap to clone.
#[derive(Clone)]
pub struct Graph {
    agent: ureq::Agent,
    pub(super) auth: Arc<Auth>,
    /// `None` when the endpoint has no origin (config refuses that): then every link is refused.
    origin: Option<Origin>,
    pub(super) endpoint: String,
    pub(super) shutdown: Shutdown,
    /// Shared by every clone: the quota is the application's, not one thread's.
    pub(super) pacer: Arc<Pacer>,
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
            pacer: Arc::new(Pacer::new()),
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
    pub(super) fn for_credential(&self, error: GraphError) -> GraphError {
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
        // Headers are not carried in links, so Prefer is sent on every page (3.3).
        let request = Request::Get {
            url,
            prefer_minimal: true,
        };
        self.retrying(resource, |token| {
            let body = self.fetch(resource, &request, token)?.body;
            let page = parse_page(resource, &body).map_err(|e| unusable(resource, &e))?;
            // A page whose link leaves the Graph origin is refused whole: applying it would
            // store a link that the next request must not follow.
            let (Next::More(link) | Next::Done(link)) = &page.next;
            self.check_origin(resource, link).map_err(Failure::Fatal)?;
            Ok(page)
        })
    }

    /// GETs one page of the plain `resource` list (`Resource::list_url`, or a nextLink of
    /// one), as [`Graph::get_page`] does a delta page. A 400 (a partition filter the tenant
    /// does not support) is an error whose `is_unsupported_query` is true.
    pub fn get_list(&self, resource: Resource, url: &str) -> Result<ListPage, GraphError> {
        self.check_origin(resource, url)?;
        let request = Request::Get {
            url,
            prefer_minimal: false,
        };
        self.retrying(resource, |token| {
            let body = match self.fetch(resource, &request, token) {
                // A list has no delta state to lose: a 404 is a refusal like any other.
                Err(Failure::NotFound(code)) => return Err(not_found(resource, url, code)),
                other => other?.body,
            };
            let page = parse_list(resource, &body).map_err(|e| unusable(resource, &e))?;
            if let Some(link) = &page.next {
                self.check_origin(resource, link).map_err(Failure::Fatal)?;
            }
            Ok(page)
        })
    }

    /// The resource units Graph reported charging (`x-ms-resource-unit`) for every request
    /// and batch item of this client and its clones so far.
    pub fn resource_units(&self) -> u64 {
        self.pacer.resource_units()
    }

    /// The one retry loop of every request (a page, a list page, a `$batch` envelope): waits
    /// for the pacer, gets a token, makes one attempt with `once`, and judges it (`Retry`).
    pub(super) fn retrying<T>(
        &self,
        resource: Resource,
        mut once: impl FnMut(&AccessToken) -> Result<T, Failure>,
    ) -> Result<T, GraphError> {
        let mut retry = Retry::new(resource);
        loop {
            if self.pacer.wait(&self.shutdown) {
                return Err(GraphError::Stopped);
            }
            let token = self.auth.token()?;
            match retry.judge(once(&token)) {
                Step::Done(result) => return result.map_err(|e| self.for_credential(e)),
                Step::Refresh(code) => {
                    log::info!("graph: {resource}: token refused ({code}), signing in again");
                    self.auth.invalidate(&token);
                }
                Step::Wait {
                    delay,
                    last,
                    attempt,
                } => {
                    let counted = match attempt {
                        Some(n) => format!("attempt {n} of {MAX_ATTEMPTS}"),
                        None => "throttled, not counted as an attempt".to_owned(),
                    };
                    log::warn!(
                        "graph: {resource}: {last}, retrying in {:.1}s ({counted})",
                        delay.as_secs_f64()
                    );
                    if self.shutdown.sleep(delay) {
                        return Err(GraphError::Stopped);
                    }
                }
            }
        }
    }

    /// One request whose answer must be 200: the response, or the failure its status means.
    pub(super) fn fetch(
        &self,
        resource: Resource,
        request: &Request,
        token: &AccessToken,
    ) -> Result<Exchanged, Failure> {
        let exchanged = self.exchange(resource, request, token)?;
        if exchanged.status == 200 {
            return Ok(exchanged);
        }
        let error = GraphErrorBody::parse(&exchanged.body);
        Err(classify(
            resource,
            request.url(),
            exchanged.status,
            error,
            exchanged.signals.retry_after,
        ))
    }

    /// Sends one request and reads its body (within `http::BODY_LIMIT`). The response is
    /// counted and shown to the pacer here, except a batch's 200, whose items the batch
    /// counts.
    fn exchange(
        &self,
        resource: Resource,
        request: &Request,
        token: &AccessToken,
    ) -> Result<Exchanged, Failure> {
        let request_id = http::new_request_id();
        let url = request.url();
        let started = std::time::Instant::now();
        let sent = match request {
            Request::Get { prefer_minimal, .. } => {
                let mut get = self
                    .agent
                    .get(url)
                    .header("Authorization", token.bearer())
                    .header("Accept", "application/json")
                    .header("client-request-id", &request_id);
                if *prefer_minimal {
                    get = get.header("Prefer", "return=minimal");
                }
                get.call()
            }
            Request::Batch { body, .. } => self
                .agent
                .post(url)
                .header("Authorization", token.bearer())
                .header("Accept", "application/json")
                .header("Content-Type", "application/json")
                .header("client-request-id", &request_id)
                .send(&body[..]),
        };
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                return Err(Failure::Retry {
                    after: None,
                    last: format!("request failed: {}", http::server_text(&e.to_string())),
                    throttled: false,
                });
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers();
        let signals = Signals::read(status, |name| {
            headers.get(name).and_then(|v| v.to_str().ok())
        });
        let graph_request_id = header(headers, "request-id");
        let is_batch = matches!(request, Request::Batch { .. });
        if !(is_batch && status == 200) {
            crate::counters::graph_response(resource.name(), status);
            self.pacer.observe(&[signals]);
        }
        // 5.1: a 503 is retried on a new connection. ureq puts a connection back in its pool
        // only once a body is read to its end, so the 503's body is left unread: the
        // connection closes, and the retry opens another.
        let body = if status == 503 {
            drop(response);
            Ok(Vec::new())
        } else {
            http::read_body(response)
        };
        log::debug!(
            "graph: {} {} -> {status} in {} ms, client-request-id={request_id} request-id={graph_request_id}",
            if is_batch { "POST" } else { "GET" },
            describe_link(url),
            started.elapsed().as_millis()
        );
        match body {
            Ok(body) => Ok(Exchanged {
                status,
                signals,
                body,
            }),
            // The same link would send the same oversized body again: not transient.
            Err(ureq::Error::BodyExceedsLimit(_)) if status == 200 => {
                Err(Failure::Fatal(GraphError::UnusablePage {
                    resource,
                    detail: format!("a body over {} MiB", http::BODY_LIMIT >> 20),
                }))
            }
            Err(e) => Err(Failure::Retry {
                after: None,
                last: format!(
                    "HTTP {status}, body unreadable: {}",
                    http::server_text(&e.to_string())
                ),
                throttled: false,
            }),
        }
    }

    pub(super) fn check_origin(&self, resource: Resource, url: &str) -> Result<(), GraphError> {
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

/// One request as `exchange` sends it.
pub(super) enum Request<'a> {
    Get { url: &'a str, prefer_minimal: bool },
    Batch { url: &'a str, body: Vec<u8> },
}

impl Request<'_> {
    fn url(&self) -> &str {
        match self {
            Request::Get { url, .. } | Request::Batch { url, .. } => url,
        }
    }
}

/// A response read whole.
pub(super) struct Exchanged {
    pub status: u16,
    pub signals: Signals,
    pub body: Vec<u8>,
}

/// Why one attempt did not give its result, as `classify` reads a status.
pub(super) enum Failure {
    /// Not worth retrying.
    Fatal(GraphError),
    /// 401: a new token may help, once.
    Unauthorized { code: String, message: String },
    /// 404 (its code): on a delta link retried a few times, then a lost delta state.
    NotFound(String),
    /// Transient: again after `after` (the server's `Retry-After`) or a backoff delay.
    /// `throttled` (429) never counts toward [`MAX_ATTEMPTS`].
    Retry {
        after: Option<Duration>,
        last: String,
        throttled: bool,
    },
}

/// What to do after one attempt.
pub(super) enum Step<T> {
    Done(Result<T, GraphError>),
    /// Drop the token that was refused and try again at once (not counted).
    Refresh(String),
    /// Try again after `delay`; `attempt` is the attempts counted so far, `None` for a 429.
    Wait {
        delay: Duration,
        last: String,
        attempt: Option<u32>,
    },
}

/// The retry policy of one request (graph-protocol.md 4.3, 4.6, 5.1): one token refresh on
/// 401, three 404s on a delta link mean its state is lost, `Retry-After` or exponential
/// backoff between attempts, at most [`MAX_ATTEMPTS`] counted attempts, and 429s retried
/// for as long as it takes (until the process stops): a throttling storm slows a pass down
/// but never fails it.
pub(super) struct Retry {
    resource: Resource,
    backoff: Backoff,
    refreshed_token: bool,
    not_found: u32,
    attempts: u32,
}

impl Retry {
    pub fn new(resource: Resource) -> Retry {
        Retry {
            resource,
            backoff: Backoff::new(),
            refreshed_token: false,
            not_found: 0,
            attempts: 0,
        }
    }

    pub fn judge<T>(&mut self, outcome: Result<T, Failure>) -> Step<T> {
        let resource = self.resource;
        let (delay, last) = match outcome {
            Ok(value) => return Step::Done(Ok(value)),
            Err(Failure::Fatal(error)) => return Step::Done(Err(error)),
            Err(Failure::Unauthorized { code, message }) => {
                if self.refreshed_token {
                    return Step::Done(Err(unauthorized(resource, code, message)));
                }
                // Graph rejects an expired token with 401: get a new one and retry once.
                self.refreshed_token = true;
                return Step::Refresh(code);
            }
            Err(Failure::Retry {
                after,
                last,
                throttled: true,
            }) => {
                let delay = after.unwrap_or_else(|| self.backoff.next_delay());
                return Step::Wait {
                    delay,
                    last,
                    attempt: None,
                };
            }
            Err(Failure::NotFound(last)) => {
                // 404 on a delta link is undocumented; retry a few times, then resync.
                self.not_found += 1;
                if self.not_found >= 3 {
                    return Step::Done(Err(GraphError::DeltaStateLost {
                        resource,
                        status: 404,
                        code: last,
                    }));
                }
                (self.backoff.next_delay(), format!("HTTP 404 {last}"))
            }
            Err(Failure::Retry { after, last, .. }) => {
                (after.unwrap_or_else(|| self.backoff.next_delay()), last)
            }
        };
        self.attempts += 1;
        if self.attempts >= MAX_ATTEMPTS {
            return Step::Done(Err(GraphError::Exhausted {
                resource,
                attempts: self.attempts,
                last,
            }));
        }
        Step::Wait {
            delay,
            last,
            attempt: Some(self.attempts),
        }
    }
}

/// A 200 whose body is not the page asked for: never retried (4.5 of the invariants).
pub(super) fn unusable(resource: Resource, detail: &str) -> Failure {
    Failure::Fatal(GraphError::UnusablePage {
        resource,
        detail: http::server_text(detail),
    })
}

/// A 404 where it cannot mean a lost delta state (a list).
pub(super) fn not_found(resource: Resource, url: &str, code: String) -> Failure {
    Failure::Fatal(GraphError::Refused {
        resource,
        status: 404,
        path: path_of(url),
        code,
        message: "not found".to_owned(),
    })
}

pub(super) fn classify(
    resource: Resource,
    url: &str,
    status: u16,
    error: GraphErrorBody,
    retry_after: Option<Duration>,
) -> Failure {
    let code = error.code.clone();
    let lost_code = ["syncstatenotfound", "syncstateinvalid", "resyncrequired"]
        .contains(&code.to_ascii_lowercase().as_str())
        || error.message.to_ascii_lowercase().contains("steady state");
    match status {
        410 => Failure::Fatal(GraphError::DeltaStateLost {
            resource,
            status,
            code,
        }),
        400 | 404 if lost_code => Failure::Fatal(GraphError::DeltaStateLost {
            resource,
            status,
            code,
        }),
        401 => Failure::Unauthorized {
            code,
            message: error.message,
        },
        403 => Failure::Fatal(GraphError::PermissionMissing {
            resource,
            path: path_of(url),
            code,
            permission: resource.permission(),
        }),
        404 => Failure::NotFound(code),
        429 | 500 | 502 | 503 | 504 => Failure::Retry {
            after: retry_after,
            last: format!("HTTP {status} {code}").trim_end().to_owned(),
            throttled: status == 429,
        },
        _ => Failure::Fatal(GraphError::Refused {
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
pub(super) struct GraphErrorBody {
    code: String,
    message: String,
}

impl GraphErrorBody {
    pub(super) fn parse(body: &[u8]) -> GraphErrorBody {
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
pub(super) fn path_of(url: &str) -> String {
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
                Failure::Fatal(GraphError::DeltaStateLost { .. })
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

    fn throttled() -> Failure {
        Failure::Retry {
            after: Some(Duration::from_millis(200)),
            last: "HTTP 429 TooManyRequests".into(),
            throttled: true,
        }
    }

    fn transient() -> Failure {
        Failure::Retry {
            after: None,
            last: "HTTP 503".into(),
            throttled: false,
        }
    }

    #[test]
    fn throttling_never_uses_up_the_attempts() {
        let mut retry = Retry::new(Resource::Users);
        // Any number of 429s, each after its own Retry-After, none counted.
        for _ in 0..100 {
            match retry.judge::<()>(Err(throttled())) {
                Step::Wait {
                    delay,
                    attempt: None,
                    ..
                } => assert_eq!(delay, Duration::from_millis(200)),
                _ => panic!("a 429 ended the request or was counted"),
            }
        }
        // One token refresh, not counted either.
        let unauthorized = || Failure::Unauthorized {
            code: "InvalidAuthenticationToken".into(),
            message: "expired".into(),
        };
        assert!(matches!(
            retry.judge::<()>(Err(unauthorized())),
            Step::Refresh(_)
        ));
        for n in 1..MAX_ATTEMPTS {
            assert!(matches!(
                retry.judge::<()>(Err(transient())),
                Step::Wait { attempt: Some(a), .. } if a == n
            ));
            // 429s in between still do not count.
            assert!(matches!(
                retry.judge::<()>(Err(throttled())),
                Step::Wait { attempt: None, .. }
            ));
        }
        match retry.judge::<()>(Err(transient())) {
            Step::Done(Err(GraphError::Exhausted { attempts, .. })) => {
                assert_eq!(attempts, MAX_ATTEMPTS)
            }
            _ => panic!("not exhausted after {MAX_ATTEMPTS} counted attempts"),
        }
        // A second 401 on the same request is final.
        let mut retry = Retry::new(Resource::Users);
        assert!(matches!(
            retry.judge::<()>(Err(unauthorized())),
            Step::Refresh(_)
        ));
        assert!(matches!(
            retry.judge::<()>(Err(unauthorized())),
            Step::Done(Err(GraphError::Unauthorized { .. }))
        ));
        assert!(matches!(retry.judge(Ok(7)), Step::Done(Ok(7))));
    }

    #[test]
    fn a_400_on_a_list_is_an_unsupported_query() {
        let body = GraphErrorBody {
            code: "Request_UnsupportedQuery".into(),
            message: "Unsupported Query.".into(),
        };
        match classify(
            Resource::Users,
            "https://g/v1.0/users?$filter=x",
            400,
            body,
            None,
        ) {
            Failure::Fatal(error) => {
                assert!(error.is_unsupported_query(), "{error}");
                assert!(!error.to_string().contains("filter"), "{error}");
            }
            _ => panic!("a 400 was not final"),
        }
        let lost = GraphErrorBody {
            code: "syncStateNotFound".into(),
            message: String::new(),
        };
        let Failure::Fatal(error) = classify(Resource::Users, "u", 400, lost, None) else {
            panic!("not final")
        };
        assert!(!error.is_unsupported_query());
    }

    #[test]
    fn links_are_described_without_tokens() {
        let d =
            describe_link("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=SECRETSTATE");
        assert!(d.starts_with("/v1.0/users/delta #"), "{d}");
        assert!(!d.contains("SECRETSTATE"));
    }
}

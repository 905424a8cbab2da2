//! Microsoft Graph over HTTP: delta pages for users and groups, typed, with retries.
//!
//! This module sends requests and maps statuses to [`GraphError`]s; it decides nothing
//! about the database (no SQL here). Links are followed exactly as received, and the bearer
//! token only ever goes to the configured Graph origin.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::auth::{Auth, AuthError};
use crate::config::Config;
use crate::http::{self, Backoff};
use crate::origin::Origin;
use crate::shutdown::Shutdown;

/// Attempts on one page request before the pass gives up (and keeps its resume link).
const MAX_ATTEMPTS: u32 = 10;

/// Properties tracked for users. Only selected properties are tracked by delta, and an
/// explicit list keeps pages small (graph-protocol.md 3.2).
pub const USER_SELECT: &str = "id,displayName,userPrincipalName,mail,givenName,surname,\
accountEnabled,userType,jobTitle,department";
/// Properties tracked for groups; `members` asks for `members@delta`.
pub const GROUP_SELECT: &str =
    "id,displayName,description,mail,mailEnabled,mailNickname,securityEnabled,groupTypes,members";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Users,
    Groups,
}

impl Resource {
    pub const ALL: [Resource; 2] = [Resource::Users, Resource::Groups];

    pub fn name(self) -> &'static str {
        match self {
            Resource::Users => "users",
            Resource::Groups => "groups",
        }
    }

    pub fn select(self) -> &'static str {
        match self {
            Resource::Users => USER_SELECT,
            Resource::Groups => GROUP_SELECT,
        }
    }

    /// The first request of a full round.
    pub fn initial_url(self, graph_endpoint: &str) -> String {
        format!(
            "{graph_endpoint}/v1.0/{}/delta?$select={}",
            self.name(),
            self.select()
        )
    }

    /// The application permissions that let this resource be read (graph-protocol.md 7).
    pub fn permission(self) -> &'static str {
        match self {
            Resource::Users => "User.Read.All",
            Resource::Groups => "GroupMember.Read.All (or Group.Read.All)",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One page of a delta round.
#[derive(Debug)]
pub struct Page {
    pub objects: Vec<DirectoryObject>,
    pub next: Next,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// `@odata.nextLink`: more pages follow in this round.
    More(String),
    /// `@odata.deltaLink`: the round is complete; the link starts the next one.
    Done(String),
}

/// A user or group as delta reports it. `props` holds only the properties present in the
/// payload: absent means unchanged, `null` means cleared (graph-protocol.md 3.6).
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryObject {
    pub id: String,
    pub removed: Option<Removal>,
    pub props: Map<String, Value>,
    /// `members@delta`, for groups: `None` means membership unchanged, never "no members".
    pub members: Option<Vec<MemberChange>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Soft delete: the object is in deleted items and may be restored.
    Soft,
    /// Permanent delete.
    Permanent,
}

impl Removal {
    pub fn as_str(self) -> &'static str {
        match self {
            Removal::Soft => "soft",
            Removal::Permanent => "permanent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChange {
    pub id: String,
    /// `user`, `group`, `device`, `servicePrincipal`, `orgContact` (the `@odata.type` without
    /// its `#microsoft.graph.` prefix).
    pub kind: String,
    pub removed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("graph: {resource} delta state was lost (HTTP {status}{}), a full pass is needed", code_suffix(.code))]
    DeltaStateLost {
        resource: Resource,
        status: u16,
        code: String,
    },
    #[error(
        "graph: {resource}: access denied (HTTP 403 {code}) on {path}: the application permission \
         {permission} needs admin consent; in the Entra admin center open App registrations > the \
         app > API permissions, add it as an Application permission (not Delegated) and click \
         \"Grant admin consent\""
    )]
    PermissionMissing {
        resource: Resource,
        path: String,
        code: String,
        permission: &'static str,
    },
    #[error("graph: {resource}: token refused (HTTP 401 {code}) twice: {message}; {advice}")]
    Unauthorized {
        resource: Resource,
        code: String,
        message: String,
        advice: &'static str,
    },
    #[error("graph: {resource}: HTTP {status} {code} on {path}: {message}")]
    Refused {
        resource: Resource,
        status: u16,
        path: String,
        code: String,
        message: String,
    },
    #[error(
        "graph: {resource}: gave up after {attempts} attempts, last: {last}; the pass keeps its \
         place and resumes on the next run"
    )]
    Exhausted {
        resource: Resource,
        attempts: u32,
        last: String,
    },
    #[error(
        "graph: {resource}: refused to follow a link to {origin}: links must stay on the \
         configured Graph endpoint {expected} so the access token is never sent elsewhere"
    )]
    ForeignLink {
        resource: Resource,
        origin: String,
        expected: String,
    },
    /// A 200 response whose body is not a usable delta page (not JSON, no `value`, a wrong
    /// type, past a limit). Not transient: asking again gets the same bytes, so it is not
    /// retried; the round stops and keeps its resume link.
    #[error(
        "graph: {resource}: Graph sent a page that cannot be used ({detail}); nothing of it \
         was applied, and the round stops here and resumes from the same link on the next pass"
    )]
    UnusablePage { resource: Resource, detail: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("graph: stopped")]
    Stopped,
}

fn code_suffix(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" {code}")
    }
}

impl GraphError {
    /// True when the error means "start a full round", not "the pass failed".
    pub fn is_delta_state_lost(&self) -> bool {
        matches!(self, GraphError::DeltaStateLost { .. })
    }

    /// True when Graph answered with a page that does not parse (never retried).
    pub fn is_unusable_page(&self) -> bool {
        matches!(self, GraphError::UnusablePage { .. })
    }
}

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
                Attempt::Fatal(error) => return Err(error),
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
            return match parse_page(&body) {
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

/// Parses a delta page. Exactly one of nextLink and deltaLink must be present.
pub fn parse_page(body: &[u8]) -> Result<Page, String> {
    #[derive(Deserialize)]
    struct RawPage {
        #[serde(rename = "@odata.nextLink")]
        next_link: Option<String>,
        #[serde(rename = "@odata.deltaLink")]
        delta_link: Option<String>,
        value: Option<Vec<DirectoryObject>>,
    }
    let raw: RawPage = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let objects = raw.value.ok_or("no \"value\" array")?;
    let next = match (raw.next_link, raw.delta_link) {
        (Some(next), None) => Next::More(next),
        (None, Some(delta)) => Next::Done(delta),
        (Some(_), Some(_)) => return Err("both a nextLink and a deltaLink".into()),
        (None, None) => return Err("neither a nextLink nor a deltaLink".into()),
    };
    Ok(Page { objects, next })
}

/// Reads an object straight into its typed parts, keeping absent and null apart and skipping
/// annotations other than `@removed` and `members@delta`.
impl<'de> Deserialize<'de> for DirectoryObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = DirectoryObject;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a directory object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DirectoryObject, A::Error> {
        let mut id = None;
        let mut removed = None;
        let mut props = Map::new();
        let mut members: Option<Vec<MemberChange>> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "id" => id = Some(map.next_value::<String>()?),
                "@removed" => removed = Some(map.next_value::<RemovedAnnotation>()?.into()),
                "members@delta" => {
                    let list = map
                        .next_value::<Option<Vec<MemberChange>>>()?
                        .unwrap_or_default();
                    members.get_or_insert_with(Vec::new).extend(list);
                }
                k if k.contains('@') => {
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    let value = map.next_value::<Value>()?;
                    props.insert(key.into_owned(), value);
                }
            }
        }
        let id = id.ok_or_else(|| de::Error::missing_field("id"))?;
        if id.is_empty() {
            return Err(de::Error::custom("empty id"));
        }
        Ok(DirectoryObject {
            id,
            removed,
            props,
            members,
        })
    }
}

#[derive(Deserialize)]
struct RemovedAnnotation {
    #[serde(default)]
    reason: Option<String>,
}

impl From<RemovedAnnotation> for Removal {
    fn from(r: RemovedAnnotation) -> Removal {
        // Only "deleted" is permanent. Anything else ("changed", or a reason Graph may add
        // later) is read as restorable: that keeps memberships, and a later "deleted" or a
        // full pass can still finish the job, whereas purging cannot be undone.
        match r.reason.as_deref() {
            Some(reason) if reason.eq_ignore_ascii_case("deleted") => Removal::Permanent,
            _ => Removal::Soft,
        }
    }
}

impl<'de> Deserialize<'de> for MemberChange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw<'a> {
            id: String,
            #[serde(rename = "@odata.type", borrow, default)]
            odata_type: Option<std::borrow::Cow<'a, str>>,
            #[serde(rename = "@removed", default)]
            removed: Option<IgnoredAny>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let kind = match raw.odata_type.as_deref() {
            Some(t) => t
                .trim_start_matches('#')
                .trim_start_matches("microsoft.graph.")
                .to_owned(),
            None => "unknown".to_owned(),
        };
        Ok(MemberChange {
            id: raw.id,
            kind,
            removed: raw.removed.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_keeps_absent_and_null_apart() {
        let page = parse_page(
            br#"{"@odata.context":"x","@odata.deltaLink":"https://g/v1.0/users/delta?$deltatoken=a",
            "value":[{"id":"u1","displayName":"Cy","mail":null,"manager@delta":[]},
                     {"id":"u2","@removed":{"reason":"changed"}},
                     {"id":"u3","@removed":{"reason":"deleted"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            page.next,
            Next::Done("https://g/v1.0/users/delta?$deltatoken=a".into())
        );
        let u1 = &page.objects[0];
        assert_eq!(u1.props.get("displayName"), Some(&Value::from("Cy")));
        assert_eq!(u1.props.get("mail"), Some(&Value::Null));
        assert!(!u1.props.contains_key("surname"));
        assert!(!u1.props.contains_key("manager@delta"));
        assert_eq!(page.objects[1].removed, Some(Removal::Soft));
        assert_eq!(page.objects[2].removed, Some(Removal::Permanent));
        // An unknown or missing reason is read as restorable, never as a purge.
        let page = parse_page(
            br#"{"@odata.nextLink":"n","value":[{"id":"u4","@removed":{}},
            {"id":"u5","@removed":{"reason":"archived"}}]}"#,
        )
        .unwrap();
        assert!(
            page.objects
                .iter()
                .all(|o| o.removed == Some(Removal::Soft))
        );
    }

    #[test]
    fn members_delta_is_typed() {
        let page = parse_page(
            br##"{"@odata.nextLink":"n","value":[{"id":"g1","displayName":"All",
            "members@delta":[{"@odata.type":"#microsoft.graph.user","id":"u1"},
            {"@odata.type":"#microsoft.graph.group","id":"g2"},
            {"@odata.type":"#microsoft.graph.user","id":"u9","@removed":{"reason":"deleted"}}]},
            {"id":"g3","displayName":"Empty"}]}"##,
        )
        .unwrap();
        let members = page.objects[0].members.as_ref().unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members[1].kind, "group");
        assert!(members[2].removed);
        assert_eq!(page.objects[1].members, None);
        assert_eq!(page.next, Next::More("n".into()));
    }

    #[test]
    fn broken_pages_are_rejected_whole() {
        assert!(parse_page(br#"{"value":[{"id":"u1"}]"#).is_err());
        assert!(parse_page(br#"{"value":[{"id":"u1"}]}"#).is_err());
        assert!(
            parse_page(br#"{"@odata.nextLink":"a","@odata.deltaLink":"b","value":[]}"#).is_err()
        );
        assert!(
            parse_page(br#"{"@odata.nextLink":"a","value":[{"displayName":"no id"}]}"#).is_err()
        );
        assert!(parse_page(br#"<html>gateway</html>"#).is_err());
    }

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

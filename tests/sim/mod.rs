//! A Microsoft Graph (users/groups delta) and Entra token-endpoint simulator.
//!
//! It behaves like the real services as described in the shared Graph protocol notes
//! (`graph-protocol.md`: token errors of 1.1/1.2, delta rounds of 3, errors of 4,
//! throttling of 5.1, the fidelity checklist of 8.2), not like any particular client.
//!
//! One `Sim` is an HTTP server on `127.0.0.1:<port>` that serves both the login host
//! (`POST /{tenant}/oauth2/v2.0/token`) and the Graph host (`GET /v1.0/users/delta`,
//! `GET /v1.0/groups/delta`). Several worker threads answer requests, so a users round and a
//! groups round can be paged at the same time; injected latency is slept outside every lock.
//!
//! Included with `#[path = "…/sim/mod.rs"] mod sim;` by the integration tests, the demo and
//! the benchmark, so everything here refers to its siblings through `self`/`super` only.

mod auth;
mod graph;
mod http;
mod identity;
mod page;
mod schema;
mod synthetic;
mod tenant;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use self::http::{Ctx, Incoming, Reply};
use self::schema::ObjectType;

// Including crates use only part of the API; unused re-exports there are expected.
#[allow(unused_imports)]
pub use self::identity::{ManagedIdentitySim, TestCertificate};
#[allow(unused_imports)]
pub use self::synthetic::XorShift;
#[allow(unused_imports)]
pub use self::tenant::{MemberKind, ObjectState, Tenant};

/// The simulated tenant's id.
pub const TENANT_ID: &str = "0c0c0c0c-1111-4222-8333-444444444444";
/// A verified domain of the tenant, also accepted as `{tenant}` in the token URL.
pub const TENANT_DOMAIN: &str = "contoso.example";
/// The only registered application (client) id.
pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
/// That application's client secret value.
pub const CLIENT_SECRET: &str = "Xy9~sim~secret~value";

/// Request-serving threads: enough for two paging chains, retries and token calls at once.
const WORKERS: usize = 8;
/// How often idle workers look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Which endpoint a request went to (and which requests a fault applies to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// The token endpoint.
    Token,
    /// `users/delta`.
    Users,
    /// `groups/delta`.
    Groups,
    /// The managed-identity endpoint (`GET /metadata/identity/oauth2/token`, IMDS or Arc).
    ManagedIdentity,
    /// As a fault target: the next request of any endpoint. As a recorded resource: a request
    /// to an unknown path.
    Any,
}

/// A misbehaviour injected into the next matching request (`Sim::push_fault`).
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status, optional `Retry-After` and error code (Graph-shaped body on
    /// Graph, AAD-shaped on the token endpoint; `""` = the usual code for the status). 429
    /// also gets the `x-ms-throttle-*` headers.
    Status {
        status: u16,
        retry_after: Option<String>,
        code: &'static str,
    },
    /// 410 with `Location` = the round's initial query with an empty `$deltatoken`, body code
    /// `resyncRequired`. Graph requests only.
    Gone,
    /// 400 `syncStateNotFound`. Graph requests only.
    SyncStateNotFound,
    /// 200 with a body that is not JSON.
    Malformed,
    /// Answer with this status and exactly this body (Graph's or AAD's content type): error
    /// messages and pages that no real tenant sends.
    Body { status: u16, body: Vec<u8> },
    /// 200 with the real JSON body cut in half (Content-Length matches what is sent). The page
    /// is built normally, so retrying the same link works.
    Truncated,
    /// The next successful Graph page's link (nextLink, or deltaLink on a last page) gets this
    /// `scheme://host:port` instead of the simulator's. Graph requests only.
    ForeignNextLink(String),
    /// Answer this one request only after sleeping this long.
    Delay(Duration),
}

impl Fault {
    fn graph_only(&self) -> bool {
        matches!(
            self,
            Fault::Gone | Fault::SyncStateNotFound | Fault::ForeignNextLink(_)
        )
    }
}

/// Forced token-endpoint failures (`Settings::token_error`), statuses per notes 1.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// AADSTS7000215, 401 `invalid_client`.
    WrongSecret,
    /// AADSTS7000222, 401 `invalid_client`.
    ExpiredSecret,
    /// AADSTS700016, 400 `unauthorized_client`.
    AppNotFound,
    /// AADSTS7000229, 401 `invalid_client`.
    NoServicePrincipal,
    /// AADSTS7000112, 400 `unauthorized_client`.
    AppDisabled,
    /// AADSTS90002, 400 `invalid_tenant`.
    TenantNotFound,
    /// AADSTS90038, 400 `invalid_request`.
    WrongCloud,
    /// AADSTS50033, 503 `temporarily_unavailable`.
    Unavailable,
}

/// The path form of issued links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkForm {
    /// `/v1.0/users/delta?…`
    Short,
    /// `/v1.0/users/microsoft.graph.delta()?…`
    Qualified,
    /// Rotates through `delta`, `microsoft.graph.delta()` and `microsoft.graph.delta`.
    Alternate,
}

/// Behaviour knobs; change them any time through `Sim::settings()`. Each request uses a
/// snapshot taken when it arrives.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Users per page (default 200).
    pub users_page_size: usize,
    /// Group objects per page, repeats of a split group included (default 200).
    pub groups_page_size: usize,
    /// `members@delta` entries per page across all groups on it (default 500).
    pub links_page_size: usize,
    /// Slept before answering every Graph request (default 0; not for tokens).
    pub page_latency: Duration,
    /// `Some(n)`: every n-th object of a round is repeated (properties only) on a later page.
    pub duplicate_every: Option<usize>,
    /// `Some(n)`: after every n pages of a round comes an empty page with a nextLink.
    pub empty_page_every: Option<usize>,
    /// About one page in three is cut short at a random size.
    pub short_pages: bool,
    /// `expires_in` of issued tokens, also when they stop working (default 3599).
    pub token_lifetime_secs: u64,
    /// New tokens carry `User.Read.All` (default true); without it users/delta answers 403.
    pub consent_users: bool,
    /// New tokens carry `GroupMember.Read.All` (default true); without it groups/delta 403.
    pub consent_groups: bool,
    /// Makes the token endpoint fail this way whatever the request.
    pub token_error: Option<TokenError>,
    /// Path form of issued links (default `Short`).
    pub link_form: LinkForm,
    /// Default true: a link stops working (400 `syncStateNotFound`) once a link issued from
    /// it has been used; until then it may be retried. See `graph.rs` for the reasoning.
    pub single_use_tokens: bool,
    /// Age after which nextLinks and deltaLinks answer `syncStateNotFound` (default 7 days).
    pub delta_token_ttl: Duration,
    /// Initial rounds also list soft-deleted and purged objects as `@removed` (default false).
    pub initial_removed_objects: bool,
    /// Initial groups rounds also list removed memberships as `@removed` member entries
    /// (stale links, notes 3.8; default false).
    pub stale_member_removals: bool,
    /// Certificates (DER) registered on the application: client assertions signed by their
    /// keys are accepted (notes 1.3; default none).
    pub certificates: Vec<Vec<u8>>,
    /// Assertion algorithms accepted (default PS256 and RS256).
    pub assertion_algs: Vec<&'static str>,
    /// Federated tokens accepted as client assertions (default none).
    pub federated_tokens: Vec<String>,
    /// The machine's managed identity; `None` (default): IMDS answers "Identity not found".
    pub managed_identity: Option<ManagedIdentitySim>,
    /// The body of `GET /v1.0/applications(appId='…')` (notes 1.5) when the app holds
    /// Application.Read.All; `None` (default): 403 Authorization_RequestDenied.
    pub application: Option<serde_json::Value>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            users_page_size: 200,
            groups_page_size: 200,
            links_page_size: 500,
            page_latency: Duration::ZERO,
            duplicate_every: None,
            empty_page_every: None,
            short_pages: false,
            token_lifetime_secs: 3599,
            consent_users: true,
            consent_groups: true,
            token_error: None,
            link_form: LinkForm::Short,
            single_use_tokens: true,
            delta_token_ttl: Duration::from_secs(7 * 24 * 3600),
            initial_removed_objects: false,
            stale_member_removals: false,
            certificates: Vec::new(),
            assertion_algs: vec!["PS256", "RS256"],
            federated_tokens: Vec::new(),
            managed_identity: None,
            application: None,
        }
    }
}

/// One request as received, with the status it was answered with.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// The request target as sent (`/v1.0/users/delta?$select=…`).
    pub path_and_query: String,
    /// Which endpoint it went to.
    pub resource: Resource,
    /// Request headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The form body of token requests; empty for Graph requests.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

impl Recorded {
    /// First value of request header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Faults {
    queue: VecDeque<(Resource, Fault)>,
    /// Taken `ForeignNextLink` faults waiting for a successful page of that resource.
    foreign: Vec<(Resource, String)>,
}

/// State shared by the `Sim` handle and the worker threads. Each lock is held only briefly
/// and never together with another, so there is no lock order to get wrong.
struct Shared {
    base: String,
    server: tiny_http::Server,
    stop: AtomicBool,
    tenant: Mutex<Tenant>,
    settings: Mutex<Settings>,
    faults: Mutex<Faults>,
    links: Mutex<graph::LinkStore>,
    tokens: Mutex<auth::TokenStore>,
    log: Mutex<Vec<Recorded>>,
    serving_nanos: AtomicU64,
}

/// Locks `mutex`, ignoring poisoning: a panicking test thread must not take the server down.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn tenant(&self) -> MutexGuard<'_, Tenant> {
        lock(&self.tenant)
    }

    fn links(&self) -> MutexGuard<'_, graph::LinkStore> {
        lock(&self.links)
    }

    fn tokens(&self) -> MutexGuard<'_, auth::TokenStore> {
        lock(&self.tokens)
    }

    /// The first queued fault that applies to a request for `resource`, removed from the queue.
    fn take_fault(&self, resource: Resource) -> Option<Fault> {
        if resource == Resource::Any {
            return None;
        }
        let graph = !matches!(resource, Resource::Token | Resource::ManagedIdentity);
        let mut faults = lock(&self.faults);
        let position = faults.queue.iter().position(|(target, fault)| {
            (*target == resource || *target == Resource::Any) && (graph || !fault.graph_only())
        })?;
        let (_, fault) = faults.queue.remove(position)?;
        if let Fault::ForeignNextLink(base) = &fault {
            faults.foreign.push((resource, base.clone()));
        }
        Some(fault)
    }

    /// A pending foreign base for the next successful page of `ty`, consumed.
    fn take_foreign_base(&self, ty: ObjectType) -> Option<String> {
        let resource = resource_of(ty);
        let mut faults = lock(&self.faults);
        let position = faults.foreign.iter().position(|(r, _)| *r == resource)?;
        let (_, base) = faults.foreign.remove(position);
        Some(base.trim_end_matches('/').to_string())
    }
}

fn resource_of(ty: ObjectType) -> Resource {
    match ty {
        ObjectType::User => Resource::Users,
        ObjectType::Group => Resource::Groups,
    }
}

/// The simulator: an HTTP server on `127.0.0.1:0`; dropping it stops and joins its threads.
pub struct Sim {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Sim {
    /// Starts a simulator with an empty tenant.
    pub fn start() -> Sim {
        Sim::start_with(Tenant::new())
    }

    /// Starts a simulator serving `tenant` (e.g. `Tenant::synthetic(…)`).
    pub fn start_with(tenant: Tenant) -> Sim {
        // TCP_NODELAY, inherited by accepted sockets on Linux: tiny_http writes a response's
        // head and body separately, and Nagle's algorithm against the client's delayed ACK
        // would add ~40 ms to every page, which no real Graph front end does.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("sim: bind 127.0.0.1:0");
        nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::TcpNoDelay, &true)
            .expect("sim: TCP_NODELAY");
        let server = tiny_http::Server::from_listener(listener, None).expect("sim: listen");
        let port = server
            .server_addr()
            .to_ip()
            .map(|addr| addr.port())
            .expect("sim: a TCP listener");
        let shared = Arc::new(Shared {
            base: format!("http://127.0.0.1:{port}"),
            server,
            stop: AtomicBool::new(false),
            tenant: Mutex::new(tenant),
            settings: Mutex::new(Settings::default()),
            faults: Mutex::default(),
            links: Mutex::default(),
            tokens: Mutex::default(),
            log: Mutex::default(),
            serving_nanos: AtomicU64::new(0),
        });
        let workers = (0..WORKERS)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("sim-worker-{i}"))
                    .spawn(move || work(&shared))
                    .expect("sim: spawn worker")
            })
            .collect();
        Sim { shared, workers }
    }

    /// `http://127.0.0.1:PORT`: both the login host and the Graph host.
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    /// The token endpoint URL for `TENANT_ID`.
    pub fn token_url(&self) -> String {
        format!("{}/{TENANT_ID}/oauth2/v2.0/token", self.shared.base)
    }

    /// The tenant, to inspect or mutate between (or during) rounds.
    pub fn tenant(&self) -> MutexGuard<'_, Tenant> {
        self.shared.tenant()
    }

    /// The behaviour knobs.
    pub fn settings(&self) -> MutexGuard<'_, Settings> {
        lock(&self.shared.settings)
    }

    /// Queues a fault for the next request to `resource` (`Any`: to any endpoint), FIFO.
    pub fn push_fault(&self, resource: Resource, fault: Fault) {
        lock(&self.shared.faults).queue.push_back((resource, fault));
    }

    /// Faults queued and not yet consumed.
    pub fn pending_faults(&self) -> usize {
        lock(&self.shared.faults).queue.len()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.log).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Total time spent building responses, injected latency excluded.
    pub fn serving_time(&self) -> Duration {
        Duration::from_nanos(self.shared.serving_nanos.load(Ordering::Relaxed))
    }

    /// Invalidates every access token issued so far: Graph answers 401
    /// `InvalidAuthenticationToken` ("expired") with `WWW-Authenticate`.
    pub fn expire_tokens(&self) {
        self.shared.tokens().expire_all();
    }

    /// Invalidates every nextLink/deltaLink token issued so far: 400 `syncStateNotFound`.
    pub fn expire_delta_tokens(&self) {
        self.shared.links().expire_all();
    }

    /// A valid access token with the current consent settings, without an HTTP request.
    pub fn issue_token(&self) -> String {
        let settings = self.settings().clone();
        let roles = auth::Roles {
            users: settings.consent_users,
            groups: settings.consent_groups,
        };
        self.shared
            .tokens()
            .issue(roles, settings.token_lifetime_secs)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for worker in self.workers.drain(..) {
            // A worker that panicked has nothing left to clean up.
            let _ = worker.join();
        }
    }
}

fn work(shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        // Errors are broken connections: nothing to answer.
        if let Ok(Some(request)) = shared.server.recv_timeout(POLL) {
            serve(shared, request);
        }
    }
}

/// Answers one request and records it.
fn serve(shared: &Shared, mut request: tiny_http::Request) {
    let at = Instant::now();
    let incoming = Incoming::read(&mut request);
    let resource = classify(&incoming.path);
    let settings = lock(&shared.settings).clone();
    let ctx = Ctx::new(&incoming);
    let fault = shared.take_fault(resource);
    let mut pause = match (&fault, resource) {
        (Some(Fault::Delay(delay)), _) => *delay,
        _ => Duration::ZERO,
    };
    if matches!(resource, Resource::Users | Resource::Groups) {
        pause += settings.page_latency;
    }
    let reply = route(shared, &incoming, &ctx, resource, fault.as_ref(), &settings);
    let elapsed = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
    shared.serving_nanos.fetch_add(elapsed, Ordering::Relaxed);
    if !pause.is_zero() {
        std::thread::sleep(pause);
    }
    let body = if resource == Resource::Token {
        incoming.body
    } else {
        String::new()
    };
    lock(&shared.log).push(Recorded {
        method: incoming.method,
        path_and_query: incoming.path_and_query,
        resource,
        headers: incoming.headers,
        body,
        at,
        status: reply.status,
    });
    // The client may have given up (timeout): nothing to do about a failed write.
    let _ = request.respond(reply.into_response());
}

/// Which endpoint a path belongs to.
fn classify(path: &str) -> Resource {
    let lower = path.to_ascii_lowercase();
    let lower = lower.trim_end_matches('/');
    if lower.ends_with("/oauth2/v2.0/token") && lower.matches('/').count() == 4 {
        return Resource::Token;
    }
    if lower == "/metadata/identity/oauth2/token" {
        return Resource::ManagedIdentity;
    }
    let Some(rest) = lower.strip_prefix("/v1.0/") else {
        return Resource::Any;
    };
    let Some((collection, function)) = rest.split_once('/') else {
        return Resource::Any;
    };
    if !matches!(
        function,
        "delta" | "delta()" | "microsoft.graph.delta" | "microsoft.graph.delta()"
    ) {
        return Resource::Any;
    }
    match collection {
        "users" => Resource::Users,
        "groups" => Resource::Groups,
        _ => Resource::Any,
    }
}

/// Applies a status/body fault or hands the request to its endpoint.
fn route(
    shared: &Shared,
    incoming: &Incoming,
    ctx: &Ctx,
    resource: Resource,
    fault: Option<&Fault>,
    settings: &Settings,
) -> Reply {
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
            code,
        }) => {
            return status_fault(ctx, resource, *status, retry_after.as_deref(), code);
        }
        Some(Fault::Body { status, body }) => {
            return match resource {
                Resource::Token => Reply::new(*status, http::AAD_CONTENT_TYPE, body.clone()),
                _ => Reply::graph(ctx, *status, body.clone()),
            };
        }
        Some(Fault::Malformed) => {
            let body =
                b"<html><head><title>Service Unavailable</title></head><body>reset</body></html>";
            return match resource {
                Resource::Token => Reply::new(200, http::AAD_CONTENT_TYPE, body.to_vec()),
                _ => Reply::graph(ctx, 200, body.to_vec()),
            };
        }
        _ => {}
    }
    let mut reply = match resource {
        Resource::Token => auth::serve(&mut shared.tokens(), incoming, ctx, settings, &shared.base),
        Resource::ManagedIdentity => {
            identity::serve_managed_identity(&mut shared.tokens(), incoming, ctx, settings)
        }
        Resource::Users => graph::serve(shared, incoming, ctx, ObjectType::User, fault, settings),
        Resource::Groups => graph::serve(shared, incoming, ctx, ObjectType::Group, fault, settings),
        Resource::Any if incoming.path.starts_with("/v1.0/applications(") => {
            identity::serve_application(&shared.tokens(), incoming, ctx, settings)
        }
        Resource::Any => not_found(ctx, incoming),
    };
    if matches!(fault, Some(Fault::Truncated)) && reply.status == 200 {
        reply.truncate();
    }
    reply
}

fn not_found(ctx: &Ctx, incoming: &Incoming) -> Reply {
    let segment = incoming
        .path
        .trim_matches('/')
        .split('/')
        .nth(1)
        .unwrap_or_default();
    let message = format!("Resource not found for the segment '{segment}'.");
    Reply::graph_error(ctx, 404, "Request_ResourceNotFound", &message)
}

/// An injected status: Graph error body (with throttling headers for 429) or AAD error body.
/// An empty `code` gets the code the service usually sends with that status.
fn status_fault(
    ctx: &Ctx,
    resource: Resource,
    status: u16,
    retry_after: Option<&str>,
    code: &'static str,
) -> Reply {
    let mut reply = if resource == Resource::Token {
        auth::aad_error(ctx, &token_status_error(status, code))
    } else {
        let code = if code.is_empty() {
            default_graph_code(status)
        } else {
            code
        };
        match status {
            429 => throttled(ctx, code),
            401 => Reply::graph_error(ctx, status, code, status_message(status))
                .with("WWW-Authenticate", "Bearer realm=\"\""),
            _ => Reply::graph_error(ctx, status, code, status_message(status)),
        }
    };
    if let Some(retry_after) = retry_after {
        reply = reply.with("Retry-After", retry_after);
    }
    reply
}

fn token_status_error(status: u16, code: &'static str) -> auth::AadError {
    let (aadsts, text) = match status {
        429 => (
            90055,
            "The tenant is being throttled. Please try again later.",
        ),
        400..=499 => (900144, "The request is not valid."),
        _ => (
            50000,
            "There was an error issuing a token or an issue with our sign-in service.",
        ),
    };
    let error = match (code, status) {
        ("", 400..=428 | 430..=499) => "invalid_request",
        ("", _) => "temporarily_unavailable",
        (code, _) => code,
    };
    auth::AadError {
        status,
        error,
        code: aadsts,
        text: text.to_string(),
    }
}

fn default_graph_code(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "InvalidAuthenticationToken",
        403 => "Authorization_RequestDenied",
        404 => "Request_ResourceNotFound",
        429 => "TooManyRequests",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "UnknownError",
    }
}

/// The documented 429 body (notes 5.1) and throttle headers (notes 5.2).
fn throttled(ctx: &Ctx, code: &str) -> Reply {
    let body = json!({"error": {
        "code": code,
        "message": "Please retry again later.",
        "innerError": {
            "code": "429",
            "date": http::graph_date(),
            "message": "Please retry after",
            "request-id": ctx.request_id,
            "client-request-id": ctx.client_request_id,
            "status": "429",
        }
    }});
    Reply::graph(ctx, 429, body.to_string().into_bytes())
        .with(
            "x-ms-throttle-scope",
            format!("Tenant_Application/Read/{CLIENT_ID}/{TENANT_ID}"),
        )
        .with("x-ms-throttle-information", "ResourceUnitLimitExceeded")
        .with("x-ms-throttle-limit-percentage", "1.2")
        .with("x-ms-resource-unit", "1")
}

fn status_message(status: u16) -> &'static str {
    match status {
        400 => "The request is not valid.",
        401 => "Access token validation failure.",
        403 => "Insufficient privileges to complete the operation.",
        404 => "Resource not found.",
        500 => "An internal server error occurred. Please retry later.",
        502 => "Bad Gateway.",
        503 => "The service is temporarily unavailable. Please retry later.",
        504 => "The gateway timed out waiting for the backend service.",
        _ => "The request failed.",
    }
}

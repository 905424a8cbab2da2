//! A Microsoft Graph (users/groups delta) and Entra token-endpoint simulator.
//!
//! It behaves like the real services as described in the shared Graph protocol notes
//! (`graph-protocol.md`: token errors of 1.1/1.2, delta rounds of 3, errors of 4,
//! throttling of 5.1, the fidelity checklist of 8.2), not like any particular client.
//!
//! One `Sim` is an HTTP server on `127.0.0.1:<port>` that serves both the login host
//! (`POST /{tenant}/oauth2/v2.0/token`) and the Graph host (`GET /v1.0/users/delta`,
//! `GET /v1.0/groups/delta`, the plain lists `GET /v1.0/users`, `/v1.0/groups` and
//! `/v1.0/groups/{id}/members`, and `POST /v1.0/$batch`; notes 3.11). Several worker threads
//! answer requests, so many chains and listings can be paged at the same time; injected
//! latency is slept outside every lock. An optional resource-unit budget (notes 5.2) throttles
//! Graph requests with 429 once it is spent.
//!
//! Included with `#[path = "…/sim/mod.rs"] mod sim;` by the integration tests, the demo and
//! the benchmark, so everything here refers to its siblings through `self`/`super` only.

mod auth;
mod batch;
mod graph;
mod http;
mod identity;
mod list;
mod page;
mod quota;
mod schema;
mod synthetic;
mod tenant;

use std::collections::{HashMap, VecDeque};
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

/// Request-serving threads: enough for 16 parallel client connections (the fast initial sync
/// of notes 3.11 uses 16) plus two delta chains, retries and token calls at once. Each worker
/// sleeps the injected latency itself, so this bounds how many requests are served at once.
const WORKERS: usize = 24;
/// How often idle workers look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Which endpoint a request went to (and which requests a fault applies to). Coarse: the
/// endpoints added later (lists, members, `$batch`) are told apart by `Endpoint` only, because
/// code including the simulator matches this enum exhaustively.
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

/// Which endpoint a request went to, one variant per endpoint (`Recorded::endpoint`,
/// `Counters::requests`, and a `push_fault` target).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// The token endpoint.
    Token,
    /// The managed-identity endpoint.
    ManagedIdentity,
    /// `GET /v1.0/users/delta` (any spelling of the function).
    UsersDelta,
    /// `GET /v1.0/groups/delta`.
    GroupsDelta,
    /// `GET /v1.0/users` (plain list).
    UserList,
    /// `GET /v1.0/groups` (plain list).
    GroupList,
    /// `GET /v1.0/groups/{id}/members`.
    Members,
    /// `POST /v1.0/$batch` (the envelope; its items are recorded under their own endpoints).
    Batch,
    /// `GET /v1.0/applications(appId='…')`.
    Application,
    /// Any other path (answered 404).
    Unknown,
}

impl Endpoint {
    /// The coarse `Resource` of this endpoint (`Any` for the ones `Resource` has no variant for).
    pub fn resource(self) -> Resource {
        match self {
            Endpoint::Token => Resource::Token,
            Endpoint::ManagedIdentity => Resource::ManagedIdentity,
            Endpoint::UsersDelta => Resource::Users,
            Endpoint::GroupsDelta => Resource::Groups,
            _ => Resource::Any,
        }
    }

    /// Served on the Graph host (error bodies, common headers, RU accounting).
    fn is_graph(self) -> bool {
        !matches!(self, Endpoint::Token | Endpoint::ManagedIdentity)
    }

    fn is_delta(self) -> bool {
        matches!(self, Endpoint::UsersDelta | Endpoint::GroupsDelta)
    }

    /// Endpoints whose responses carry paging links.
    fn has_links(self) -> bool {
        matches!(
            self,
            Endpoint::UsersDelta
                | Endpoint::GroupsDelta
                | Endpoint::UserList
                | Endpoint::GroupList
                | Endpoint::Members
        )
    }
}

/// What a queued fault applies to: a `Resource` (`Any` = every endpoint) or one `Endpoint`.
/// `Sim::push_fault` takes either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Requests whose `Endpoint::resource()` is this (`Any`: every endpoint).
    Resource(Resource),
    /// Requests to exactly this endpoint.
    Endpoint(Endpoint),
}

impl From<Resource> for Target {
    fn from(resource: Resource) -> Target {
        Target::Resource(resource)
    }
}

impl From<Endpoint> for Target {
    fn from(endpoint: Endpoint) -> Target {
        Target::Endpoint(endpoint)
    }
}

impl Target {
    fn matches(self, endpoint: Endpoint) -> bool {
        match self {
            Target::Resource(Resource::Any) => true,
            Target::Resource(resource) => endpoint.resource() == resource,
            Target::Endpoint(target) => target == endpoint,
        }
    }
}

/// Counters a benchmark can print (`Sim::counters`).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Resource units charged, throttled requests included (1 each).
    pub ru_spent: u64,
    /// 429 answers to top-level requests (RU budget or injected).
    pub throttled: u64,
    /// 429 answers to `$batch` items.
    pub throttled_in_batch: u64,
    /// Requests per endpoint, `$batch` items counted under their own endpoint.
    pub requests: HashMap<Endpoint, u64>,
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
    /// Whether this fault can be applied to a request for `endpoint` (delta-state faults only
    /// to delta requests, link faults only where there are links).
    fn applies_to(&self, endpoint: Endpoint) -> bool {
        match self {
            Fault::Gone | Fault::SyncStateNotFound => endpoint.is_delta(),
            Fault::ForeignNextLink(_) => endpoint.has_links(),
            _ => true,
        }
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
    /// Any `$filter` on `GET /users` / `GET /groups` answers 400 `Request_UnsupportedQuery`,
    /// as a tenant or service that does not support partition filters (notes 3.11; default
    /// false).
    pub refuse_partition_filter: bool,
    /// Read quota of the application + tenant pair (notes 5.2): `(RU, window)`, a token bucket
    /// holding at most RU and refilled continuously at RU/window. `None` (default): unlimited.
    pub ru_quota: Option<(u32, Duration)>,
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
            refuse_partition_filter: false,
            ru_quota: None,
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
    /// Which endpoint it went to (coarse).
    pub resource: Resource,
    /// Which endpoint it went to.
    pub endpoint: Endpoint,
    /// A `$batch` item (method, target and headers are the item's, `at` the envelope's).
    pub in_batch: bool,
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
    queue: VecDeque<(Target, Fault)>,
    /// Taken `ForeignNextLink` faults waiting for a successful page of that endpoint.
    foreign: Vec<(Endpoint, String)>,
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
    list_links: Mutex<list::ListLinks>,
    tokens: Mutex<auth::TokenStore>,
    bucket: Mutex<quota::Bucket>,
    counters: Mutex<Counters>,
    log: Mutex<Vec<Recorded>>,
    serving_nanos: AtomicU64,
    batches: AtomicU64,
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

    /// The first queued fault that applies to a request for `endpoint`, removed from the queue.
    fn take_fault(&self, endpoint: Endpoint) -> Option<Fault> {
        // Unknown paths and the application endpoint never took faults.
        if matches!(endpoint, Endpoint::Unknown | Endpoint::Application) {
            return None;
        }
        let mut faults = lock(&self.faults);
        let position = faults
            .queue
            .iter()
            .position(|(target, fault)| target.matches(endpoint) && fault.applies_to(endpoint))?;
        let (_, fault) = faults.queue.remove(position)?;
        if let Fault::ForeignNextLink(base) = &fault {
            faults.foreign.push((endpoint, base.clone()));
        }
        Some(fault)
    }

    /// A pending foreign base for the next successful page of `endpoint`, consumed.
    fn take_foreign_base(&self, endpoint: Endpoint) -> Option<String> {
        let mut faults = lock(&self.faults);
        let position = faults.foreign.iter().position(|(e, _)| *e == endpoint)?;
        let (_, base) = faults.foreign.remove(position);
        Some(base.trim_end_matches('/').to_string())
    }

    fn record(
        &self,
        incoming: &Incoming,
        endpoint: Endpoint,
        at: Instant,
        status: u16,
        in_batch: bool,
    ) {
        let body = if endpoint == Endpoint::Token {
            incoming.body.clone()
        } else {
            String::new()
        };
        lock(&self.log).push(Recorded {
            method: incoming.method.clone(),
            path_and_query: incoming.path_and_query.clone(),
            resource: endpoint.resource(),
            endpoint,
            in_batch,
            headers: incoming.headers.clone(),
            body,
            at,
            status,
        });
    }
}

fn delta_endpoint(ty: ObjectType) -> Endpoint {
    match ty {
        ObjectType::User => Endpoint::UsersDelta,
        ObjectType::Group => Endpoint::GroupsDelta,
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
            list_links: Mutex::default(),
            tokens: Mutex::default(),
            bucket: Mutex::default(),
            counters: Mutex::default(),
            log: Mutex::default(),
            serving_nanos: AtomicU64::new(0),
            batches: AtomicU64::new(0),
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

    /// Queues a fault for the next request to `target` (a `Resource`, `Any` = any endpoint, or
    /// an `Endpoint`), FIFO. `$batch` items take faults like top-level requests.
    pub fn push_fault(&self, target: impl Into<Target>, fault: Fault) {
        lock(&self.shared.faults)
            .queue
            .push_back((target.into(), fault));
    }

    /// RU spent, 429s and requests per endpoint since the start (or `reset_counters`).
    pub fn counters(&self) -> Counters {
        lock(&self.shared.counters).clone()
    }

    /// Zeroes the counters (the RU bucket itself is left as it is).
    pub fn reset_counters(&self) {
        *lock(&self.shared.counters) = Counters::default();
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
    let settings = lock(&shared.settings).clone();
    let answer = evaluate(shared, &incoming, &settings, at, false);
    let elapsed = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
    shared.serving_nanos.fetch_add(elapsed, Ordering::Relaxed);
    if !answer.pause.is_zero() {
        std::thread::sleep(answer.pause);
    }
    shared.record(&incoming, answer.endpoint, at, answer.reply.status, false);
    // The client may have given up (timeout): nothing to do about a failed write.
    let _ = request.respond(answer.reply.into_response());
}

/// One evaluated request: the endpoint, the reply, and how long to wait before sending it.
struct Answer {
    endpoint: Endpoint,
    reply: Reply,
    pause: Duration,
}

/// Evaluates one request, top-level or a `$batch` item (`in_batch`): the RU budget first (a
/// throttled request reaches neither faults nor the endpoint), then a queued fault, then the
/// endpoint. Counts it; recording is left to the caller.
fn evaluate(
    shared: &Shared,
    incoming: &Incoming,
    settings: &Settings,
    at: Instant,
    in_batch: bool,
) -> Answer {
    let endpoint = classify(&incoming.path);
    let ctx = Ctx::new(incoming);
    let charge = endpoint.is_graph().then(|| {
        let cost = quota::cost(shared, endpoint, incoming);
        lock(&shared.bucket).charge(settings.ru_quota, cost)
    });
    let mut pause = Duration::ZERO;
    let mut reply = match &charge {
        Some(quota::Charge::Throttled { retry_after, .. }) => {
            throttled(&ctx, "TooManyRequests").with("Retry-After", quota::seconds(*retry_after))
        }
        _ => {
            let fault = shared.take_fault(endpoint);
            if let Some(Fault::Delay(delay)) = &fault {
                pause += *delay;
            }
            // Once per HTTP request: a $batch pays it once, its items not again.
            if !in_batch && (endpoint.has_links() || endpoint == Endpoint::Batch) {
                pause += settings.page_latency;
            }
            let call = Call {
                shared,
                incoming,
                ctx: &ctx,
                settings,
                at,
            };
            route(&call, endpoint, fault.as_ref(), &mut pause)
        }
    };
    if let Some(charge) = &charge {
        quota::decorate(&mut reply, charge);
    }
    let mut counters = lock(&shared.counters);
    counters.ru_spent += u64::from(charge.as_ref().map_or(0, quota::Charge::charged));
    *counters.requests.entry(endpoint).or_default() += 1;
    if reply.status == 429 {
        if in_batch {
            counters.throttled_in_batch += 1;
        } else {
            counters.throttled += 1;
        }
    }
    drop(counters);
    Answer {
        endpoint,
        reply,
        pause,
    }
}

/// Which endpoint a path belongs to.
fn classify(path: &str) -> Endpoint {
    let lower = path.to_ascii_lowercase();
    let lower = lower.trim_end_matches('/');
    if lower.ends_with("/oauth2/v2.0/token") && lower.matches('/').count() == 4 {
        return Endpoint::Token;
    }
    if lower == "/metadata/identity/oauth2/token" {
        return Endpoint::ManagedIdentity;
    }
    let Some(rest) = lower.strip_prefix("/v1.0/") else {
        return Endpoint::Unknown;
    };
    if rest.starts_with("applications(") {
        return Endpoint::Application;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        ["$batch"] => Endpoint::Batch,
        ["users"] => Endpoint::UserList,
        ["groups"] => Endpoint::GroupList,
        ["groups", id, "members"] if !id.is_empty() => Endpoint::Members,
        [collection, function]
            if matches!(
                *function,
                "delta" | "delta()" | "microsoft.graph.delta" | "microsoft.graph.delta()"
            ) =>
        {
            match *collection {
                "users" => Endpoint::UsersDelta,
                "groups" => Endpoint::GroupsDelta,
                _ => Endpoint::Unknown,
            }
        }
        _ => Endpoint::Unknown,
    }
}

/// What an endpoint needs to answer one request.
struct Call<'a> {
    shared: &'a Shared,
    incoming: &'a Incoming,
    ctx: &'a Ctx,
    settings: &'a Settings,
    /// When the (outer) request arrived.
    at: Instant,
}

/// Applies a status/body fault or hands the request to its endpoint. `pause` collects extra
/// waiting (a `$batch` adds its items' `Delay` faults).
fn route(call: &Call, endpoint: Endpoint, fault: Option<&Fault>, pause: &mut Duration) -> Reply {
    let (shared, incoming, ctx, settings) = (call.shared, call.incoming, call.ctx, call.settings);
    let resource = endpoint.resource();
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
    let mut reply = match endpoint {
        Endpoint::Token => auth::serve(&mut shared.tokens(), incoming, ctx, settings, &shared.base),
        Endpoint::ManagedIdentity => {
            identity::serve_managed_identity(&mut shared.tokens(), incoming, ctx, settings)
        }
        Endpoint::UsersDelta => {
            graph::serve(shared, incoming, ctx, ObjectType::User, fault, settings)
        }
        Endpoint::GroupsDelta => {
            graph::serve(shared, incoming, ctx, ObjectType::Group, fault, settings)
        }
        Endpoint::UserList | Endpoint::GroupList | Endpoint::Members => {
            list::serve(shared, incoming, ctx, endpoint, settings)
        }
        Endpoint::Batch => {
            let (reply, extra) = batch::serve(call);
            *pause += extra;
            reply
        }
        Endpoint::Application => {
            identity::serve_application(&shared.tokens(), incoming, ctx, settings)
        }
        Endpoint::Unknown => not_found(ctx, incoming),
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
            // Service load rather than the RU budget: a fixed "20 % throttled" figure.
            429 => throttled(ctx, code).with("x-ms-throttle-limit-percentage", "1.2"),
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
    // `x-ms-resource-unit` and (when the budget has no say) the limit percentage are added by
    // `quota::decorate`.
    Reply::graph(ctx, 429, body.to_string().into_bytes())
        .with(
            "x-ms-throttle-scope",
            format!("Tenant_Application/Read/{CLIENT_ID}/{TENANT_ID}"),
        )
        .with("x-ms-throttle-information", "ResourceUnitLimitExceeded")
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

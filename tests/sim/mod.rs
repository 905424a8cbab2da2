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
mod endpoint;
mod errors;
mod graph;
mod http;
mod identity;
mod list;
mod page;
mod quota;
mod schema;
mod synthetic;
mod tenant;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use self::endpoint::classify;
use self::errors::{not_found, status_fault, throttled};
use self::http::{Ctx, Incoming, Reply};
use self::schema::ObjectType;

// Including crates use only part of the API; unused re-exports there are expected.
#[allow(unused_imports)]
pub use self::endpoint::{Counters, Endpoint, Target};
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
/// Listening sockets sharing the port (SO_REUSEPORT), each with its own tiny_http server.
/// Why: tiny_http runs each connection on a thread of a pool that starts with 4 threads, and
/// when many connections arrive at once it queues them behind those 4 (it reads its idle
/// count before the woken threads have taken their tasks), so 16 simultaneous connections
/// were served 4 at a time. The kernel spreads connections over the listeners' pools.
const LISTENERS: usize = 8;

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
    /// to an unknown path, or to an endpoint this enum has no variant for (plain lists,
    /// members, `$batch`, applications; `Recorded::endpoint` tells them apart).
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
    /// A link added and removed inside an incremental round's window is not reported at
    /// all (its group still is, as changed): the other outcome of notes 3.11 (b), which
    /// Graph does not document (default false: the removal is reported).
    pub transient_links_unreported: bool,
    /// Full groups rounds leave out the links of soft-deleted users and groups, as a group's
    /// `/members` does (notes 3.11: "as a full delta round does"; default false: listed).
    pub full_rounds_hide_deleted_members: bool,
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
    /// How a skiptoken of the plain lists that expired or was never issued is answered:
    /// `false` (default) 400 "The specified page token value has expired"; `true` 404
    /// `UnknownError`, as reported for a groups skiptoken (notes 4.6), which for a member
    /// list reads like a deleted group.
    pub expired_list_links_not_found: bool,
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
            transient_links_unreported: false,
            full_rounds_hide_deleted_members: false,
            certificates: Vec::new(),
            assertion_algs: vec!["PS256", "RS256"],
            federated_tokens: Vec::new(),
            managed_identity: None,
            application: None,
            refuse_partition_filter: false,
            expired_list_links_not_found: false,
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
    /// The client's end of the connection it came on: a new one has a new port.
    pub peer: Option<std::net::SocketAddr>,
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
    servers: Vec<tiny_http::Server>,
    /// Requests from all servers, for the workers.
    queue: Mutex<mpsc::Receiver<tiny_http::Request>>,
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

    /// The first queued fault that applies to a request for `endpoint` (`continuation`: at a
    /// list's nextLink), removed from the queue.
    fn take_fault(&self, endpoint: Endpoint, continuation: bool) -> Option<Fault> {
        // Unknown paths and the application endpoint never took faults.
        if matches!(endpoint, Endpoint::Unknown | Endpoint::Application) {
            return None;
        }
        let mut faults = lock(&self.faults);
        let position = faults.queue.iter().position(|(target, fault)| {
            target.matches(endpoint, continuation) && fault.applies_to(endpoint)
        })?;
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

    /// Adds one answered request to the counters.
    fn count(&self, endpoint: Endpoint, status: u16, charged: u32, in_batch: bool) {
        let mut counters = lock(&self.counters);
        counters.ru_spent += u64::from(charged);
        *counters.requests.entry(endpoint).or_default() += 1;
        match (status, in_batch) {
            (429, true) => counters.throttled_in_batch += 1,
            (429, false) => counters.throttled += 1,
            _ => {}
        }
    }

    /// Appends one answered request (or `$batch` item) to the log.
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
            peer: incoming.peer,
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
    dispatchers: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl Sim {
    /// Starts a simulator with an empty tenant.
    pub fn start() -> Sim {
        Sim::start_with(Tenant::new())
    }

    /// Starts a simulator serving `tenant` (e.g. `Tenant::synthetic(…)`).
    pub fn start_with(tenant: Tenant) -> Sim {
        let first = listen(0);
        let port = first.local_addr().expect("sim: a TCP listener").port();
        let mut listeners = vec![first];
        listeners.extend((1..LISTENERS).map(|_| listen(port)));
        let servers = listeners
            .into_iter()
            .map(|listener| tiny_http::Server::from_listener(listener, None).expect("sim: listen"))
            .collect();
        let (sender, receiver) = mpsc::channel();
        let shared = Arc::new(Shared {
            base: format!("http://127.0.0.1:{port}"),
            servers,
            queue: Mutex::new(receiver),
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
        let dispatchers = (0..LISTENERS)
            .map(|i| {
                let shared = Arc::clone(&shared);
                let sender = sender.clone();
                std::thread::Builder::new()
                    .name(format!("sim-listener-{i}"))
                    .spawn(move || dispatch(&shared, i, &sender))
                    .expect("sim: spawn listener")
            })
            .collect();
        let workers = (0..WORKERS)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("sim-worker-{i}"))
                    .spawn(move || work(&shared))
                    .expect("sim: spawn worker")
            })
            .collect();
        Sim {
            shared,
            dispatchers,
            workers,
        }
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
    /// an `Endpoint`, or `Target::Continuation` of one), FIFO. `$batch` items take faults like top-level requests.
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

    /// Forgets every skiptoken the plain lists (`/users`, `/groups`, members) issued so far:
    /// Graph answers 400 "The specified page token value has expired" (or 404, see
    /// `Settings::expired_list_links_not_found`).
    pub fn expire_list_links(&self) {
        lock(&self.shared.list_links).clear();
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
        // Dispatchers first: once their senders are gone the workers' queue disconnects.
        for thread in self.dispatchers.drain(..).chain(self.workers.drain(..)) {
            // A thread that panicked has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

/// A socket bound to `127.0.0.1:port` (0: any) with SO_REUSEPORT, listening.
fn listen(port: u16) -> std::net::TcpListener {
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, sockopt};
    use std::os::fd::AsRawFd;
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("sim: socket");
    socket::setsockopt(&fd, sockopt::ReusePort, &true).expect("sim: SO_REUSEPORT");
    // TCP_NODELAY, inherited by accepted sockets on Linux: tiny_http writes a response's
    // head and body separately, and Nagle's algorithm against the client's delayed ACK
    // would add ~40 ms to every page, which no real Graph front end does.
    socket::setsockopt(&fd, sockopt::TcpNoDelay, &true).expect("sim: TCP_NODELAY");
    socket::bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)).expect("sim: bind");
    socket::listen(&fd, Backlog::new(1024).expect("sim: backlog")).expect("sim: listen");
    std::net::TcpListener::from(fd)
}

/// Moves requests from server `index` to the workers' queue until the simulator stops.
fn dispatch(shared: &Shared, index: usize, sender: &mpsc::Sender<tiny_http::Request>) {
    while !shared.stop.load(Ordering::Relaxed) {
        // Errors are broken connections: nothing to answer.
        if let Ok(Some(request)) = shared.servers[index].recv_timeout(POLL)
            && sender.send(request).is_err()
        {
            return;
        }
    }
}

fn work(shared: &Shared) {
    loop {
        let next = lock(&shared.queue).recv_timeout(POLL);
        match next {
            Ok(request) => serve(shared, request),
            Err(mpsc::RecvTimeoutError::Timeout) if !shared.stop.load(Ordering::Relaxed) => {}
            Err(_) => return,
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
    // Once per HTTP request, throttled ones included (a 429 is a round trip too): a $batch
    // pays it once, its items not again.
    if !in_batch && (endpoint.has_links() || endpoint == Endpoint::Batch) {
        pause += settings.page_latency;
    }
    let mut reply = match &charge {
        Some(quota::Charge::Throttled { retry_after, .. }) => {
            throttled(&ctx, "TooManyRequests").with("Retry-After", quota::seconds(*retry_after))
        }
        _ => {
            let fault = shared.take_fault(endpoint, incoming.query.contains("skiptoken"));
            if let Some(Fault::Delay(delay)) = &fault {
                pause += *delay;
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
    let charged = charge.as_ref().map_or(0, quota::Charge::charged);
    shared.count(endpoint, reply.status, charged, in_batch);
    Answer {
        endpoint,
        reply,
        pause,
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

//! Which endpoint a request went to (`Endpoint`), what a queued fault targets (`Target`), and
//! the counters a benchmark prints (`Counters`).

use std::collections::HashMap;

use super::Resource;

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
    pub(super) fn is_graph(self) -> bool {
        !matches!(self, Endpoint::Token | Endpoint::ManagedIdentity)
    }

    pub(super) fn is_delta(self) -> bool {
        matches!(self, Endpoint::UsersDelta | Endpoint::GroupsDelta)
    }

    /// Endpoints whose responses carry paging links.
    pub(super) fn has_links(self) -> bool {
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
    /// Requests to this endpoint that continue a list at its nextLink (`$skiptoken`).
    Continuation(Endpoint),
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
    /// Whether a request to `endpoint` (`continuation`: at a list's nextLink) takes it.
    pub(super) fn matches(self, endpoint: Endpoint, continuation: bool) -> bool {
        match self {
            Target::Resource(Resource::Any) => true,
            Target::Resource(resource) => endpoint.resource() == resource,
            Target::Endpoint(target) => target == endpoint,
            Target::Continuation(target) => continuation && target == endpoint,
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

/// Which endpoint a path belongs to.
pub(super) fn classify(path: &str) -> Endpoint {
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

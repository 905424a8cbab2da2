//! What can go wrong fetching a page (delta, list, members), in words an operator can act on.

use super::Resource;
use crate::auth::AuthError;

/// `Clone`: a `$batch` that fails as a whole fails each of its items with the same error.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// A managed identity has no consent screen: its permissions are app-role assignments
    /// (graph-protocol.md 1.4), and its tokens keep the old roles for up to 24 hours.
    #[error(
        "graph: {resource}: access denied (HTTP 403 {code}) on {path}: the managed identity (object \
         id {object_id}) lacks the Graph app role {permission}; the admin consent button does not \
         apply to managed identities: assign the app role with PowerShell \
         (New-MgServicePrincipalAppRoleAssignment) or the CLI (az rest ... appRoleAssignments), \
         see the README's managed identity section; a new role can take hours (up to 24) to reach \
         the identity's tokens, which entra-sync keeps retrying"
    )]
    ManagedIdentityRoleMissing {
        resource: Resource,
        path: String,
        code: String,
        permission: &'static str,
        object_id: String,
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

    /// True when Graph refused a link it issued: a lost state, or 400/404 (the skiptoken of
    /// a list expired or is unknown, graph-protocol.md 3.4, 4.5, 4.6).
    pub fn is_stale_link(&self) -> bool {
        matches!(
            self,
            GraphError::DeltaStateLost { .. }
                | GraphError::Refused {
                    status: 400 | 404 | 410,
                    ..
                }
        )
    }

    /// True when Graph refused the query itself (HTTP 400, such as `Request_UnsupportedQuery`):
    /// on a list with a partition filter, "this tenant does not support it" (graph-protocol.md
    /// 3.11), and the snapshot falls back to one unfiltered list.
    pub fn is_unsupported_query(&self) -> bool {
        matches!(self, GraphError::Refused { status: 400, .. })
    }
}

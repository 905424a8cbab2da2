//! Microsoft Graph over HTTP: delta pages for users and groups, typed, with retries.
//!
//! `client` sends requests and maps statuses to [`GraphError`]s (`error`); `page` parses a
//! delta page whole, within limits, and type-checks it. Nothing here decides about the
//! database (no SQL). Links are followed exactly as received, and the bearer token only ever
//! goes to the configured Graph origin.

mod application;
mod client;
mod error;
mod page;

use std::fmt;

pub use application::{AppCredential, AppCredentials};
pub use client::{Graph, describe_link};
pub use error::GraphError;
pub use page::{DirectoryObject, MemberChange, Next, Page, Removal, parse_page};

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

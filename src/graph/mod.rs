//! Microsoft Graph over HTTP: delta pages for users and groups, typed, with retries.
//!
//! `client` sends requests and maps statuses to [`GraphError`]s (`error`); `page` parses a
//! delta, list or members page whole, within limits, and type-checks it; `batch` is JSON
//! batching of member pages; `pacer` spaces and pauses requests by what Graph says of its
//! quota. Nothing here decides about the database (no SQL). Links are followed exactly as received, and the bearer token only ever
//! goes to the configured Graph origin.

mod application;
mod batch;
mod client;
mod error;
mod pacer;
mod page;

use std::fmt;

use crate::http;

pub use application::{AppCredential, AppCredentials};
pub use client::{Graph, describe_link};
pub use error::GraphError;
pub use page::{
    DirectoryObject, ListPage, MemberChange, MemberType, MembersPage, Next, Page, Props, Removal,
    UNTYPED, member_type, parse_list, parse_members, parse_page,
};

/// Properties tracked for users. Only selected properties are tracked by delta, and an
/// explicit list keeps pages small (graph-protocol.md 3.2).
pub const USER_SELECT: &str = "id,displayName,userPrincipalName,mail,givenName,surname,\
accountEnabled,userType,jobTitle,department";
/// The groups' own properties, shared by [`GROUP_SELECT`] and the plain list.
macro_rules! group_properties {
    () => {
        "id,displayName,description,mail,mailEnabled,mailNickname,securityEnabled,groupTypes"
    };
}
/// Properties tracked for groups; `members` asks for `members@delta`.
pub const GROUP_SELECT: &str = concat!(group_properties!(), ",members");
/// `$select` of `GET /groups`: the tracked properties without `members` (a plain list does
/// not expand relationships; members are read per group).
const GROUP_LIST_SELECT: &str = group_properties!();
/// Page size asked of the plain lists: their maximum (graph-protocol.md 3.5).
const LIST_TOP: u32 = 999;

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

    /// The first request of a round that starts "from now"
    /// (3.11 step 1): no objects, only a deltaLink. Same `$select` as [`Resource::initial_url`],
    /// since the link encodes the query.
    pub fn latest_url(self, graph_endpoint: &str) -> String {
        format!("{}&$deltatoken=latest", self.initial_url(graph_endpoint))
    }

    /// The first page of the plain list (`GET /users`, `GET /groups`, 3.11 step 2) with the
    /// tracked properties and the largest page, restricted to `filter` (one of
    /// [`Resource::partitions`]) when given.
    pub fn list_url(self, graph_endpoint: &str, filter: Option<&str>) -> String {
        let select = match self {
            Resource::Users => USER_SELECT,
            Resource::Groups => GROUP_LIST_SELECT,
        };
        let mut url = format!(
            "{graph_endpoint}/v1.0/{}?$select={select}&$top={LIST_TOP}",
            self.name()
        );
        if let Some(filter) = filter {
            url.push_str("&$filter=");
            url.push_str(&http::percent_encode(filter));
        }
        url
    }

    /// The `$filter`s that split the plain list into ranges read in parallel (3.11, after
    /// Microsoft's sample): users by the first character of `userPrincipalName`, 27 ranges,
    /// `lt 'a'`, then `ge 'a' and lt 'b'` up to `ge 'y' and lt 'z'`, then `ge 'z'`. Adjacent
    /// ranges share their bound, the first has no lower one and the last no upper one, so
    /// whatever order Graph compares in, as long as it is one total order (it compares
    /// case-insensitively, so `Alice@` sorts with `alice@`; digits and most punctuation sort
    /// below `a`, non-ASCII letters above `z` in an ordinal order), every UPN is in exactly
    /// one range; the order only decides how even the ranges are. Groups: none (one list).
    pub fn partitions(self) -> Vec<String> {
        const UPN: &str = "userPrincipalName";
        match self {
            Resource::Users => {
                let letters: Vec<char> = ('a'..='z').collect();
                let mut filters = vec![format!("{UPN} lt 'a'")];
                filters.extend(
                    letters
                        .windows(2)
                        .map(|w| format!("{UPN} ge '{}' and {UPN} lt '{}'", w[0], w[1])),
                );
                filters.push(format!("{UPN} ge 'z'"));
                filters
            }
            Resource::Groups => Vec::new(),
        }
    }

    /// The application permissions that let this resource be read (graph-protocol.md 7).
    pub fn permission(self) -> &'static str {
        match self {
            Resource::Users => "User.Read.All",
            Resource::Groups => "GroupMember.Read.All (or Group.Read.All)",
        }
    }
}

/// The first page of a group's direct members (`GET /groups/{id}/members`, 3.11), ids and
/// types only, the largest page. The id is percent-encoded: it cannot change the path.
pub fn members_url(graph_endpoint: &str, group_id: &str) -> String {
    format!(
        "{graph_endpoint}/v1.0/groups/{}/members?$select=id&$top={LIST_TOP}",
        http::percent_encode(group_id)
    )
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "https://graph.microsoft.com";

    #[test]
    fn urls_of_the_snapshot() {
        assert_eq!(
            Resource::Users.list_url(G, None),
            format!("{G}/v1.0/users?$select={USER_SELECT}&$top=999")
        );
        assert_eq!(
            Resource::Groups.list_url(G, None),
            "https://graph.microsoft.com/v1.0/groups?$select=id,displayName,description,mail,\
             mailEnabled,mailNickname,securityEnabled,groupTypes&$top=999"
        );
        assert_eq!(
            Resource::Users.list_url(
                G,
                Some("userPrincipalName ge 'a' and userPrincipalName lt 'b'")
            ),
            format!(
                "{G}/v1.0/users?$select={USER_SELECT}&$top=999&$filter=userPrincipalName%20ge%20%27a%27\
                 %20and%20userPrincipalName%20lt%20%27b%27"
            )
        );
        assert_eq!(
            Resource::Groups.latest_url(G),
            format!("{G}/v1.0/groups/delta?$select={GROUP_SELECT}&$deltatoken=latest")
        );
        assert_eq!(
            members_url(G, "0c0c0c0c-1111-4222-8333-444444444444"),
            format!(
                "{G}/v1.0/groups/0c0c0c0c-1111-4222-8333-444444444444/members?$select=id&$top=999"
            )
        );
        // An id cannot reach into the path or the query.
        assert_eq!(
            members_url(G, "x/../y?$top=1"),
            format!("{G}/v1.0/groups/x%2F..%2Fy%3F%24top%3D1/members?$select=id&$top=999")
        );
        assert!(GROUP_SELECT.ends_with(",members"));
        assert_eq!(format!("{GROUP_LIST_SELECT},members"), GROUP_SELECT);
    }

    /// Whether `upn` is in the range `filter` describes, both sides folded by `fold`.
    fn in_range(filter: &str, upn: &str, fold: fn(&str) -> String) -> bool {
        filter.split(" and ").all(|clause| {
            let parts: Vec<&str> = clause.split(' ').collect();
            let [prop, op, bound] = parts[..] else {
                panic!("{clause}")
            };
            assert_eq!(prop, "userPrincipalName");
            let bound = fold(bound.trim_matches('\''));
            match op {
                "lt" => fold(upn) < bound,
                "ge" => fold(upn) >= bound,
                _ => panic!("{op}"),
            }
        })
    }

    #[test]
    fn user_partitions_cover_every_upn_exactly_once() {
        let partitions = Resource::Users.partitions();
        assert_eq!(partitions.len(), 27);
        assert_eq!(partitions[0], "userPrincipalName lt 'a'");
        assert_eq!(
            partitions[1],
            "userPrincipalName ge 'a' and userPrincipalName lt 'b'"
        );
        assert_eq!(partitions[26], "userPrincipalName ge 'z'");
        let upns = [
            "",
            "a",
            "A",
            "alice@contoso.example",
            "Alice@contoso.example",
            "azure@x",
            "b",
            "Bob@x",
            "m",
            "mallory@x",
            "y",
            "yz@x",
            "z",
            "Z",
            "zoe@x",
            "zz",
            "0day@x",
            "1@x",
            "_svc@x",
            "#EXT#@x",
            "~tilde@x",
            "{brace}@x",
            "élodie@x",
            "Ωmega@x",
            "\u{0}",
            "\u{10ffff}",
        ];
        // Graph compares case-insensitively; the cover holds in any total order, so check an
        // ordinal, case-sensitive one too (only the balance of the ranges changes).
        let folds: [fn(&str) -> String; 2] = [str::to_lowercase, str::to_owned];
        for fold in folds {
            for upn in upns {
                let hits: Vec<&String> = partitions
                    .iter()
                    .filter(|p| in_range(p, upn, fold))
                    .collect();
                assert_eq!(hits.len(), 1, "{upn:?}: {hits:?}");
            }
        }
        assert_eq!(
            partitions
                .iter()
                .filter(|p| in_range(p, "Mallory@x", str::to_lowercase))
                .collect::<Vec<_>>(),
            ["userPrincipalName ge 'm' and userPrincipalName lt 'n'"]
        );
        assert!(Resource::Groups.partitions().is_empty());
    }
}

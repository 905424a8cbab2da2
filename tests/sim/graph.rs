//! `GET /v1.0/{users|groups}/delta`: authorization, query options, state tokens and pages.
//!
//! Links carry long random tokens; the server maps each token to its round state (a
//! `Cursor` for a nextLink, the query and start sequence for a deltaLink).
//!
//! Single use (`Settings::single_use_tokens`): the protocol notes say to assume tokens are
//! single-use while also telling clients to retry the *same* link after 429/5xx/timeouts.
//! The simulator reconciles both: a link may be retried any number of times until a link
//! issued from it has been used; from then on it answers 400 `syncStateNotFound`. So an
//! old deltaLink fails once the next round has moved on, but a retry never breaks a round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::http::{self, Ctx, Incoming, Reply};
use super::page::{Cursor, Page, Query, Shape};
use super::schema::{ObjectType, SelectError, Selection};
use super::{Fault, LinkForm, Settings, Shared, auth::Bearer};

const SYNC_STATE_MESSAGE: &str = "The sync state generation is not found. The delta token is expired and data must be synchronized again.";
const MAX_FILTER_IDS: usize = 50;

#[derive(Clone)]
enum LinkState {
    Next(Cursor),
    Delta {
        query: Arc<Query>,
        since: u64,
    },
    /// A link issued from this one was used (single-use mode).
    Used,
}

struct Link {
    ty: ObjectType,
    /// The token whose request issued this link.
    parent: Option<String>,
    issued_at: Instant,
    state: LinkState,
}

/// Every nextLink / deltaLink token issued and what it stands for.
#[derive(Default)]
pub(super) struct LinkStore {
    links: HashMap<String, Link>,
    issued: u64,
}

impl LinkStore {
    /// Forgets every token: all of them now answer `syncStateNotFound`.
    pub fn expire_all(&mut self) {
        self.links.clear();
    }

    /// The round state behind `token`, if it is a live token of the right type and kind.
    fn redeem(
        &mut self,
        token: &str,
        skip: bool,
        ty: ObjectType,
        settings: &Settings,
    ) -> Option<LinkState> {
        let link = self.links.get(token)?;
        let kind_matches = match link.state {
            LinkState::Next(_) => skip,
            LinkState::Delta { .. } => !skip,
            LinkState::Used => false,
        };
        if link.ty != ty || !kind_matches || link.issued_at.elapsed() > settings.delta_token_ttl {
            return None;
        }
        let state = link.state.clone();
        let parent = link.parent.clone();
        if settings.single_use_tokens
            && let Some(parent) = parent.and_then(|p| self.links.get_mut(&p))
        {
            parent.state = LinkState::Used;
        }
        Some(state)
    }

    /// The query a live nextLink / deltaLink token stands for.
    pub(super) fn query_of(&self, token: &str) -> Option<Arc<Query>> {
        match &self.links.get(token)?.state {
            LinkState::Next(cursor) => Some(cursor.query.clone()),
            LinkState::Delta { query, .. } => Some(query.clone()),
            LinkState::Used => None,
        }
    }

    /// Stores a new link; returns its token and a serial number (for `LinkForm::Alternate`).
    fn issue(&mut self, ty: ObjectType, parent: Option<String>, state: LinkState) -> (String, u64) {
        let token = http::random_token(3);
        self.issued += 1;
        self.links.insert(
            token.clone(),
            Link {
                ty,
                parent,
                issued_at: Instant::now(),
                state,
            },
        );
        (token, self.issued)
    }
}

/// The decoded query options of a delta request.
#[derive(Default)]
struct Params {
    select: Option<String>,
    filter: Option<String>,
    skiptoken: Option<String>,
    deltatoken: Option<String>,
}

impl Params {
    fn parse(query: &str) -> Result<Params, String> {
        let mut params = Params::default();
        for (key, value) in http::parse_pairs(query) {
            match key.to_ascii_lowercase().as_str() {
                "$select" => params.select = Some(value),
                "$filter" => params.filter = Some(value),
                "$skiptoken" => params.skiptoken = Some(value),
                "$deltatoken" => params.deltatoken = Some(value),
                // Silently ignored on directory delta (protocol notes 3.2).
                "$top" => {}
                "$expand" | "$orderby" | "$search" | "$count" | "$skip" | "$format" => {
                    return Err(format!(
                        "The query parameter '{key}' is not supported with delta queries."
                    ));
                }
                other if other.starts_with('$') => {
                    return Err(format!("The query parameter '{key}' is not supported."));
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

/// How this request's round begins or continues.
enum Start {
    /// A new round listing everything.
    Initial(Arc<Query>),
    /// `$deltatoken=latest`: no objects, a deltaLink from now.
    Latest(Arc<Query>),
    /// A round of changes after `since` (from a deltaLink).
    Changes(Arc<Query>, u64),
    /// The next page of a round (from a nextLink).
    Resume(Cursor),
}

/// Answers one delta request. `fault` is a queued Gone / SyncStateNotFound, if any.
pub(super) fn serve(
    shared: &Shared,
    incoming: &Incoming,
    ctx: &Ctx,
    ty: ObjectType,
    fault: Option<&Fault>,
    settings: &Settings,
) -> Reply {
    if incoming.method != "GET" {
        return Reply::method_not_allowed(ctx);
    }
    let params = match Params::parse(&incoming.query) {
        Ok(params) => params,
        Err(message) => return Reply::graph_error(ctx, 400, "Request_BadRequest", &message),
    };
    match fault {
        Some(Fault::Gone) => return gone(shared, ctx, ty, &params),
        Some(Fault::SyncStateNotFound) => return sync_state_not_found(ctx),
        _ => {}
    }
    if let Err(reply) = authorize(shared, incoming, ctx, ty) {
        return reply;
    }
    let (start, parent) = match plan(shared, ctx, ty, params, settings) {
        Ok(planned) => planned,
        Err(reply) => return reply,
    };
    let first_page = !matches!(start, Start::Resume(_));
    let minimal = prefers_minimal(incoming);
    let (page, state, query) = build(shared, start, settings, minimal);
    let done = page.done;
    let (token, serial) = shared.links().issue(ty, parent, state);
    let base = shared
        .take_foreign_base(super::delta_endpoint(ty))
        .unwrap_or_else(|| shared.base.clone());
    let link = link_url(&base, ty, settings.link_form, serial, done, &token);
    let context = context_url(&shared.base, &query, first_page);
    Reply::graph(ctx, 200, page_body(&context, done, &link, page.value))
        .with("Preference-Applied", "odata.track-changes")
}

/// Checks the bearer token and that it carries the role `ty`'s endpoints need (403 if not).
pub(super) fn authorize(
    shared: &Shared,
    incoming: &Incoming,
    ctx: &Ctx,
    ty: ObjectType,
) -> Result<(), Reply> {
    let bearer = shared.tokens().check(incoming.header("authorization"));
    match bearer {
        Bearer::Valid(roles) if roles.allow(ty) => Ok(()),
        Bearer::Valid(_) => Err(Reply::graph_error(
            ctx,
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )),
        Bearer::Rejected(message) => {
            let challenge = format!(
                "Bearer realm=\"\", authorization_uri=\"{}/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                shared.base
            );
            Err(
                Reply::graph_error(ctx, 401, "InvalidAuthenticationToken", message)
                    .with("WWW-Authenticate", challenge),
            )
        }
    }
}

/// Validates the options and resolves any token into round state.
fn plan(
    shared: &Shared,
    ctx: &Ctx,
    ty: ObjectType,
    params: Params,
    settings: &Settings,
) -> Result<(Start, Option<String>), Reply> {
    let bad_request = |message: &str| Reply::graph_error(ctx, 400, "Request_BadRequest", message);
    if let Some(token) = params.skiptoken {
        if params.select.is_some() || params.filter.is_some() {
            return Err(bad_request(
                "$select and $filter are not supported together with a $skiptoken.",
            ));
        }
        return match shared.links().redeem(&token, true, ty, settings) {
            Some(LinkState::Next(cursor)) => Ok((Start::Resume(cursor), Some(token))),
            _ => Err(sync_state_not_found(ctx)),
        };
    }
    let deltatoken = params.deltatoken.filter(|t| !t.is_empty());
    if let Some(token) = deltatoken
        .as_deref()
        .filter(|t| !t.eq_ignore_ascii_case("latest"))
    {
        if params.filter.is_some() {
            return Err(bad_request(
                "$filter is not supported together with a $deltatoken.",
            ));
        }
        let Some(LinkState::Delta { query, since }) =
            shared.links().redeem(token, false, ty, settings)
        else {
            return Err(sync_state_not_found(ctx));
        };
        // $select on a deltaLink changes the tracked set without a resync (notes 3.2).
        let query = match params.select {
            Some(select) => {
                let select = selection(ctx, ty, Some(&select))?;
                Arc::new(Query {
                    ty,
                    select,
                    filter: query.filter.clone(),
                    filter_text: query.filter_text.clone(),
                })
            }
            None => query,
        };
        return Ok((Start::Changes(query, since), Some(token.to_string())));
    }
    let select = selection(ctx, ty, params.select.as_deref())?;
    let filter = match params.filter.as_deref().map(parse_filter) {
        Some(Ok(ids)) => Some(ids),
        Some(Err(message)) => return Err(bad_request(&message)),
        None => None,
    };
    let query = Arc::new(Query {
        ty,
        select,
        filter,
        filter_text: params.filter,
    });
    if deltatoken.is_some() {
        return Ok((Start::Latest(query), None));
    }
    Ok((Start::Initial(query), None))
}

/// Parses `$select` for `ty`: 400 for unknown names, 501 for untrackable ones (notes 3.2).
pub(super) fn selection(
    ctx: &Ctx,
    ty: ObjectType,
    select: Option<&str>,
) -> Result<Selection, Reply> {
    Selection::parse(ty, select).map_err(|error| match error {
        SelectError::Unknown(name) => {
            let message = format!(
                "Could not find a property named '{name}' on type '{}'.",
                ty.graph_type()
            );
            Reply::graph_error(ctx, 400, "Request_BadRequest", &message)
        }
        SelectError::Untrackable(_) => Reply::graph_error(
            ctx,
            501,
            "NotImplemented",
            "This operation target is not yet supported.",
        ),
    })
}

/// `id eq 'a' or id eq 'b'` → ids (deduplicated, at most 50).
fn parse_filter(text: &str) -> Result<Vec<String>, String> {
    let invalid = || {
        format!(
            "Invalid filter clause: only 'id eq' comparisons joined by 'or' are supported, got '{text}'."
        )
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut ids: Vec<String> = Vec::new();
    for (i, clause) in words.split(|w| w.eq_ignore_ascii_case("or")).enumerate() {
        let [field, op, value] = clause else {
            return Err(invalid());
        };
        let id = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\''));
        let Some(id) =
            id.filter(|_| field.eq_ignore_ascii_case("id") && op.eq_ignore_ascii_case("eq"))
        else {
            return Err(invalid());
        };
        if i >= MAX_FILTER_IDS {
            return Err(format!(
                "Too many ids in the filter clause: at most {MAX_FILTER_IDS} are supported."
            ));
        }
        if !ids.iter().any(|known| known.eq_ignore_ascii_case(id)) {
            ids.push(id.to_string());
        }
    }
    if ids.is_empty() {
        return Err(invalid());
    }
    Ok(ids)
}

fn prefers_minimal(incoming: &Incoming) -> bool {
    let prefer = incoming.header("prefer").unwrap_or_default();
    prefer
        .split(',')
        .any(|p| p.trim().eq_ignore_ascii_case("return=minimal"))
}

/// Builds the page under the tenant lock; returns it with the state its link stands for and
/// the round's query.
fn build(
    shared: &Shared,
    start: Start,
    settings: &Settings,
    minimal: bool,
) -> (Page, LinkState, Arc<Query>) {
    let tenant = shared.tenant();
    let mut cursor = match start {
        Start::Latest(query) => {
            let since = tenant.seq();
            let state = LinkState::Delta {
                query: query.clone(),
                since,
            };
            return (Page::empty(true), state, query);
        }
        Start::Initial(query) => Cursor::start(&tenant, query, None),
        Start::Changes(query, since) => Cursor::start(&tenant, query, Some(since)),
        Start::Resume(cursor) => cursor,
    };
    let shape = Shape {
        objects: match cursor.query.ty {
            ObjectType::User => settings.users_page_size,
            ObjectType::Group => settings.groups_page_size,
        },
        links: settings.links_page_size,
        duplicate_every: settings.duplicate_every,
        empty_page_every: settings.empty_page_every,
        short_pages: settings.short_pages,
        // Only a round from a deltaLink has "changed properties" to restrict to.
        minimal: minimal && cursor.since.is_some(),
        initial_removed: settings.initial_removed_objects,
        stale_member_removals: settings.stale_member_removals,
        hide_deleted_members: settings.full_rounds_hide_deleted_members,
        transient_links_unreported: settings.transient_links_unreported,
    };
    let page = cursor.next_page(&tenant, &shape);
    drop(tenant);
    let query = cursor.query.clone();
    let state = if page.done {
        LinkState::Delta {
            query: cursor.query.clone(),
            since: cursor.until,
        }
    } else {
        LinkState::Next(cursor)
    };
    (page, state, query)
}

/// `{base}/v1.0/users/delta?$skiptoken=…` in the configured form.
fn link_url(
    base: &str,
    ty: ObjectType,
    form: LinkForm,
    serial: u64,
    delta: bool,
    token: &str,
) -> String {
    let function = match (form, serial % 3) {
        (LinkForm::Short, _) | (LinkForm::Alternate, 0) => "delta",
        (LinkForm::Qualified, _) | (LinkForm::Alternate, 1) => "microsoft.graph.delta()",
        (LinkForm::Alternate, _) => "microsoft.graph.delta",
    };
    let param = if delta { "$deltatoken" } else { "$skiptoken" };
    format!("{base}/v1.0/{}/{function}?{param}={token}", ty.segment())
}

fn context_url(base: &str, query: &Query, first_page: bool) -> String {
    let segment = query.ty.segment();
    match query.select.text.as_deref().filter(|_| first_page) {
        Some(select) => format!("{base}/v1.0/$metadata#{segment}({select})"),
        None => format!("{base}/v1.0/$metadata#{segment}"),
    }
}

fn page_body(context: &str, done: bool, link: &str, value: Vec<u8>) -> Vec<u8> {
    let link_name = if done {
        "@odata.deltaLink"
    } else {
        "@odata.nextLink"
    };
    let head = serde_json::json!({ "@odata.context": context, link_name: link }).to_string();
    // Splice `"value":[…]` into the object without re-serialising the (large) array.
    let mut body = Vec::with_capacity(head.len() + value.len() + 10);
    body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    body.extend_from_slice(b",\"value\":");
    body.extend_from_slice(&value);
    body.push(b'}');
    body
}

fn sync_state_not_found(ctx: &Ctx) -> Reply {
    Reply::graph_error(ctx, 400, "syncStateNotFound", SYNC_STATE_MESSAGE)
}

/// 410 with `Location` = the round's initial query with an empty `$deltatoken` (notes 4.2).
fn gone(shared: &Shared, ctx: &Ctx, ty: ObjectType, params: &Params) -> Reply {
    let token = params
        .skiptoken
        .as_deref()
        .or(params.deltatoken.as_deref())
        .unwrap_or_default();
    let query = shared.links().query_of(token);
    let select = query
        .as_ref()
        .map_or(params.select.clone(), |q| q.select.text.clone());
    let filter = query
        .as_ref()
        .map_or(params.filter.clone(), |q| q.filter_text.clone());
    let mut location = format!("{}/v1.0/{}/delta?", shared.base, ty.segment());
    if let Some(select) = select {
        location.push_str(&format!("$select={}&", http::percent_encode(&select)));
    }
    if let Some(filter) = filter {
        location.push_str(&format!("$filter={}&", http::percent_encode(&filter)));
    }
    location.push_str("$deltatoken=");
    Reply::graph_error(ctx, 410, "resyncRequired", "Resync is required.").with("Location", location)
}

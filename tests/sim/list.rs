//! The plain (non-delta) lists of notes 3.11: `GET /v1.0/users`, `GET /v1.0/groups` and
//! `GET /v1.0/groups/{id}/members`, with `$select`, `$top` (1..=999, default 100) and, on the
//! first two, a `$filter` of comparisons joined by `and` (the partition form
//! `userPrincipalName ge 'a' and userPrincipalName lt 'b'`, plus `eq`, `gt`, `le`,
//! `startswith(p,'x')` and `id eq '…'`). String comparisons ignore case.
//!
//! They list live objects only: no soft-deleted users or groups, and a group's members hide
//! soft-deleted users and groups (notes 3.11). Objects come with every selected property,
//! `null` when never set (unlike delta, which leaves those out); groups carry no members.
//!
//! Paging: a nextLink repeats the request's options plus an opaque `$skiptoken` that stands
//! for a cursor; the last page has neither nextLink nor deltaLink. Graph makes no snapshot
//! promise for these lists, and neither does the simulator. The cursor is a position in a
//! fixed internal order (creation order for users and groups, member-key order for members,
//! i.e. the order in which the tenant first saw each member id); each page lists the live
//! objects after it *as they are when the page is built*. So, while the tenant changes
//! between pages: an object created meanwhile is listed on a later page (users and groups
//! are always appended; a new member only if its key sorts after the cursor); an object
//! deleted before its page is not listed; a changed object shows its new values, and may
//! move into or out of a partition's range (a partitioned snapshot can then miss it or list
//! it twice). One listing never lists an object twice.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::graph::{authorize, selection};
use super::http::{self, Ctx, Incoming, Reply};
use super::schema::{ObjectType, Selection};
use super::tenant::{MemberKind, Object, ObjectState, Tenant};
use super::{Endpoint, Settings, Shared};

const DEFAULT_TOP: usize = 100;
const MAX_TOP: usize = 999;

/// What is being listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    Users,
    Groups,
    /// The direct members of the group with this interned key.
    Members {
        group: u32,
    },
}

/// A comparison operator of `$filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
    StartsWith,
}

/// One `$filter` clause; `prop` `None` is `id`; `value` is lower-cased once, at parse time.
#[derive(Clone, Debug)]
struct Clause {
    prop: Option<u8>,
    op: Op,
    value: String,
}

/// A listing's query, fixed by its first request and shared by all its skiptokens.
#[derive(Debug)]
struct ListQuery {
    listing: Listing,
    /// Properties of listed users (and of user members).
    users: Selection,
    /// Properties of listed groups (and of group members).
    groups: Selection,
    /// The `$select` text as sent, for `@odata.context`.
    select_text: Option<String>,
    top: usize,
    filter: Vec<Clause>,
    /// The request's query string minus `$skiptoken`, repeated on every nextLink as Graph does.
    options: String,
}

/// What a skiptoken stands for: the query and where the next page starts (an object index,
/// or a member key).
#[derive(Clone)]
struct ListState {
    query: Arc<ListQuery>,
    next: u64,
}

/// Every skiptoken issued by the plain lists.
#[derive(Default)]
pub(super) struct ListLinks {
    links: HashMap<String, ListState>,
}

/// Answers `GET /v1.0/users`, `GET /v1.0/groups` or `GET /v1.0/groups/{id}/members`.
pub(super) fn serve(
    shared: &Shared,
    incoming: &Incoming,
    ctx: &Ctx,
    endpoint: Endpoint,
    settings: &Settings,
) -> Reply {
    if incoming.method != "GET" {
        return Reply::method_not_allowed(ctx);
    }
    let ty = match endpoint {
        Endpoint::UserList => ObjectType::User,
        _ => ObjectType::Group,
    };
    if let Err(reply) = authorize(shared, incoming, ctx, ty) {
        return reply;
    }
    let state = match start(shared, incoming, ctx, endpoint, settings) {
        Ok(state) => state,
        Err(reply) => return reply,
    };
    let query = state.query.clone();
    let tenant = shared.tenant();
    let page = match query.listing {
        Listing::Members { group } => {
            let Some(index) = live_group(&tenant, group) else {
                drop(tenant);
                return group_not_found(ctx, member_group_id(incoming));
            };
            members_page(&tenant, index, &query, state.next)
        }
        _ => objects_page(&tenant, ty, &query, state.next),
    };
    drop(tenant);
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(context_url(&shared.base, &query)),
    );
    if let Some(next) = page.next {
        let token = http::random_token(3);
        let state = ListState {
            query: query.clone(),
            next,
        };
        lock_links(shared).links.insert(token.clone(), state);
        let base = shared
            .take_foreign_base(endpoint)
            .unwrap_or_else(|| shared.base.clone());
        let separator = if query.options.is_empty() { "" } else { "&" };
        let link = format!(
            "{base}{}?{}{separator}$skiptoken={token}",
            incoming.path, query.options
        );
        body.insert("@odata.nextLink".into(), json!(link));
    }
    body.insert("value".into(), Value::Array(page.value));
    Reply::graph(ctx, 200, Value::Object(body).to_string().into_bytes())
}

impl ListLinks {
    pub(super) fn clear(&mut self) {
        self.links.clear();
    }
}

fn lock_links(shared: &Shared) -> std::sync::MutexGuard<'_, ListLinks> {
    super::lock(&shared.list_links)
}

/// The listing state of this request: from its skiptoken, or a new query from its options.
fn start(
    shared: &Shared,
    incoming: &Incoming,
    ctx: &Ctx,
    endpoint: Endpoint,
    settings: &Settings,
) -> Result<ListState, Reply> {
    let bad_request = |code: &str, message: &str| Reply::graph_error(ctx, 400, code, message);
    let pairs = http::parse_pairs(&incoming.query);
    let mut select = None;
    let mut top = None;
    let mut filter = None;
    let mut skiptoken = None;
    for (key, value) in &pairs {
        match key.to_ascii_lowercase().as_str() {
            "$select" => select = Some(value.clone()),
            "$top" => top = Some(value.clone()),
            "$filter" => filter = Some(value.clone()),
            "$skiptoken" => skiptoken = Some(value.clone()),
            // Graph supports some of these (with ConsistencyLevel: eventual); the simulator
            // does not, and says so rather than ignoring them.
            other if other.starts_with('$') => {
                let message = format!("The query parameter '{key}' is not supported.");
                return Err(bad_request("Request_BadRequest", &message));
            }
            _ => {}
        }
    }
    let group = match endpoint {
        Endpoint::Members => Some(member_group(shared, incoming, ctx)?),
        _ => None,
    };
    let listing = match (endpoint, group) {
        (Endpoint::UserList, _) => Listing::Users,
        (_, Some(group)) => Listing::Members { group },
        _ => Listing::Groups,
    };
    if let Some(token) = skiptoken {
        // The token alone decides the continuation; the repeated options are not re-read.
        let state = lock_links(shared).links.get(&token).cloned();
        return match state.filter(|s| s.query.listing == listing) {
            Some(state) => Ok(state),
            None if settings.expired_list_links_not_found => Err(Reply::graph_error(
                ctx,
                404,
                "UnknownError",
                "The specified page token value has expired.",
            )),
            None => Err(bad_request(
                "Request_BadRequest",
                "The specified page token value has expired and can no longer be included in your request.",
            )),
        };
    }
    let top = match top {
        None => DEFAULT_TOP,
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_TOP).contains(&n) => n,
            _ => {
                let message = format!(
                    "Invalid page size specified: '{text}'. Must be between 1 and {MAX_TOP} inclusive."
                );
                return Err(bad_request("Request_BadRequest", &message));
            }
        },
    };
    let filter = match filter {
        None => Vec::new(),
        Some(_)
            if settings.refuse_partition_filter
                || listing != Listing::Users && listing != Listing::Groups =>
        {
            return Err(bad_request(
                "Request_UnsupportedQuery",
                "Unsupported Query.",
            ));
        }
        Some(text) => {
            let ty = if listing == Listing::Users {
                ObjectType::User
            } else {
                ObjectType::Group
            };
            parse_filter(ty, &text).map_err(|(code, message)| bad_request(code, &message))?
        }
    };
    let (users, groups) = match listing {
        Listing::Users => (
            selection(ctx, ObjectType::User, select.as_deref())?,
            Selection::parse(ObjectType::Group, Some("id")).map_err(|_| internal(ctx))?,
        ),
        Listing::Groups => (
            Selection::parse(ObjectType::User, Some("id")).map_err(|_| internal(ctx))?,
            selection(ctx, ObjectType::Group, select.as_deref())?,
        ),
        Listing::Members { .. } => member_selections(ctx, select.as_deref())?,
    };
    let options = incoming
        .query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            !pair.is_empty() && !http::percent_decode(key, true).eq_ignore_ascii_case("$skiptoken")
        })
        .collect::<Vec<_>>()
        .join("&");
    let query = ListQuery {
        listing,
        users,
        groups,
        select_text: select,
        top,
        filter,
        options,
    };
    Ok(ListState {
        query: Arc::new(query),
        next: 0,
    })
}

fn internal(ctx: &Ctx) -> Reply {
    Reply::graph_error(
        ctx,
        500,
        "UnknownError",
        "An internal server error occurred.",
    )
}

/// Members are directory objects of mixed types: each `$select` name must exist on users or
/// on groups, and applies to the members of the types that have it.
fn member_selections(ctx: &Ctx, select: Option<&str>) -> Result<(Selection, Selection), Reply> {
    let Some(text) = select else {
        return Ok((
            selection(ctx, ObjectType::User, None)?,
            selection(ctx, ObjectType::Group, None)?,
        ));
    };
    let mut user_names = vec!["id"];
    let mut group_names = vec!["id"];
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let on_user = ObjectType::User.prop_index(name).is_some();
        let on_group = ObjectType::Group.prop_index(name).is_some();
        if name.eq_ignore_ascii_case("id") {
            continue;
        }
        if !on_user && !on_group {
            let message = format!(
                "Could not find a property named '{name}' on type 'microsoft.graph.directoryObject'."
            );
            return Err(Reply::graph_error(ctx, 400, "Request_BadRequest", &message));
        }
        if on_user {
            user_names.push(name);
        }
        if on_group {
            group_names.push(name);
        }
    }
    Ok((
        selection(ctx, ObjectType::User, Some(&user_names.join(",")))?,
        selection(ctx, ObjectType::Group, Some(&group_names.join(",")))?,
    ))
}

/// The interned key of the live group `/groups/{id}/members` names; 404 otherwise.
fn member_group(shared: &Shared, incoming: &Incoming, ctx: &Ctx) -> Result<u32, Reply> {
    let id = member_group_id(incoming);
    let tenant = shared.tenant();
    let key = tenant
        .key(id)
        .or_else(|| tenant.key(&id.to_ascii_lowercase()));
    match key.filter(|k| live_group(&tenant, *k).is_some()) {
        Some(key) => Ok(key),
        None => {
            drop(tenant);
            Err(group_not_found(ctx, id))
        }
    }
}

fn member_group_id(incoming: &Incoming) -> &str {
    incoming.path.split('/').nth(3).unwrap_or_default()
}

fn live_group(tenant: &Tenant, key: u32) -> Option<usize> {
    let index = tenant.groups.index_of(key)?;
    (tenant.groups.objects[index].state == ObjectState::Live).then_some(index)
}

fn group_not_found(ctx: &Ctx, id: &str) -> Reply {
    let message = format!(
        "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
    );
    Reply::graph_error(ctx, 404, "Request_ResourceNotFound", &message)
}

/// One built page: its objects and, if more follow, where the next page starts.
struct ListPage {
    value: Vec<Value>,
    next: Option<u64>,
}

fn objects_page(tenant: &Tenant, ty: ObjectType, query: &ListQuery, next: u64) -> ListPage {
    let objects = &tenant.collection(ty).objects;
    let select = match ty {
        ObjectType::User => &query.users,
        ObjectType::Group => &query.groups,
    };
    let wanted = |object: &Object| {
        object.state == ObjectState::Live
            && query
                .filter
                .iter()
                .all(|clause| clause_matches(tenant, object, clause))
    };
    let mut value = Vec::new();
    let mut index = usize::try_from(next).unwrap_or(usize::MAX);
    while index < objects.len() && value.len() < query.top {
        if wanted(&objects[index]) {
            value.push(render(tenant, ty, &objects[index], select));
        }
        index += 1;
    }
    // Look ahead, so that the last page carries no nextLink (and the scan isn't repeated).
    while index < objects.len() && !wanted(&objects[index]) {
        index += 1;
    }
    ListPage {
        value,
        next: (index < objects.len()).then_some(index as u64),
    }
}

fn members_page(tenant: &Tenant, group: usize, query: &ListQuery, next: u64) -> ListPage {
    let members = &tenant.groups.objects[group].members;
    let start = members.partition_point(|m| u64::from(m.key) < next);
    // Soft-deleted users (and groups) keep their links but are not listed (notes 3.11).
    let mut value = Vec::new();
    let mut rest = members[start..]
        .iter()
        .filter(|m| tenant.member_is_live(m))
        .peekable();
    while value.len() < query.top {
        let Some(member) = rest.next() else { break };
        let mut entry = Map::new();
        entry.insert("@odata.type".into(), json!(member.kind.odata_type()));
        let (ty, select) = match member.kind {
            MemberKind::User => (Some(ObjectType::User), &query.users),
            MemberKind::Group => (Some(ObjectType::Group), &query.groups),
            _ => (None, &query.users),
        };
        let object = ty.and_then(|ty| {
            let collection = tenant.collection(ty);
            Some((ty, &collection.objects[collection.index_of(member.key)?]))
        });
        match object {
            Some((ty, object)) => {
                if let Value::Object(props) = render(tenant, ty, object, select) {
                    entry.extend(props);
                }
            }
            // Members the model has no object for (devices, contacts, …): id only.
            None => {
                entry.insert("id".into(), json!(tenant.id(member.key)));
            }
        }
        value.push(Value::Object(entry));
    }
    ListPage {
        value,
        next: rest.peek().map(|m| u64::from(m.key)),
    }
}

/// `id` and every selected property, `null` when never set.
fn render(tenant: &Tenant, ty: ObjectType, object: &Object, select: &Selection) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), json!(tenant.id(object.key)));
    for index in 0..ty.props().len() {
        let Ok(index) = u8::try_from(index) else {
            break;
        };
        if !select.has(index) {
            continue;
        }
        let value = object
            .props
            .binary_search_by_key(&index, |p| p.name)
            .map_or(Value::Null, |pos| object.props[pos].value.clone());
        map.insert(ty.prop_name(index).into(), value);
    }
    Value::Object(map)
}

fn context_url(base: &str, query: &ListQuery) -> String {
    let segment = match query.listing {
        Listing::Users => "users",
        Listing::Groups => "groups",
        Listing::Members { .. } => return format!("{base}/v1.0/$metadata#directoryObjects"),
    };
    match &query.select_text {
        Some(select) => format!("{base}/v1.0/$metadata#{segment}({select})"),
        None => format!("{base}/v1.0/$metadata#{segment}"),
    }
}

fn clause_matches(tenant: &Tenant, object: &Object, clause: &Clause) -> bool {
    let value = match clause.prop {
        None => Some(tenant.id(object.key)),
        Some(prop) => object
            .props
            .binary_search_by_key(&prop, |p| p.name)
            .ok()
            .and_then(|pos| object.props[pos].value.as_str()),
    };
    // A property that is unset, null or not a string matches no comparison.
    let Some(value) = value else {
        return false;
    };
    // Case-folded on the fly: a partition scan checks every object, so no allocation here.
    let mut folded = value.chars().flat_map(char::to_lowercase);
    let order = || {
        value
            .chars()
            .flat_map(char::to_lowercase)
            .cmp(clause.value.chars())
    };
    match clause.op {
        Op::StartsWith => clause.value.chars().all(|c| folded.next() == Some(c)),
        Op::Eq => order().is_eq(),
        Op::Ge => order().is_ge(),
        Op::Gt => order().is_gt(),
        Op::Le => order().is_le(),
        Op::Lt => order().is_lt(),
    }
}

/// A `$filter` token.
#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Punct(char),
}

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' => {
                tokens.push(Token::Punct(c));
                chars.next();
            }
            '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next()? {
                        // '' is an escaped quote inside an OData string literal.
                        '\'' if chars.peek() == Some(&'\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        '\'' => break,
                        c => value.push(c),
                    }
                }
                tokens.push(Token::Text(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | ',' | '\'') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Some(tokens)
}

/// Parses `clause (and clause)*`; errors are (code, message) for a 400.
fn parse_filter(ty: ObjectType, text: &str) -> Result<Vec<Clause>, (&'static str, String)> {
    let syntax = || ("BadRequest", format!("Invalid filter clause: '{text}'."));
    let tokens = tokenize(text).ok_or_else(syntax)?;
    let mut tokens = tokens.into_iter();
    let mut clauses = Vec::new();
    loop {
        let (name, op, value) = match tokens.next() {
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("startswith") => {
                let (
                    Some(Token::Punct('(')),
                    Some(Token::Word(name)),
                    Some(Token::Punct(',')),
                    Some(Token::Text(value)),
                    Some(Token::Punct(')')),
                ) = (
                    tokens.next(),
                    tokens.next(),
                    tokens.next(),
                    tokens.next(),
                    tokens.next(),
                )
                else {
                    return Err(syntax());
                };
                (name, Op::StartsWith, value)
            }
            Some(Token::Word(name)) => {
                let (Some(Token::Word(op)), Some(Token::Text(value))) =
                    (tokens.next(), tokens.next())
                else {
                    return Err(syntax());
                };
                let op = match op.to_ascii_lowercase().as_str() {
                    "eq" => Op::Eq,
                    "ge" => Op::Ge,
                    "gt" => Op::Gt,
                    "le" => Op::Le,
                    "lt" => Op::Lt,
                    _ => return Err(syntax()),
                };
                (name, op, value)
            }
            _ => return Err(syntax()),
        };
        let unsupported = || {
            (
                "Request_UnsupportedQuery",
                format!(
                    "Unsupported or invalid query filter clause specified for property '{name}' of resource '{}'.",
                    ty.graph_type()
                ),
            )
        };
        let prop = if name.eq_ignore_ascii_case("id") {
            // "'id' can only be used with eq" (notes 3.11).
            if op != Op::Eq {
                return Err(unsupported());
            }
            None
        } else {
            Some(ty.prop_index(&name).ok_or_else(unsupported)?)
        };
        let value = value.chars().flat_map(char::to_lowercase).collect();
        clauses.push(Clause { prop, op, value });
        match tokens.next() {
            None => return Ok(clauses),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("and") => {}
            _ => return Err(syntax()),
        }
    }
}

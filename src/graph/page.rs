//! A delta page: parsed whole or refused whole.
//!
//! The parser is the boundary against whatever a server (or something posing as one) sends:
//! it streams the body into typed parts, keeps only the selected properties, checks each one's
//! type (`"accountEnabled": "false"` is refused, not stored as text that reads as enabled), and
//! stops at [`MAX_OBJECTS`] objects and [`MAX_MEMBER_ENTRIES`] member entries, so a hostile
//! page costs at most a bounded multiple of its (already limited) size in memory.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::Resource;

mod props;

pub use props::Props;

/// Objects on one page beyond which the page is refused. Graph sends up to 200 (graph-protocol
/// 3.5); the margin is wide because that figure is observed, not documented.
pub const MAX_OBJECTS: usize = 5_000;
/// `members@delta` entries on one page (all its groups together) beyond which the page is
/// refused. Graph's cap is about 500 link objects per page (3.5, unconfirmed).
pub const MAX_MEMBER_ENTRIES: usize = 20_000;
/// Longest id or text property, in bytes. Graph's are far shorter (ids are GUIDs, a
/// description is at most 1,024 characters); a longer one is not a directory object.
pub const MAX_TEXT: usize = 16 * 1024;

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
    pub props: Props,
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
    /// Shared with the changes planned for it (a first import plans a million).
    pub id: Arc<str>,
    pub kind: MemberType,
    pub removed: bool,
}

/// A member's type: `user`, `group`, `device`, `servicePrincipal`, `orgContact` (the
/// `@odata.type` without its `#microsoft.graph.` prefix), or `unknown` without one. Graph
/// sends a handful of names, so each known one is shared, not a string per member: a first
/// import reads a million, and plans a change for each.
pub type MemberType = Cow<'static, str>;

/// The type of a member entry without `@odata.type`.
pub const UNTYPED: &str = "unknown";

/// `name` as a [`MemberType`]: a known type's shared name, any other copied.
pub fn member_type(name: &str) -> MemberType {
    const KNOWN: [&str; 6] = [
        "user",
        "group",
        "device",
        "servicePrincipal",
        "orgContact",
        UNTYPED,
    ];
    match KNOWN.into_iter().find(|known| *known == name) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(name.to_owned()),
    }
}
/// The JSON type a selected property must have (`null` is always allowed: cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PropType {
    Text,
    Bool,
    TextList,
}

/// A property of `resource`'s `$select` list as the constant the parser keeps it under,
/// with its type; `None` for anything not selected (skipped: only selected properties are
/// tracked, SCHEMA.md `attributes`). `id` and the `members` relationship are read
/// separately.
fn selected(resource: Resource, name: &str) -> Option<(&'static str, PropType)> {
    selected_props(resource)
        .iter()
        .find(|(selected, _)| *selected == name)
        .copied()
}

/// The properties of `resource`'s `$select` list (`USER_SELECT`, `GROUP_SELECT`) the parser
/// keeps, with their types.
fn selected_props(resource: Resource) -> &'static [(&'static str, PropType)] {
    use PropType::{Bool, Text, TextList};
    const USERS: [(&str, PropType); 9] = [
        ("accountEnabled", Bool),
        ("department", Text),
        ("displayName", Text),
        ("givenName", Text),
        ("jobTitle", Text),
        ("mail", Text),
        ("surname", Text),
        ("userPrincipalName", Text),
        ("userType", Text),
    ];
    const GROUPS: [(&str, PropType); 7] = [
        ("description", Text),
        ("displayName", Text),
        ("groupTypes", TextList),
        ("mail", Text),
        ("mailEnabled", Bool),
        ("mailNickname", Text),
        ("securityEnabled", Bool),
    ];
    match resource {
        Resource::Users => &USERS,
        Resource::Groups => &GROUPS,
    }
}

/// One page of `GET /users` or `GET /groups` (graph-protocol.md 3.11): live objects only, no
/// deltaLink; `next` is the nextLink, `None` on the last page.
#[derive(Debug)]
pub struct ListPage {
    pub objects: Vec<DirectoryObject>,
    pub next: Option<String>,
}

/// One page of `GET /groups/{id}/members`: the group's direct members (`removed` always
/// false), `next` as on a [`ListPage`].
#[derive(Debug)]
pub struct MembersPage {
    pub members: Vec<MemberChange>,
    pub next: Option<String>,
}

/// Parses a `resource` delta page. Exactly one of nextLink and deltaLink must be present; the
/// error says what is wrong (it may quote the body: pass it through `http::server_text`).
pub fn parse_page(resource: Resource, body: &[u8]) -> Result<Page, String> {
    let mut members = 0;
    let seed = ObjectsSeed {
        resource,
        delta: true,
        members: &mut members,
    };
    let envelope = parse_envelope(body, seed)?;
    let objects = envelope.value.ok_or("no \"value\" array")?;
    let next = match (envelope.next_link, envelope.delta_link) {
        (Some(next), None) => Next::More(next),
        (None, Some(delta)) => Next::Done(delta),
        (Some(_), Some(_)) => return Err("both a nextLink and a deltaLink".into()),
        (None, None) => return Err("neither a nextLink nor a deltaLink".into()),
    };
    Ok(Page { objects, next })
}

/// Parses a page of the plain `resource` list, as [`parse_page`] does a delta page, with the
/// same types and caps. A list carries no delta annotations: a deltaLink or an `@removed`
/// object refuses the page, `members@delta` is not selected and skipped.
pub fn parse_list(resource: Resource, body: &[u8]) -> Result<ListPage, String> {
    let mut members = 0;
    let seed = ObjectsSeed {
        resource,
        delta: false,
        members: &mut members,
    };
    let envelope = parse_envelope(body, seed)?;
    let objects = envelope.value.ok_or("no \"value\" array")?;
    if envelope.delta_link.is_some() {
        return Err("a deltaLink on a list page".into());
    }
    Ok(ListPage {
        objects,
        next: envelope.next_link,
    })
}

/// Parses a page of a group's members: directory objects of which only `@odata.type` and `id`
/// are read, at most [`MAX_MEMBER_ENTRIES`]; a deltaLink or an `@removed` entry refuses it.
pub fn parse_members(body: &[u8]) -> Result<MembersPage, String> {
    let mut count = 0;
    let seed = MembersSeed {
        members: &mut count,
        nullable: false,
    };
    let envelope = parse_envelope(body, seed)?;
    let members = envelope.value.flatten().ok_or("no \"value\" array")?;
    if envelope.delta_link.is_some() {
        return Err("a deltaLink on a members page".into());
    }
    if members.iter().any(|m| m.removed) {
        return Err("a removed entry on a members page".into());
    }
    Ok(MembersPage {
        members,
        next: envelope.next_link,
    })
}

/// What every page of a Graph collection holds: its `value` (read by the seed given) and its
/// links, each at most once; other top-level keys (`@odata.context`) are skipped.
struct Envelope<T> {
    value: Option<T>,
    next_link: Option<String>,
    delta_link: Option<String>,
}

/// Parses `body` whole as an [`Envelope`] whose `value` `seed` reads.
fn parse_envelope<'de, S: DeserializeSeed<'de>>(
    body: &'de [u8],
    seed: S,
) -> Result<Envelope<S::Value>, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let envelope = EnvelopeSeed { value: seed }
        .deserialize(&mut deserializer)
        .map_err(|e| format!("invalid page: {e}"))?;
    deserializer
        .end()
        .map_err(|e| format!("invalid page: {e}"))?;
    Ok(envelope)
}

struct EnvelopeSeed<S> {
    value: S,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for EnvelopeSeed<S> {
    type Value = Envelope<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for EnvelopeSeed<S> {
    type Value = Envelope<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a page (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seed = Some(self.value);
        let mut envelope = Envelope {
            value: None,
            next_link: None,
            delta_link: None,
        };
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key {
                "@odata.nextLink" => once(&mut envelope.next_link, map.next_value()?, &key)?,
                "@odata.deltaLink" => once(&mut envelope.delta_link, map.next_value()?, &key)?,
                "value" => {
                    // The seed reads one value; a second is refused before it is read.
                    let Some(seed) = seed.take() else {
                        return Err(de::Error::custom(format!("duplicate {key:?}")));
                    };
                    envelope.value = Some(map.next_value_seed(seed)?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(envelope)
    }
}

/// A key or short name of a page, borrowed from the body unless JSON escapes in it made
/// a copy necessary. (`Cow<str>` itself always copies, even as a map key or inside an
/// `Option` under `#[serde(borrow)]`: a copy per property of every object, and per member.)
struct Key<'de>(Cow<'de, str>);

impl std::ops::Deref for Key<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Stores a page- or object-level field, refusing a second one: which of two would count is
/// up to the reader, and readers must not disagree about a page.
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T, key: &str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::custom(format!("duplicate {key:?}")));
    }
    *slot = Some(value);
    Ok(())
}

struct ObjectsSeed<'a> {
    resource: Resource,
    /// A delta page (`@removed` and `members@delta` read), or a list page (neither).
    delta: bool,
    /// Member entries read so far on this page.
    members: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for ObjectsSeed<'_> {
    type Value = Vec<DirectoryObject>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ObjectsSeed<'_> {
    type Value = Vec<DirectoryObject>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"value\" to be an array of directory objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut objects = Vec::new();
        loop {
            let seed = ObjectSeed {
                resource: self.resource,
                delta: self.delta,
                members: &mut *self.members,
            };
            let Some(object) = seq.next_element_seed(seed)? else {
                return Ok(objects);
            };
            if objects.len() == MAX_OBJECTS {
                return Err(de::Error::custom(format!(
                    "more than {MAX_OBJECTS} objects on one page"
                )));
            }
            objects.push(object);
        }
    }
}

/// Reads an object straight into its typed parts, keeping absent and null apart, keeping only
/// the selected properties (type-checked), and skipping annotations other than `@removed` and
/// `members@delta`.
struct ObjectSeed<'a> {
    resource: Resource,
    delta: bool,
    members: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = DirectoryObject;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = DirectoryObject;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a directory object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DirectoryObject, A::Error> {
        let mut id = None;
        let mut removed = None;
        let mut props = Props::with_capacity(selected_props(self.resource).len());
        let mut members: Option<Vec<MemberChange>> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key {
                "id" => once(
                    &mut id,
                    checked_text(map.next_value::<String>()?, "id")?,
                    &key,
                )?,
                "@removed" if !self.delta => {
                    return Err(de::Error::custom("an @removed object on a list page"));
                }
                "@removed" => {
                    let annotation = map.next_value::<RemovedAnnotation>()?.into();
                    once(&mut removed, annotation, &key)?;
                }
                "members@delta" if self.delta => {
                    let seed = MembersSeed {
                        members: &mut *self.members,
                        nullable: true,
                    };
                    let list = map.next_value_seed(seed)?.unwrap_or_default();
                    members.get_or_insert_with(Vec::new).extend(list);
                }
                name => match selected(self.resource, name) {
                    Some((name, ty)) => {
                        let value = map.next_value_seed(PropSeed { name, ty })?;
                        props.insert(name, value);
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
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

/// One selected property, checked against its type.
struct PropSeed<'a> {
    name: &'a str,
    ty: PropType,
}

impl<'de> DeserializeSeed<'de> for PropSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PropSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let ty = match self.ty {
            PropType::Text => "a string",
            PropType::Bool => "true or false",
            PropType::TextList => "an array of strings",
        };
        write!(f, "{} to be {ty} or null", self.name)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        match self.ty {
            PropType::Bool => Ok(Value::Bool(v)),
            _ => Err(de::Error::invalid_type(de::Unexpected::Bool(v), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        match self.ty {
            PropType::Text => Ok(Value::String(checked_text(v.to_owned(), self.name)?)),
            _ => Err(de::Error::invalid_type(de::Unexpected::Str(v), &self)),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.ty != PropType::TextList {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            items.push(Value::String(checked_text(item, self.name)?));
        }
        Ok(Value::Array(items))
    }
}

/// `text` if it is at most [`MAX_TEXT`] bytes long.
fn checked_text<E: de::Error>(text: String, name: &str) -> Result<String, E> {
    checked_len(&text, name)?;
    Ok(text)
}

/// Refuses `text` if it is more than [`MAX_TEXT`] bytes long.
fn checked_len<E: de::Error>(text: &str, name: &str) -> Result<(), E> {
    if text.len() > MAX_TEXT {
        return Err(E::custom(format!(
            "{name} is {} bytes long, more than {MAX_TEXT}",
            text.len()
        )));
    }
    Ok(())
}

/// `members@delta`: a list (or `null`, read as no changes), counted against the page's cap;
/// also the `value` of a members page (not `nullable` there).
struct MembersSeed<'a> {
    members: &'a mut usize,
    nullable: bool,
}

impl<'de> DeserializeSeed<'de> for MembersSeed<'_> {
    type Value = Option<Vec<MemberChange>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        if self.nullable {
            deserializer.deserialize_option(self)
        } else {
            deserializer.deserialize_seq(self)
        }
    }
}

impl<'de> Visitor<'de> for MembersSeed<'_> {
    type Value = Option<Vec<MemberChange>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.nullable {
            f.write_str("members@delta to be an array of member entries or null")
        } else {
            f.write_str("\"value\" to be an array of member entries")
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::new();
        while let Some(member) = seq.next_element::<MemberChange>()? {
            *self.members += 1;
            if *self.members > MAX_MEMBER_ENTRIES {
                return Err(de::Error::custom(format!(
                    "more than {MAX_MEMBER_ENTRIES} member entries on one page"
                )));
            }
            list.push(member);
        }
        Ok(Some(list))
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
            // Borrowed: the member's one copy is the shared one below.
            #[serde(borrow)]
            id: Key<'a>,
            #[serde(rename = "@odata.type", borrow, default)]
            odata_type: Option<Key<'a>>,
            #[serde(rename = "@removed", default)]
            removed: Option<IgnoredAny>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let kind = match raw.odata_type.as_deref() {
            Some(t) => member_type(
                t.trim_start_matches('#')
                    .trim_start_matches("microsoft.graph."),
            ),
            None => Cow::Borrowed(UNTYPED),
        };
        Ok(MemberChange {
            id: {
                checked_len(&raw.id, "a member id")?;
                Arc::from(&*raw.id)
            },
            kind,
            removed: raw.removed.is_some(),
        })
    }
}

#[cfg(test)]
mod tests;

/// Issue 7 item 6: random and mutated input never panics the page parser, and what it accepts
/// always has the promised shape.
#[cfg(test)]
mod properties;

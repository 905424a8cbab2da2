//! A delta page: parsed whole or refused whole.
//!
//! The parser is the boundary against whatever a server (or something posing as one) sends:
//! it streams the body into typed parts, keeps only the selected properties, checks each one's
//! type (`"accountEnabled": "false"` is refused, not stored as text that reads as enabled), and
//! stops at [`MAX_OBJECTS`] objects and [`MAX_MEMBER_ENTRIES`] member entries, so a hostile
//! page costs at most a bounded multiple of its (already limited) size in memory.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::Resource;

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
    pub props: Map<String, Value>,
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
    pub id: String,
    /// `user`, `group`, `device`, `servicePrincipal`, `orgContact` (the `@odata.type` without
    /// its `#microsoft.graph.` prefix).
    pub kind: String,
    pub removed: bool,
}
/// The JSON type a selected property must have (`null` is always allowed: cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PropType {
    Text,
    Bool,
    TextList,
}

/// The type of a property in `resource`'s `$select` list; `None` for anything not selected
/// (skipped: only selected properties are tracked, SCHEMA.md `attributes`). `id` and the
/// `members` relationship are read separately.
fn prop_type(resource: Resource, name: &str) -> Option<PropType> {
    match (resource, name) {
        (Resource::Users, "accountEnabled") => Some(PropType::Bool),
        (
            Resource::Users,
            "displayName" | "userPrincipalName" | "mail" | "givenName" | "surname" | "userType"
            | "jobTitle" | "department",
        ) => Some(PropType::Text),
        (Resource::Groups, "mailEnabled" | "securityEnabled") => Some(PropType::Bool),
        (Resource::Groups, "groupTypes") => Some(PropType::TextList),
        (Resource::Groups, "displayName" | "description" | "mail" | "mailNickname") => {
            Some(PropType::Text)
        }
        _ => None,
    }
}

/// Parses a `resource` delta page. Exactly one of nextLink and deltaLink must be present; the
/// error says what is wrong (it may quote the body: pass it through `http::server_text`).
pub fn parse_page(resource: Resource, body: &[u8]) -> Result<Page, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let page = PageSeed { resource }
        .deserialize(&mut deserializer)
        .map_err(|e| format!("invalid page: {e}"))?;
    deserializer
        .end()
        .map_err(|e| format!("invalid page: {e}"))?;
    page
}

struct PageSeed {
    resource: Resource,
}

impl<'de> DeserializeSeed<'de> for PageSeed {
    /// The outer error is JSON (with its position), the inner one the page's shape.
    type Value = Result<Page, String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed {
    type Value = Result<Page, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a delta page (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut next_link: Option<String> = None;
        let mut delta_link: Option<String> = None;
        let mut objects: Option<Vec<DirectoryObject>> = None;
        let mut members = 0;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "@odata.nextLink" => once(&mut next_link, map.next_value()?, &key)?,
                "@odata.deltaLink" => once(&mut delta_link, map.next_value()?, &key)?,
                "value" => {
                    let seed = ObjectsSeed {
                        resource: self.resource,
                        members: &mut members,
                    };
                    once(&mut objects, map.next_value_seed(seed)?, &key)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some(objects) = objects else {
            return Ok(Err("no \"value\" array".into()));
        };
        let next = match (next_link, delta_link) {
            (Some(next), None) => Next::More(next),
            (None, Some(delta)) => Next::Done(delta),
            (Some(_), Some(_)) => return Ok(Err("both a nextLink and a deltaLink".into())),
            (None, None) => return Ok(Err("neither a nextLink nor a deltaLink".into())),
        };
        Ok(Ok(Page { objects, next }))
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
        let mut props = Map::new();
        let mut members: Option<Vec<MemberChange>> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "id" => once(
                    &mut id,
                    checked_text(map.next_value::<String>()?, "id")?,
                    &key,
                )?,
                "@removed" => {
                    let annotation = map.next_value::<RemovedAnnotation>()?.into();
                    once(&mut removed, annotation, &key)?;
                }
                "members@delta" => {
                    let seed = MembersSeed {
                        members: &mut *self.members,
                    };
                    let list = map.next_value_seed(seed)?.unwrap_or_default();
                    members.get_or_insert_with(Vec::new).extend(list);
                }
                name => match prop_type(self.resource, name) {
                    Some(ty) => {
                        let value = map.next_value_seed(PropSeed { name, ty })?;
                        props.insert(name.to_owned(), value);
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
    if text.len() > MAX_TEXT {
        return Err(E::custom(format!(
            "{name} is {} bytes long, more than {MAX_TEXT}",
            text.len()
        )));
    }
    Ok(text)
}

/// `members@delta`: a list (or `null`, read as no changes), counted against the page's cap.
struct MembersSeed<'a> {
    members: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for MembersSeed<'_> {
    type Value = Option<Vec<MemberChange>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for MembersSeed<'_> {
    type Value = Option<Vec<MemberChange>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("members@delta to be an array of member entries or null")
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
            id: String,
            #[serde(rename = "@odata.type", borrow, default)]
            odata_type: Option<std::borrow::Cow<'a, str>>,
            #[serde(rename = "@removed", default)]
            removed: Option<IgnoredAny>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let kind = match raw.odata_type.as_deref() {
            Some(t) => t
                .trim_start_matches('#')
                .trim_start_matches("microsoft.graph.")
                .to_owned(),
            None => "unknown".to_owned(),
        };
        Ok(MemberChange {
            id: checked_text(raw.id, "a member id")?,
            kind,
            removed: raw.removed.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(body: &[u8]) -> Result<Page, String> {
        parse_page(Resource::Users, body)
    }

    fn groups(body: &[u8]) -> Result<Page, String> {
        parse_page(Resource::Groups, body)
    }

    fn err(resource: Resource, body: &str) -> String {
        match parse_page(resource, body.as_bytes()) {
            Ok(page) => panic!("accepted: {page:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn page_keeps_absent_and_null_apart() {
        let page = users(
            br#"{"@odata.context":"x","@odata.deltaLink":"https://g/v1.0/users/delta?$deltatoken=a",
            "value":[{"id":"u1","displayName":"Cy","mail":null,"manager@delta":[]},
                     {"id":"u2","@removed":{"reason":"changed"}},
                     {"id":"u3","@removed":{"reason":"deleted"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            page.next,
            Next::Done("https://g/v1.0/users/delta?$deltatoken=a".into())
        );
        let u1 = &page.objects[0];
        assert_eq!(u1.props.get("displayName"), Some(&Value::from("Cy")));
        assert_eq!(u1.props.get("mail"), Some(&Value::Null));
        assert!(!u1.props.contains_key("surname"));
        assert!(!u1.props.contains_key("manager@delta"));
        assert_eq!(page.objects[1].removed, Some(Removal::Soft));
        assert_eq!(page.objects[2].removed, Some(Removal::Permanent));
        // An unknown or missing reason is read as restorable, never as a purge.
        let page = users(
            br#"{"@odata.nextLink":"n","value":[{"id":"u4","@removed":{}},
            {"id":"u5","@removed":{"reason":"archived"}}]}"#,
        )
        .unwrap();
        assert!(
            page.objects
                .iter()
                .all(|o| o.removed == Some(Removal::Soft))
        );
    }

    #[test]
    fn members_delta_is_typed() {
        let page = groups(
            br##"{"@odata.nextLink":"n","value":[{"id":"g1","displayName":"All",
            "members@delta":[{"@odata.type":"#microsoft.graph.user","id":"u1"},
            {"@odata.type":"#microsoft.graph.group","id":"g2"},
            {"@odata.type":"#microsoft.graph.user","id":"u9","@removed":{"reason":"deleted"}}]},
            {"id":"g3","displayName":"Empty"}]}"##,
        )
        .unwrap();
        let members = page.objects[0].members.as_ref().unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members[1].kind, "group");
        assert!(members[2].removed);
        assert_eq!(page.objects[1].members, None);
        assert_eq!(page.next, Next::More("n".into()));
    }

    #[test]
    fn broken_pages_are_rejected_whole() {
        assert!(users(br#"{"value":[{"id":"u1"}]"#).is_err());
        assert!(users(br#"{"value":[{"id":"u1"}]}"#).is_err());
        assert!(users(br#"{"@odata.nextLink":"a","@odata.deltaLink":"b","value":[]}"#).is_err());
        assert!(users(br#"{"@odata.nextLink":"a","value":[{"displayName":"no id"}]}"#).is_err());
        assert!(users(br#"<html>gateway</html>"#).is_err());
    }

    #[test]
    fn pages_are_refused_for_a_duplicate_link_value_or_id() {
        let e = err(
            Resource::Users,
            r#"{"@odata.nextLink":"a","@odata.nextLink":"b","value":[]}"#,
        );
        assert!(e.contains("duplicate \"@odata.nextLink\""), "{e}");
        let e = err(
            Resource::Users,
            r#"{"@odata.nextLink":"a","value":[],"value":[{"id":"u"}]}"#,
        );
        assert!(e.contains("duplicate \"value\""), "{e}");
        let e = err(
            Resource::Users,
            r#"{"@odata.nextLink":"a","value":[{"id":"u1","id":"u2"}]}"#,
        );
        assert!(e.contains("duplicate \"id\""), "{e}");
        let e = err(
            Resource::Users,
            r#"{"@odata.nextLink":"a","value":[]} trailing"#,
        );
        assert!(e.contains("trailing"), "{e}");
    }

    /// Issue 7 item 11: a selected property of the wrong type refuses the page whole.
    #[test]
    fn typed_properties_are_type_checked() {
        let page = |resource, object: &str| {
            parse_page(
                resource,
                format!(
                    r#"{{"@odata.nextLink":"n","value":[{{"id":"x1"}},{{"id":"x2",{object}}}]}}"#
                )
                .as_bytes(),
            )
        };
        for (resource, object, expected) in [
            (
                Resource::Users,
                r#""accountEnabled":"false""#,
                "accountEnabled to be true or false or null",
            ),
            (
                Resource::Users,
                r#""accountEnabled":0"#,
                "accountEnabled to be true or false",
            ),
            (
                Resource::Users,
                r#""accountEnabled":{"value":false}"#,
                "accountEnabled to be true",
            ),
            (
                Resource::Users,
                r#""displayName":false"#,
                "displayName to be a string or null",
            ),
            (
                Resource::Users,
                r#""userPrincipalName":["a@b"]"#,
                "userPrincipalName to be a string",
            ),
            (Resource::Users, r#""mail":12"#, "mail to be a string"),
            (
                Resource::Groups,
                r#""securityEnabled":"true""#,
                "securityEnabled to be true or false",
            ),
            (
                Resource::Groups,
                r#""mailEnabled":1"#,
                "mailEnabled to be true or false",
            ),
            (
                Resource::Groups,
                r#""groupTypes":"Unified""#,
                "groupTypes to be an array of strings",
            ),
            (Resource::Groups, r#""groupTypes":[1]"#, "a string"),
            (Resource::Groups, r#""groupTypes":[null]"#, "a string"),
            (
                Resource::Groups,
                r#""description":{}"#,
                "description to be a string",
            ),
            (
                Resource::Groups,
                r#""members@delta":{"id":"u1"}"#,
                "members@delta to be an array",
            ),
            (
                Resource::Groups,
                r#""members@delta":[{"id":7}]"#,
                "invalid type",
            ),
        ] {
            let e = page(resource, object).unwrap_err();
            assert!(e.contains(expected), "{object}: {e}");
        }
        // The right types, and null for each, are accepted.
        let ok = page(
            Resource::Users,
            r#""accountEnabled":false,"displayName":"A","mail":null,"jobTitle":null"#,
        )
        .unwrap();
        assert_eq!(ok.objects[1].props["accountEnabled"], Value::Bool(false));
        assert_eq!(ok.objects[1].props["mail"], Value::Null);
        let ok = page(
            Resource::Groups,
            r#""securityEnabled":true,"mailEnabled":null,"groupTypes":["Unified"],"members@delta":null"#,
        )
        .unwrap();
        assert_eq!(
            ok.objects[1].props["groupTypes"],
            serde_json::json!(["Unified"])
        );
        assert_eq!(ok.objects[1].members, Some(vec![]));
    }

    /// Only selected properties are kept: the rest is neither stored nor held in memory.
    #[test]
    fn unselected_properties_are_skipped_whatever_their_shape() {
        let page = users(
            br#"{"@odata.nextLink":"n","value":[{"id":"u1","displayName":"A",
            "aboutMe":[[[[{"deep":1}]]]],"securityEnabled":"not a user property","skills":null}]}"#,
        )
        .unwrap();
        let keys: Vec<&String> = page.objects[0].props.keys().collect();
        assert_eq!(keys, ["displayName"]);
    }

    /// Every property in the `$select` lists has a type, and nothing else does.
    #[test]
    fn every_selected_property_is_typed() {
        for resource in Resource::ALL {
            for name in resource.select().split(',') {
                let typed = prop_type(resource, name).is_some();
                assert_eq!(
                    typed,
                    !matches!(name, "id" | "members"),
                    "{resource} {name}"
                );
            }
            for name in [
                "accountEnabled",
                "securityEnabled",
                "groupTypes",
                "jobTitle",
            ] {
                if prop_type(resource, name).is_some() {
                    assert!(
                        resource.select().split(',').any(|n| n == name),
                        "{resource} {name}"
                    );
                }
            }
        }
    }

    /// Issue 7 item 7: a page of many tiny objects or member entries stops at the caps.
    #[test]
    fn objects_and_member_entries_per_page_are_capped() {
        let objects = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| format!(r#"{{"id":"u{i}"}}"#)).collect();
            format!(r#"{{"@odata.nextLink":"n","value":[{}]}}"#, list.join(","))
        };
        assert_eq!(
            users(objects(MAX_OBJECTS).as_bytes())
                .unwrap()
                .objects
                .len(),
            MAX_OBJECTS
        );
        let e = err(Resource::Users, &objects(MAX_OBJECTS + 1));
        assert!(
            e.contains(&format!("more than {MAX_OBJECTS} objects")),
            "{e}"
        );

        let entries = |groups: usize, each: usize| {
            let member = r##"{"@odata.type":"#microsoft.graph.user","id":"m"}"##;
            let list = vec![member; each].join(",");
            let groups: Vec<String> = (0..groups)
                .map(|g| format!(r#"{{"id":"g{g}","members@delta":[{list}]}}"#))
                .collect();
            format!(
                r#"{{"@odata.nextLink":"n","value":[{}]}}"#,
                groups.join(",")
            )
        };
        let ok = groups(entries(4, MAX_MEMBER_ENTRIES / 4).as_bytes()).unwrap();
        assert_eq!(ok.objects.len(), 4);
        // Counted over the page, not per group.
        let e = err(Resource::Groups, &entries(4, MAX_MEMBER_ENTRIES / 4 + 1));
        assert!(
            e.contains(&format!("more than {MAX_MEMBER_ENTRIES} member entries")),
            "{e}"
        );
    }

    #[test]
    fn ids_and_texts_are_capped() {
        let long = "x".repeat(MAX_TEXT + 1);
        let fits = "x".repeat(MAX_TEXT);
        let page = |object: String| format!(r#"{{"@odata.nextLink":"n","value":[{object}]}}"#);
        for (resource, object) in [
            (Resource::Users, format!(r#"{{"id":"{long}"}}"#)),
            (
                Resource::Users,
                format!(r#"{{"id":"u","displayName":"{long}"}}"#),
            ),
            (
                Resource::Groups,
                format!(r#"{{"id":"g","groupTypes":["{long}"]}}"#),
            ),
            (
                Resource::Groups,
                format!(r#"{{"id":"g","members@delta":[{{"id":"{long}"}}]}}"#),
            ),
        ] {
            let e = err(resource, &page(object));
            assert!(e.contains(&format!("more than {MAX_TEXT}")), "{e}");
        }
        assert!(users(page(format!(r#"{{"id":"u","displayName":"{fits}"}}"#)).as_bytes()).is_ok());
    }
}

/// Issue 7 item 6: random and mutated input never panics the page parser, and what it accepts
/// always has the promised shape.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    const SAMPLE_USERS: &str = r#"{"@odata.context":"x","@odata.nextLink":"https://g/v1.0/users/delta?$skiptoken=a",
        "value":[{"id":"u1","displayName":"Cy","mail":null,"accountEnabled":true,"manager@delta":[]},
        {"id":"u2","@removed":{"reason":"changed"}},{"id":"u3","@removed":{"reason":"deleted"}}]}"#;
    const SAMPLE_GROUPS: &str = r##"{"@odata.deltaLink":"https://g/v1.0/groups/delta?$deltatoken=b",
        "value":[{"id":"g1","displayName":"All","securityEnabled":true,"groupTypes":["Unified"],
        "members@delta":[{"@odata.type":"#microsoft.graph.user","id":"u1"},
        {"@odata.type":"#microsoft.graph.group","id":"g2","@removed":{"reason":"deleted"}}]}]}"##;

    /// What a parsed page promises its reader.
    fn check_shape(resource: Resource, page: &Page) {
        assert!(page.objects.len() <= MAX_OBJECTS);
        let members: usize = page
            .objects
            .iter()
            .map(|o| o.members.as_ref().map_or(0, Vec::len))
            .sum();
        assert!(members <= MAX_MEMBER_ENTRIES);
        for object in &page.objects {
            assert!(!object.id.is_empty() && object.id.len() <= MAX_TEXT);
            for (name, value) in &object.props {
                let ty = prop_type(resource, name).expect("only selected properties are kept");
                let typed = match (ty, value) {
                    (_, Value::Null) => true,
                    (PropType::Text, Value::String(s)) => s.len() <= MAX_TEXT,
                    (PropType::Bool, Value::Bool(_)) => true,
                    (PropType::TextList, Value::Array(items)) => items.iter().all(Value::is_string),
                    _ => false,
                };
                assert!(typed, "{name}: {value}");
            }
        }
    }

    fn parse_both(body: &[u8]) {
        for resource in Resource::ALL {
            if let Ok(page) = parse_page(resource, body) {
                check_shape(resource, &page);
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Delete(usize),
        Insert(usize, u8),
        Replace(usize, u8),
        Truncate(usize),
        Duplicate(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        // Bytes that matter to JSON, and some that never belong in it.
        let byte = prop::sample::select(b"{}[]\",:\\0123456789-.eE tfnrul@\n\x00\xff\xc3".to_vec());
        prop_oneof![
            any::<usize>().prop_map(Mutation::Delete),
            (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Replace(i, b)),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), 1..64usize).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        ]
    }

    fn mutate(mut body: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
        for m in mutations {
            if body.is_empty() {
                break;
            }
            let at = |i: usize| i % body.len();
            match *m {
                Mutation::Delete(i) => {
                    body.remove(at(i));
                }
                Mutation::Insert(i, b) => body.insert(at(i), b),
                Mutation::Replace(i, b) => {
                    let i = at(i);
                    body[i] = b;
                }
                Mutation::Truncate(i) => body.truncate(at(i)),
                Mutation::Duplicate(i, n) => {
                    let start = at(i);
                    let end = (start + n).min(body.len());
                    let copy = body[start..end].to_vec();
                    body.splice(start..start, copy);
                }
            }
        }
        body
    }

    /// Any JSON value, nested a few levels.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "[a-z0-9#. \\u{0}-\\u{1f}\\u{7f}-\\u{10ffff}]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    /// Keys a page, an object or a member entry may hold, and some it should not.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "id",
                "@removed",
                "reason",
                "members@delta",
                "@odata.type",
                "@odata.nextLink",
                "@odata.deltaLink",
                "value",
                "accountEnabled",
                "displayName",
                "mail",
                "securityEnabled",
                "mailEnabled",
                "groupTypes",
                "userPrincipalName",
                "description",
                "manager@delta",
            ])
            .prop_map(str::to_owned),
            "[a-zA-Z@.]{0,10}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            parse_both(&body);
        }

        #[test]
        fn mutated_pages_never_panic(
            groups in any::<bool>(),
            mutations in prop::collection::vec(mutation(), 1..12),
        ) {
            let sample = if groups { SAMPLE_GROUPS } else { SAMPLE_USERS };
            parse_both(&mutate(sample.as_bytes().to_vec(), &mutations));
        }

        #[test]
        fn random_json_pages_never_panic(
            objects in prop::collection::vec(
                prop::collection::vec((key(), json_value()), 0..8), 0..8),
            link in prop::sample::select(vec!["@odata.nextLink", "@odata.deltaLink", "x"]),
            link_value in json_value(),
        ) {
            let value: Vec<Value> = objects
                .into_iter()
                .map(|pairs| Value::Object(pairs.into_iter().collect()))
                .collect();
            let mut page = serde_json::Map::new();
            page.insert(link.to_owned(), link_value);
            page.insert("value".to_owned(), Value::Array(value));
            parse_both(Value::Object(page).to_string().as_bytes());
        }
    }

    #[test]
    fn the_samples_parse() {
        check_shape(
            Resource::Users,
            &parse_page(Resource::Users, SAMPLE_USERS.as_bytes()).unwrap(),
        );
        let groups = parse_page(Resource::Groups, SAMPLE_GROUPS.as_bytes()).unwrap();
        check_shape(Resource::Groups, &groups);
        assert_eq!(groups.objects[0].members.as_ref().map(Vec::len), Some(2));
    }
}

//! A delta page: parsed whole or refused whole.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

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
/// Parses a delta page. Exactly one of nextLink and deltaLink must be present.
pub fn parse_page(body: &[u8]) -> Result<Page, String> {
    #[derive(Deserialize)]
    struct RawPage {
        #[serde(rename = "@odata.nextLink")]
        next_link: Option<String>,
        #[serde(rename = "@odata.deltaLink")]
        delta_link: Option<String>,
        value: Option<Vec<DirectoryObject>>,
    }
    let raw: RawPage = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let objects = raw.value.ok_or("no \"value\" array")?;
    let next = match (raw.next_link, raw.delta_link) {
        (Some(next), None) => Next::More(next),
        (None, Some(delta)) => Next::Done(delta),
        (Some(_), Some(_)) => return Err("both a nextLink and a deltaLink".into()),
        (None, None) => return Err("neither a nextLink nor a deltaLink".into()),
    };
    Ok(Page { objects, next })
}

/// Reads an object straight into its typed parts, keeping absent and null apart and skipping
/// annotations other than `@removed` and `members@delta`.
impl<'de> Deserialize<'de> for DirectoryObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
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
                "id" => id = Some(map.next_value::<String>()?),
                "@removed" => removed = Some(map.next_value::<RemovedAnnotation>()?.into()),
                "members@delta" => {
                    let list = map
                        .next_value::<Option<Vec<MemberChange>>>()?
                        .unwrap_or_default();
                    members.get_or_insert_with(Vec::new).extend(list);
                }
                k if k.contains('@') => {
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    let value = map.next_value::<Value>()?;
                    props.insert(key.into_owned(), value);
                }
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
            id: raw.id,
            kind,
            removed: raw.removed.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_keeps_absent_and_null_apart() {
        let page = parse_page(
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
        let page = parse_page(
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
        let page = parse_page(
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
        assert!(parse_page(br#"{"value":[{"id":"u1"}]"#).is_err());
        assert!(parse_page(br#"{"value":[{"id":"u1"}]}"#).is_err());
        assert!(
            parse_page(br#"{"@odata.nextLink":"a","@odata.deltaLink":"b","value":[]}"#).is_err()
        );
        assert!(
            parse_page(br#"{"@odata.nextLink":"a","value":[{"displayName":"no id"}]}"#).is_err()
        );
        assert!(parse_page(br#"<html>gateway</html>"#).is_err());
    }
}

//! A directory object's properties: as a page carries them (its names the parser's own
//! constants), as stored (`attributes`), and as merged. A short list in name order. A first
//! import parses 110,000 objects: as a `serde_json::Map` each one cost a tree node and a
//! `String` per name, a million allocations in all, made by the fetch workers and freed by
//! the writer.

use std::borrow::Cow;
use std::ops::Index;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// Properties by name, each name once, in the order a `serde_json::Map` keeps (byte order),
/// so both serialize to the same JSON text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Props(Vec<(Cow<'static, str>, Value)>);

impl Props {
    pub fn new() -> Self {
        Props(Vec::new())
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Props(Vec::with_capacity(capacity))
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.position(name).ok().map(|i| &self.0[i].1)
    }

    /// Sets `name` to `value`, replacing what it held.
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: Value) {
        let name = name.into();
        match self.position(&name) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Value) -> bool) {
        self.0.retain(|(name, value)| keep(name, value));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.into_iter()
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(name, _)| name)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(name, value)| (name.to_owned(), value.clone()))
            .collect()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(held, _)| (**held).cmp(name))
    }
}

impl From<Map<String, Value>> for Props {
    fn from(map: Map<String, Value>) -> Self {
        let mut props = Props::with_capacity(map.len());
        for (name, value) in map {
            props.insert(name, value);
        }
        props
    }
}

impl<'a> IntoIterator for &'a Props {
    type Item = (&'a str, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Cow<'static, str>, Value)>,
        fn(&'a (Cow<'static, str>, Value)) -> (&'a str, &'a Value),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(name, value)| (&**name, value))
    }
}

impl Index<&str> for Props {
    type Output = Value;

    /// `Value::Null` for a property not held, as `serde_json::Map` indexes.
    fn index(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(name).unwrap_or(&NULL)
    }
}

impl Serialize for Props {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(&**name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn props_serialize_as_the_map_of_the_same_properties() {
        let map = map(
            json!({"surname": "Ek", "accountEnabled": true, "displayName": "Nora",
            "mail": null, "groupTypes": ["Unified"]}),
        );
        let mut inserted = Props::new();
        // Out of order, and one name twice: the later value stands.
        for (name, value) in map.iter().rev() {
            inserted.insert(Cow::Owned(name.clone()), Value::Null);
            inserted.insert(name.clone(), value.clone());
        }
        let converted = Props::from(map.clone());
        let text = serde_json::to_string(&map).unwrap();
        assert_eq!(serde_json::to_string(&inserted).unwrap(), text);
        assert_eq!(serde_json::to_string(&converted).unwrap(), text);
        assert_eq!(inserted.to_map(), map);
        assert_eq!(inserted.len(), 5);
    }

    #[test]
    fn props_are_read_by_name() {
        let mut props = Props::from(map(json!({"displayName": "Nora", "mail": null})));
        assert_eq!(props.get("displayName"), Some(&json!("Nora")));
        assert_eq!(props.get("mail"), Some(&Value::Null));
        assert_eq!(props.get("surname"), None);
        assert_eq!(props["displayName"], "Nora");
        assert_eq!(props["surname"], Value::Null);
        props.retain(|_, value| !value.is_null());
        assert_eq!(
            props.iter().collect::<Vec<_>>(),
            [("displayName", &json!("Nora"))]
        );
    }
}

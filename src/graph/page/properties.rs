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
            let (_, ty) = selected(resource, name).expect("only selected properties are kept");
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

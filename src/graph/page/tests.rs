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
            format!(r#"{{"@odata.nextLink":"n","value":[{{"id":"x1"}},{{"id":"x2",{object}}}]}}"#)
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
    let keys: Vec<&str> = page.objects[0].props.keys().collect();
    assert_eq!(keys, ["displayName"]);
}

/// Every property in the `$select` lists has a type, and nothing else does.
#[test]
fn every_selected_property_is_typed() {
    for resource in Resource::ALL {
        for name in resource.select().split(',') {
            let typed = selected(resource, name).is_some();
            assert_eq!(
                typed,
                !matches!(name, "id" | "members"),
                "{resource} {name}"
            );
        }
        let listed = resource
            .select()
            .split(',')
            .filter(|n| !matches!(*n, "id" | "members"));
        assert_eq!(
            selected_props(resource).len(),
            listed.count(),
            "{resource}: one table entry per selected property"
        );
        for name in [
            "accountEnabled",
            "securityEnabled",
            "groupTypes",
            "jobTitle",
        ] {
            if selected(resource, name).is_some() {
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

// ----- plain lists and members pages (graph-protocol.md 3.11) -----

fn list_err(resource: Resource, body: &str) -> String {
    match parse_list(resource, body.as_bytes()) {
        Ok(page) => panic!("accepted: {page:?}"),
        Err(e) => e,
    }
}

fn members_err(body: &str) -> String {
    match parse_members(body.as_bytes()) {
        Ok(page) => panic!("accepted: {page:?}"),
        Err(e) => e,
    }
}

#[test]
fn list_pages_are_typed_like_delta_pages() {
    let page = parse_list(
        Resource::Users,
        br#"{"@odata.context":"c","@odata.nextLink":"https://g/v1.0/users?$skiptoken=s",
        "value":[{"id":"u1","displayName":"Cy","mail":null,"accountEnabled":true,"skills":[1]}]}"#,
    )
    .unwrap();
    assert_eq!(
        page.next.as_deref(),
        Some("https://g/v1.0/users?$skiptoken=s")
    );
    let u1 = &page.objects[0];
    assert_eq!(u1.props.get("mail"), Some(&Value::Null));
    assert_eq!(u1.props.get("accountEnabled"), Some(&Value::Bool(true)));
    assert!(!u1.props.contains_key("skills"));
    assert_eq!((u1.removed, &u1.members), (None, &None));
    // The last page has no link at all.
    let last = parse_list(
        Resource::Groups,
        br#"{"value":[{"id":"g1","groupTypes":["Unified"],"members@delta":[{"id":"x"}]}]}"#,
    )
    .unwrap();
    assert_eq!(last.next, None);
    // members@delta is not selected on a list: skipped, not read as a membership.
    assert_eq!(last.objects[0].members, None);
}

#[test]
fn list_pages_refuse_what_a_list_cannot_hold() {
    for (body, expected) in [
        (
            r#"{"@odata.deltaLink":"d","value":[]}"#,
            "a deltaLink on a list page",
        ),
        (
            r#"{"value":[{"id":"u1","@removed":{"reason":"changed"}}]}"#,
            "an @removed object on a list page",
        ),
        (
            r#"{"value":[{"id":"u1","accountEnabled":"false"}]}"#,
            "accountEnabled to be true or false",
        ),
        (r#"{"@odata.nextLink":"n"}"#, "no \"value\" array"),
        (r#"{"value":[],"value":[]}"#, "duplicate \"value\""),
        (
            r#"{"@odata.nextLink":"a","@odata.nextLink":"b","value":[]}"#,
            "duplicate \"@odata.nextLink\"",
        ),
        (
            r#"{"value":[{"displayName":"no id"}]}"#,
            "missing field `id`",
        ),
    ] {
        let e = list_err(Resource::Users, body);
        assert!(e.contains(expected), "{body}: {e}");
    }
    let objects: Vec<String> = (0..=MAX_OBJECTS)
        .map(|i| format!(r#"{{"id":"u{i}"}}"#))
        .collect();
    let e = list_err(
        Resource::Users,
        &format!(r#"{{"value":[{}]}}"#, objects.join(",")),
    );
    assert!(
        e.contains(&format!("more than {MAX_OBJECTS} objects")),
        "{e}"
    );
}

#[test]
fn members_pages_read_types_and_ids() {
    let page = parse_members(
        br##"{"@odata.context":"c","@odata.nextLink":"https://g/v1.0/groups/g1/members?$skiptoken=s",
        "value":[{"@odata.type":"#microsoft.graph.user","id":"u1","displayName":"ignored"},
                 {"@odata.type":"#microsoft.graph.group","id":"g2"},
                 {"@odata.type":"#microsoft.graph.device","id":"d1"}]}"##,
    )
    .unwrap();
    let kinds: Vec<(&str, &str, bool)> = page
        .members
        .iter()
        .map(|m| (&*m.id, m.kind.as_ref(), m.removed))
        .collect();
    assert_eq!(
        kinds,
        [
            ("u1", "user", false),
            ("g2", "group", false),
            ("d1", "device", false)
        ]
    );
    assert!(page.next.is_some());
    assert_eq!(parse_members(br#"{"value":[]}"#).unwrap().members, []);
}

#[test]
fn members_pages_refuse_what_a_member_list_cannot_hold() {
    let member = r##"{"@odata.type":"#microsoft.graph.user","id":"m"}"##;
    let many = vec![member; MAX_MEMBER_ENTRIES + 1].join(",");
    let too_many = format!(r#"{{"value":[{many}]}}"#);
    let long_id = format!(r#"{{"value":[{{"id":"{}"}}]}}"#, "x".repeat(MAX_TEXT + 1));
    for (body, expected) in [
        (
            r#"{"@odata.deltaLink":"d","value":[]}"#,
            "a deltaLink on a members page",
        ),
        (
            r#"{"value":[{"id":"m","@removed":{"reason":"deleted"}}]}"#,
            "a removed entry on a members page",
        ),
        (r#"{"value":null}"#, "\"value\" to be an array"),
        (r#"{"value":[{"id":7}]}"#, "invalid type"),
        (r#"{"value":[{"@odata.type":"x"}]}"#, "missing field `id`"),
        (r#"{"@odata.nextLink":"n"}"#, "no \"value\" array"),
        (&too_many, "more than 20000 member entries"),
        (&long_id, &format!("more than {MAX_TEXT}")),
    ] {
        let e = members_err(body);
        assert!(e.contains(expected), "{}: {e}", &body[..body.len().min(80)]);
    }
}

#[test]
fn known_member_types_are_shared_and_others_kept_as_sent() {
    let body = br##"{"value":[
        {"@odata.type":"#microsoft.graph.user","id":"u1"},
        {"@odata.type":"#microsoft.graph.servicePrincipal","id":"s1"},
        {"@odata.type":"#microsoft.graph.futureThing","id":"f1"},
        {"id":"x1"}]}"##;
    let members = parse_members(body).unwrap().members;
    let kinds: Vec<(&str, bool)> = members
        .iter()
        .map(|m| (m.kind.as_ref(), matches!(m.kind, Cow::Borrowed(_))))
        .collect();
    assert_eq!(
        kinds,
        [
            ("user", true),
            ("servicePrincipal", true),
            ("futureThing", false),
            ("unknown", true)
        ]
    );
}

/// Keys and types are read borrowed from the body; one with a JSON escape is read as the
/// text it stands for.
#[test]
fn escaped_keys_and_member_types_read_as_their_text() {
    let page = groups(
        br##"{"@odata.deltaLink":"https://g/v1.0/groups/delta?$deltatoken=a",
        "value":[{"\u0069d":"g1","display\u004eame":"Ops",
            "members@delta":[{"@odata.type":"\u0023microsoft.graph.user","id":"u1"}]}]}"##,
    )
    .unwrap();
    let group = &page.objects[0];
    assert_eq!(group.id, "g1");
    assert_eq!(group.props.get("displayName"), Some(&Value::from("Ops")));
    let members = group.members.as_deref().unwrap();
    assert_eq!((&*members[0].id, members[0].kind.as_ref()), ("u1", "user"));
    let escaped = br##"{"value":[{"@odata.type":"#microsoft.graph.futur\u0065Thing","id":"f1"}]}"##;
    let kinds: Vec<String> = parse_members(escaped)
        .unwrap()
        .members
        .iter()
        .map(|m| m.kind.to_string())
        .collect();
    assert_eq!(kinds, ["futureThing"]);
}

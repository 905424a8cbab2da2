use super::*;

fn item(index: usize) -> Item {
    Item {
        index,
        url: format!("https://g/v1.0/groups/g{index}/members?$select=id&$top=999"),
        relative: format!("/groups/g{index}/members?$select=id&$top=999"),
        retry: Retry::new(RESOURCE),
    }
}

#[test]
fn the_request_body_names_each_item_by_its_index() {
    let sent = [item(3), item(0)];
    let body = request_body(sent.iter().map(|i| (i.index, i.relative.as_str())));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"requests": [
            {"id": "3", "method": "GET", "url": "/groups/g3/members?$select=id&$top=999"},
            {"id": "0", "method": "GET", "url": "/groups/g0/members?$select=id&$top=999"},
        ]})
    );
}

#[test]
fn responses_are_matched_by_id_and_judged_one_by_one() {
    let sent: Vec<Item> = (0..6).map(item).collect();
    // Shuffled; item 5 is not answered at all.
    let body = br##"{"responses":[
        {"id":"3","status":500,"headers":{},"body":{"error":{"code":"UnknownError","message":"x"}}},
        {"id":"1","status":429,"headers":{"Retry-After":"0.2","x-ms-resource-unit":"1",
            "x-ms-throttle-limit-percentage":"1.2"},
            "body":{"error":{"code":"TooManyRequests","message":"Please retry again later."}}},
        {"id":"4","status":200,"headers":{"Content-Type":"application/json"},"body":"PGh0bWw+"},
        {"id":"0","status":200,"headers":{"x-ms-resource-unit":"2"},"body":{
            "@odata.nextLink":"https://g/v1.0/groups/g0/members?$skiptoken=s",
            "value":[{"@odata.type":"#microsoft.graph.user","id":"u1"},
                     {"@odata.type":"#microsoft.graph.group","id":"g9"}]}},
        {"id":"2","status":404,"body":{"error":{"code":"Request_ResourceNotFound","message":"gone"}}}
    ]}"##;
    let answers = read_responses(body, &sent).unwrap();
    let [a0, a1, a2, a3, a4, a5] = &answers[..] else {
        panic!("{} answers", answers.len())
    };
    let a0 = a0.as_ref().unwrap();
    let page = a0.outcome.as_ref().ok().unwrap().as_ref().unwrap();
    let members: Vec<(&str, &str)> = page
        .members
        .iter()
        .map(|m| (&*m.id, m.kind.as_ref()))
        .collect();
    assert_eq!(members, [("u1", "user"), ("g9", "group")]);
    assert_eq!(
        page.next.as_deref(),
        Some("https://g/v1.0/groups/g0/members?$skiptoken=s")
    );
    assert_eq!(a0.signals.resource_units, Some(2));
    // The item's own Retry-After, fractional, and its quota report.
    let a1 = a1.as_ref().unwrap();
    assert!(matches!(
        &a1.outcome,
        Err(Failure::Retry { after: Some(after), throttled: true, .. })
            if *after == Duration::from_millis(200)
    ));
    assert_eq!(a1.signals.status, 429);
    assert_eq!(a1.signals.limit_percentage, Some(1.2));
    // 404: the group was deleted since it was listed.
    assert!(matches!(a2.as_ref().unwrap().outcome, Ok(None)));
    assert!(matches!(
        &a3.as_ref().unwrap().outcome,
        Err(Failure::Retry { after: None, throttled: false, last }) if last == "HTTP 500 UnknownError"
    ));
    // A 200 whose body is not a members page is refused, not retried.
    assert!(matches!(
        &a4.as_ref().unwrap().outcome,
        Err(Failure::Fatal(GraphError::UnusablePage { detail, .. })) if detail.contains("invalid page")
    ));
    assert!(a5.is_none());
}

#[test]
fn item_failures_map_as_single_requests_do() {
    let url = "https://g/v1.0/groups/g1/members?$select=id&$top=999&$skiptoken=SECRET";
    let denied = br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient"}}"#;
    match item_outcome(url, 403, denied, None) {
        Err(Failure::Fatal(GraphError::PermissionMissing {
            resource,
            path,
            permission,
            ..
        })) => {
            assert_eq!(resource, Resource::Groups);
            assert_eq!(path, "/v1.0/groups/g1/members");
            assert_eq!(permission, Resource::Groups.permission());
        }
        _ => panic!("403 is not PermissionMissing"),
    }
    assert!(matches!(
        item_outcome(url, 401, b"{}", None),
        Err(Failure::Unauthorized { .. })
    ));
    assert!(matches!(
        item_outcome(url, 503, b"", Some(Duration::from_secs(1))),
        Err(Failure::Retry {
            after: Some(_),
            throttled: false,
            ..
        })
    ));
    let bad = br#"{"error":{"code":"Request_BadRequest","message":"no"}}"#;
    assert!(matches!(
        item_outcome(url, 400, bad, None),
        Err(Failure::Fatal(GraphError::Refused { status: 400, .. }))
    ));
}

#[test]
fn a_response_that_does_not_match_the_request_is_refused_whole() {
    let sent: Vec<Item> = (0..2).map(item).collect();
    let ok = r#"{"id":"0","status":404}"#;
    for (body, expected) in [
        ("<html>".to_owned(), "invalid batch response"),
        (r#"{"value":[]}"#.to_owned(), "missing field `responses`"),
        (
            format!(r#"{{"responses":[{ok},{{"id":"7","status":404}}]}}"#),
            "an id not sent",
        ),
        (
            format!(r#"{{"responses":[{ok},{ok}]}}"#),
            "two batch responses for id \"0\"",
        ),
    ] {
        match read_responses(body.as_bytes(), &sent) {
            Ok(_) => panic!("accepted {body}"),
            Err(e) => assert!(e.contains(expected), "{body}: {e}"),
        }
    }
}

//! Self-tests of what the fast initial sync of notes 3.11 reads: the plain lists, partition
//! filters, group members and `$deltatoken=latest` (`$batch`, the RU budget and the whole
//! flow are in `batch_quota.rs`). Included by `tests/sim_selftest.rs`, whose tiny client it
//! uses.

use super::*;
use sim::{Endpoint, ObjectState};

/// A POST of a JSON body (the `$batch` envelope).
pub(super) fn post_json(url: &str, token: &str, body: &Value) -> Resp {
    read(
        agent()
            .post(url)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body.to_string()),
    )
}

/// Pages a plain listing to its end: no deltaLink anywhere, no nextLink on the last page.
pub(super) fn list_all(url: &str, token: &str) -> (Vec<Value>, usize) {
    let mut url = url.to_string();
    let mut values = Vec::new();
    let mut pages = 0;
    loop {
        let resp = get(&url, token, None);
        assert_eq!(resp.status, 200, "{url}: {}", resp.body);
        let page = resp.json();
        assert!(page.get("@odata.deltaLink").is_none(), "{page}");
        values.extend(page["value"].as_array().unwrap().iter().cloned());
        pages += 1;
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => return (values, pages),
        }
    }
}

pub(super) fn ids(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

pub(super) fn ru(resp: &Resp) -> u32 {
    resp.header("x-ms-resource-unit")
        .unwrap_or_else(|| panic!("no x-ms-resource-unit: {:?}", resp.headers))
        .parse()
        .unwrap()
}

#[test]
fn users_and_groups_lists_page_with_top() {
    let mut tenant = Tenant::new();
    add_users(&mut tenant, 250);
    tenant.soft_delete_user(&user(7));
    for n in 0..30 {
        tenant.add_group(
            &group(n),
            json!({"displayName": format!("G{n}"), "mailNickname": format!("g{n}")}),
        );
    }
    tenant.add_member(&group(0), &user(1), MemberKind::User);
    let sim = Sim::start_with(tenant);
    let token = token(&sim);
    let users = format!(
        "{}/v1.0/users?$select=id,displayName,jobTitle&$top=100",
        sim.url()
    );

    let first = get(&users, &token, None).json();
    assert_eq!(first["value"].as_array().unwrap().len(), 100);
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{}/v1.0/users?", sim.url())),
        "{next}"
    );
    assert!(next.contains("$skiptoken="), "{next}");
    assert_eq!(
        first["@odata.context"],
        format!(
            "{}/v1.0/$metadata#users(id,displayName,jobTitle)",
            sim.url()
        )
    );
    // Every selected property is present; never-set ones are null (not left out).
    let sample = &first["value"][0];
    assert_eq!(
        sample,
        &json!({"id": user(0), "displayName": "User 0", "jobTitle": null})
    );

    // A user created mid-listing is appended, so a listing that hasn't ended picks it up.
    sim.tenant()
        .add_user(&user(900), json!({"displayName": "Late"}));
    let (values, pages) = list_all(&users, &token);
    assert_eq!(pages, 3);
    let mut got = ids(&values);
    assert_eq!(
        got.len(),
        250,
        "249 live + the late one, no soft-deleted user"
    );
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 250, "no duplicates");
    assert!(!got.contains(&user(7)));
    let mut live = sim.tenant().user_ids();
    live.sort();
    assert_eq!(got, live);

    // Default page size 100, $top outside 1..=999 refused.
    let (values, pages) = list_all(&format!("{}/v1.0/users", sim.url()), &token);
    assert_eq!((values.len(), pages), (250, 3));
    for top in ["0", "1000", "x"] {
        let resp = get(
            &format!("{}/v1.0/users?$top={top}", sim.url()),
            &token,
            None,
        );
        assert_eq!(resp.status, 400, "$top={top}");
        assert_eq!(resp.json()["error"]["code"], "Request_BadRequest");
    }
    // Same $select handling as users/delta.
    let resp = get(
        &format!("{}/v1.0/users?$select=id,skills", sim.url()),
        &token,
        None,
    );
    assert_eq!(resp.status, 501);
    let resp = get(
        &format!("{}/v1.0/users?$select=id,nonsense", sim.url()),
        &token,
        None,
    );
    assert_eq!(resp.status, 400);

    // Groups carry no members.
    let groups = format!(
        "{}/v1.0/groups?$select=id,displayName,mailNickname&$top=7",
        sim.url()
    );
    let (values, pages) = list_all(&groups, &token);
    assert_eq!((values.len(), pages), (30, 5));
    assert!(
        values.iter().all(|g| g.as_object().unwrap().len() == 3),
        "{values:?}"
    );
    sim.tenant().delete_group(&group(3));
    let (values, _) = list_all(&groups, &token);
    assert_eq!(values.len(), 29);

    // Recorded under their own endpoints.
    let requests = sim.requests();
    assert!(requests.iter().any(|r| r.endpoint == Endpoint::UserList));
    assert!(requests.iter().any(|r| r.endpoint == Endpoint::GroupList));
    assert!(requests.iter().all(|r| !r.in_batch));
}

/// The 27 ranges of Microsoft's sample: below 'a', 'a'..'b', …, 'y'..'z', from 'z'.
pub(super) fn partitions(property: &str) -> Vec<String> {
    let letters: Vec<char> = ('a'..='z').collect();
    let mut filters = vec![format!("{property} lt 'a'")];
    for pair in letters.windows(2) {
        filters.push(format!(
            "{property} ge '{}' and {property} lt '{}'",
            pair[0], pair[1]
        ));
    }
    filters.push(format!("{property} ge 'z'"));
    filters
}

#[test]
fn partition_filters_cover_everything_once() {
    let mut tenant = Tenant::synthetic(3000, 300, 5000, 2, 7);
    // Below 'a' and mixed case: ranges compare case-insensitively.
    tenant.add_user(
        &user(1),
        json!({"userPrincipalName": "0day@contoso.example"}),
    );
    tenant.add_user(
        &user(2),
        json!({"userPrincipalName": "Ada.Upper@contoso.example"}),
    );
    let victim = tenant.user_ids()[10].clone();
    tenant.soft_delete_user(&victim);
    let sim = Sim::start_with(tenant);
    let token = token(&sim);
    // Taken first: a tenant guard in the loop's head would live through the loop.
    let user_ids = sim.tenant().user_ids();
    let group_ids = sim.tenant().group_ids();
    for (segment, property, expected) in [
        ("users", "userPrincipalName", user_ids),
        ("groups", "mailNickname", group_ids),
    ] {
        let filters = partitions(property);
        assert_eq!(filters.len(), 27);
        let mut seen: Vec<String> = Vec::new();
        for filter in &filters {
            let url = format!(
                "{}/v1.0/{segment}?$select=id,{property}&$top=999&$filter={}",
                sim.url(),
                http_encode(filter)
            );
            let (values, _) = list_all(&url, &token);
            // Each object really is in its range.
            let bounds: Vec<&str> = filter.split('\'').skip(1).step_by(2).collect();
            for value in &values {
                let text = value[property].as_str().unwrap().to_lowercase();
                if filter.contains(" ge ") {
                    assert!(text.as_str() >= bounds[0], "{text} in {filter}");
                }
                if let Some(upper) = filter.contains(" lt ").then(|| *bounds.last().unwrap()) {
                    assert!(text.as_str() < upper, "{text} in {filter}");
                }
            }
            seen.extend(ids(&values));
        }
        let total = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), total, "{segment}: no duplicates across ranges");
        let mut expected = expected;
        expected.sort();
        assert_eq!(seen, expected, "{segment}: the union is everything live");
    }
    assert_eq!(
        sim.tenant().state_of(&victim),
        Some(ObjectState::SoftDeleted)
    );
    let upper = format!(
        "{}/v1.0/users?$select=id&$filter={}",
        sim.url(),
        http_encode("userPrincipalName ge 'ada.' and userPrincipalName lt 'ada/'")
    );
    let (values, _) = list_all(&upper, &token);
    assert!(ids(&values).contains(&user(2)), "case-insensitive");
    let prefix = format!(
        "{}/v1.0/users?$select=id&$top=999&$filter={}",
        sim.url(),
        http_encode("startswith(userPrincipalName,'ADA.')")
    );
    assert_eq!(list_all(&prefix, &token).0.len(), values.len());
    assert!(values.len() > 1);
    let id_filter = format!(
        "{}/v1.0/users?$filter={}",
        sim.url(),
        http_encode(&format!("id eq '{}'", user(1)))
    );
    assert_eq!(ids(&list_all(&id_filter, &token).0), vec![user(1)]);
    // Unknown properties and operators are refused.
    for bad in [
        "nonsense ge 'a'",
        "startswith(id,'a')",
        "userPrincipalName ge",
    ] {
        let url = format!("{}/v1.0/users?$filter={}", sim.url(), http_encode(bad));
        assert_eq!(get(&url, &token, None).status, 400, "{bad}");
    }
}

#[test]
fn refused_partition_filter() {
    let sim = Sim::start();
    add_users(&mut sim.tenant(), 3);
    sim.settings().refuse_partition_filter = true;
    let token = token(&sim);
    for segment in ["users", "groups"] {
        let property = if segment == "users" {
            "userPrincipalName"
        } else {
            "mailNickname"
        };
        let url = format!(
            "{}/v1.0/{segment}?$filter={}",
            sim.url(),
            http_encode(&format!("{property} ge 'a' and {property} lt 'b'"))
        );
        let resp = get(&url, &token, None);
        assert_eq!(resp.status, 400, "{}", resp.body);
        let error = &resp.json()["error"];
        assert_eq!(error["code"], "Request_UnsupportedQuery");
        assert!(error["innerError"]["request-id"].is_string());
        // Without a filter the list still works: the client falls back to one chain.
        let plain = get(&format!("{}/v1.0/{segment}", sim.url()), &token, None);
        assert_eq!(plain.status, 200);
    }
}

#[test]
fn group_members_paging_types_and_404() {
    let mut tenant = Tenant::new();
    add_users(&mut tenant, 20);
    tenant.add_group(&group(1), json!({"displayName": "All", "groupTypes": []}));
    tenant.add_group(
        &group(2),
        json!({"displayName": "Nested", "groupTypes": []}),
    );
    tenant.add_group(&group(3), json!({"displayName": "Gone", "groupTypes": []}));
    for n in 0..20 {
        tenant.add_member(&group(1), &user(n), MemberKind::User);
    }
    tenant.add_member(&group(1), &group(2), MemberKind::Group);
    tenant.add_member(
        &group(1),
        "de000000-0000-4000-8000-0000000000d1",
        MemberKind::Device,
    );
    tenant.add_member(
        &group(1),
        "5e000000-0000-4000-8000-0000000000b1",
        MemberKind::ServicePrincipal,
    );
    tenant.add_member(
        &group(1),
        "c0000000-0000-4000-8000-0000000000c1",
        MemberKind::OrgContact,
    );
    // Soft-deleted users keep the link but are hidden from /members.
    tenant.soft_delete_user(&user(4));
    tenant.delete_group(&group(3));
    let sim = Sim::start_with(tenant);
    let token = token(&sim);
    let url = format!(
        "{}/v1.0/groups/{}/members?$select=id&$top=10",
        sim.url(),
        group(1)
    );
    let (values, pages) = list_all(&url, &token);
    assert_eq!((values.len(), pages), (23, 3));
    assert!(
        values.iter().all(|v| v.as_object().unwrap().len() == 2),
        "{values:?}"
    );
    let got: BTreeMap<String, String> = values
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_string(),
                v["@odata.type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeMap<String, String> = sim
        .tenant()
        .members_of(&group(1))
        .into_iter()
        .filter(|(id, _)| *id != user(4))
        .map(|(id, kind)| (id, kind.odata_type().to_string()))
        .collect();
    assert_eq!(got, want);
    let types: BTreeSet<&str> = got.values().map(String::as_str).collect();
    assert_eq!(types.len(), 5, "{types:?}");

    // Other selects give member properties where the member type has them.
    let named = format!(
        "{}/v1.0/groups/{}/members?$select=id,displayName",
        sim.url(),
        group(1)
    );
    let first = get(&named, &token, None).json();
    assert_eq!(
        first["@odata.context"],
        format!("{}/v1.0/$metadata#directoryObjects", sim.url())
    );
    let (values, pages) = list_all(&named, &token);
    assert_eq!((values.len(), pages), (23, 1));
    let nested = values.iter().find(|v| v["id"] == group(2)).unwrap();
    assert_eq!(nested["displayName"], "Nested");
    let bad = format!(
        "{}/v1.0/groups/{}/members?$select=id,nonsense",
        sim.url(),
        group(1)
    );
    assert_eq!(get(&bad, &token, None).status, 400);

    for missing in [group(3), group(99), "not-a-guid".to_string()] {
        let resp = get(
            &format!("{}/v1.0/groups/{missing}/members?$select=id", sim.url()),
            &token,
            None,
        );
        assert_eq!(resp.status, 404, "{missing}");
        assert_eq!(resp.json()["error"]["code"], "Request_ResourceNotFound");
    }
    // A group deleted between two pages: its skiptoken answers 404 too.
    let first = get(&url, &token, None).json();
    sim.tenant().delete_group(&group(1));
    let resp = get(first["@odata.nextLink"].as_str().unwrap(), &token, None);
    assert_eq!(resp.status, 404);
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.endpoint == Endpoint::Members)
    );
}

#[test]
fn latest_delta_token_starts_from_now() {
    let sim = Sim::start_with(groups_tenant());
    let token = token(&sim);
    for (url, segment) in [(users_url(&sim), "users"), (groups_url(&sim), "groups")] {
        let resp = get(&format!("{url}&$deltatoken=latest"), &token, None);
        assert_eq!(resp.status, 200);
        let page = resp.json();
        assert_eq!(page["value"], json!([]));
        assert!(page.get("@odata.nextLink").is_none());
        let link = page["@odata.deltaLink"].as_str().unwrap().to_string();
        assert!(
            link.contains("$deltatoken=") && !link.contains("latest"),
            "{link}"
        );
        assert!(
            link.starts_with(&format!("{}/v1.0/{segment}/", sim.url())),
            "{link}"
        );
        if segment == "users" {
            sim.tenant()
                .update_user(&user(3), json!({"displayName": "Renamed", "city": "Oslo"}));
            let (pages, _) = round(&link, &token, None);
            // Only the change, with the selected properties only ($select kept in the link).
            let changed = objects(&pages);
            assert_eq!(ids_of(&changed), vec![user(3)]);
            assert_eq!(changed[0]["displayName"], "Renamed");
            assert!(changed[0].get("city").is_none(), "{}", changed[0]);
        } else {
            let first = sim.tenant().group_ids()[0].clone();
            sim.tenant()
                .add_member(&first, &user(1250), MemberKind::User);
            let (pages, _) = round(&link, &token, None);
            let changed = objects(&pages);
            assert_eq!(ids_of(&changed), vec![first]);
            assert_eq!(
                changed[0]["members@delta"],
                json!([{"@odata.type": "#microsoft.graph.user", "id": user(1250)}])
            );
        }
    }
}

fn ids_of(values: &[Value]) -> Vec<String> {
    ids(values)
}

/// Percent-encodes a query value the way clients do (spaces, quotes kept readable).
pub(super) fn http_encode(text: &str) -> String {
    text.replace('%', "%25")
        .replace(' ', "%20")
        .replace('&', "%26")
}

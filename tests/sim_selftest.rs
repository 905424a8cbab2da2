//! Self-test of the Graph / Entra simulator over real HTTP (ureq), independent of the
//! daemon's code: the tests below act as a minimal, protocol-following client.

#![allow(clippy::unwrap_used)]

#[path = "sim/mod.rs"]
#[allow(dead_code)]
mod sim;

// The fast-initial-sync endpoints (lists, $batch, RU budget) are tested in their own files.
#[path = "sim/selftest/batch_quota.rs"]
mod batch_quota;
#[path = "sim/selftest/fast_sync.rs"]
mod fast_sync;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sim::{
    CLIENT_ID, CLIENT_SECRET, Fault, LinkForm, MemberKind, Resource, Sim, TENANT_DOMAIN, TENANT_ID,
    Tenant, TokenError,
};

const USER_SELECT: &str =
    "id,displayName,userPrincipalName,mail,accountEnabled,jobTitle,department";
const GROUP_SELECT: &str = "id,displayName,description,securityEnabled,groupTypes,members";

// ----- a tiny client -----

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn read(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
    let mut response = response.expect("HTTP exchange");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let body = response.body_mut().read_to_string().expect("body");
    Resp {
        status,
        headers,
        body,
    }
}

fn post_token(sim: &Sim, tenant: &str, form: &[(&str, &str)]) -> Resp {
    let url = format!("{}/{tenant}/oauth2/v2.0/token", sim.url());
    read(agent().post(&url).send_form(form.iter().copied()))
}

fn good_form() -> Vec<(&'static str, &'static str)> {
    vec![
        ("client_id", CLIENT_ID),
        ("scope", "https://graph.microsoft.com/.default"),
        ("client_secret", CLIENT_SECRET),
        ("grant_type", "client_credentials"),
    ]
}

fn token(sim: &Sim) -> String {
    let resp = post_token(sim, TENANT_ID, &good_form());
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()["access_token"].as_str().unwrap().to_string()
}

fn get(url: &str, token: &str, prefer: Option<&str>) -> Resp {
    let mut request = agent()
        .get(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("client-request-id", "4c4f5a34-0001-4000-8000-000000000001");
    if let Some(prefer) = prefer {
        request = request.header("Prefer", prefer);
    }
    read(request.call())
}

fn users_url(sim: &Sim) -> String {
    format!("{}/v1.0/users/delta?$select={USER_SELECT}", sim.url())
}

fn groups_url(sim: &Sim) -> String {
    format!("{}/v1.0/groups/delta?$select={GROUP_SELECT}", sim.url())
}

/// Pages a round to its deltaLink, checking the link rules on every page.
fn round(url: &str, token: &str, prefer: Option<&str>) -> (Vec<Value>, String) {
    let mut pages = Vec::new();
    let mut url = url.to_string();
    loop {
        let resp = get(&url, token, prefer);
        assert_eq!(resp.status, 200, "{url}: {}", resp.body);
        let page = resp.json();
        let next = page["@odata.nextLink"].as_str().map(str::to_string);
        let delta = page["@odata.deltaLink"].as_str().map(str::to_string);
        assert!(
            next.is_some() != delta.is_some(),
            "exactly one link per page: {page}"
        );
        assert!(page["value"].is_array());
        pages.push(page);
        match (next, delta) {
            (Some(next), _) => url = next,
            (_, Some(delta)) => return (pages, delta),
            _ => unreachable!(),
        }
    }
}

fn objects(pages: &[Value]) -> Vec<Value> {
    pages
        .iter()
        .flat_map(|p| p["value"].as_array().unwrap().clone())
        .collect()
}

fn by_id(objects: &[Value], id: &str) -> Vec<Value> {
    objects.iter().filter(|o| o["id"] == id).cloned().collect()
}

/// A local copy built by the merge rules of the protocol notes (3.6–3.8).
#[derive(Default, Debug)]
struct Mirror {
    objects: BTreeMap<String, Map<String, Value>>,
    soft_deleted: BTreeSet<String>,
    members: BTreeMap<String, BTreeMap<String, String>>,
}

impl Mirror {
    fn apply(&mut self, pages: &[Value]) {
        for object in objects(pages) {
            let id = object["id"].as_str().unwrap().to_string();
            match object
                .get("@removed")
                .map(|r| r["reason"].as_str().unwrap())
            {
                Some("changed") => {
                    self.soft_deleted.insert(id);
                    continue;
                }
                Some("deleted") => {
                    self.objects.remove(&id);
                    self.soft_deleted.remove(&id);
                    self.members.remove(&id);
                    continue;
                }
                Some(other) => panic!("unknown reason {other}"),
                None => {}
            }
            self.soft_deleted.remove(&id);
            let row = self.objects.entry(id.clone()).or_default();
            for (key, value) in object.as_object().unwrap() {
                if key != "members@delta" {
                    row.insert(key.clone(), value.clone());
                }
            }
            for link in object
                .get("members@delta")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let member = link["id"].as_str().unwrap().to_string();
                let set = self.members.entry(id.clone()).or_default();
                if link.get("@removed").is_some() {
                    set.remove(&member);
                } else {
                    set.insert(member, link["@odata.type"].as_str().unwrap().to_string());
                }
            }
        }
    }

    fn live_ids(&self) -> Vec<String> {
        self.objects
            .keys()
            .filter(|id| !self.soft_deleted.contains(*id))
            .cloned()
            .collect()
    }
}

fn assert_mirrors_groups(mirror: &Mirror, tenant: &Tenant) {
    let mut expected = tenant.group_ids();
    expected.sort();
    assert_eq!(mirror.live_ids(), expected);
    for id in &expected {
        let want: BTreeMap<String, String> = tenant
            .members_of(id)
            .into_iter()
            .map(|(m, k)| (m, k.odata_type().to_string()))
            .collect();
        let got = mirror.members.get(id).cloned().unwrap_or_default();
        assert_eq!(got, want, "members of {id}");
    }
}

fn assert_mirrors_users(mirror: &Mirror, tenant: &Tenant, select: &str) {
    let mut expected = tenant.user_ids();
    expected.sort();
    assert_eq!(mirror.live_ids(), expected);
    for id in &expected {
        let model = tenant.user(id).unwrap();
        let row = &mirror.objects[id];
        for name in select.split(',') {
            assert_eq!(row.get(name), model.get(name), "{id}.{name}");
        }
    }
}

fn user(n: usize) -> String {
    format!("0a1b2c3d-0000-4000-8000-{n:012}")
}

fn group(n: usize) -> String {
    format!("9f000000-0000-4000-8000-{n:012}")
}

fn add_users(tenant: &mut Tenant, count: usize) {
    for n in 0..count {
        let mut props = json!({
            "displayName": format!("User {n}"),
            "userPrincipalName": format!("user{n}@contoso.example"),
            "accountEnabled": n % 7 != 0,
        });
        // Every third user never had a job title set.
        if n % 3 != 0 {
            props["jobTitle"] = json!("Engineer");
        }
        tenant.add_user(&user(n), props);
    }
}

// ----- token endpoint -----

#[test]
fn token_endpoint_issues_tokens() {
    let sim = Sim::start();
    let resp = post_token(&sim, TENANT_ID, &good_form());
    assert_eq!(resp.status, 200);
    let body = resp.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert!(body["ext_expires_in"].is_u64());
    let access = body["access_token"].as_str().unwrap();
    assert!(access.len() > 100 && access.matches('.').count() == 2);

    // The domain works as {tenant}; the secret may come as HTTP Basic.
    let form: Vec<_> = good_form()
        .into_iter()
        .filter(|(k, _)| *k != "client_secret")
        .collect();
    let basic = base64(format!("{CLIENT_ID}:{CLIENT_SECRET}").as_bytes());
    let url = format!("{}/{TENANT_DOMAIN}/oauth2/v2.0/token", sim.url());
    let resp = read(
        agent()
            .post(&url)
            .header("Authorization", format!("Basic {basic}"))
            .send_form(form),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);

    // The simulator's own URL is not a Graph resource: Entra answers 500011.
    let scope = format!("{}/.default", sim.url());
    let form: Vec<_> = good_form()
        .into_iter()
        .map(|(k, v)| (k, if k == "scope" { scope.as_str() } else { v }))
        .collect();
    let resp = post_token(&sim, TENANT_ID, &form);
    assert_eq!(resp.status, 400);
    assert!(resp.body.contains("500011"), "{}", resp.body);

    // Consent off: the token still comes, without roles.
    sim.settings().consent_users = false;
    sim.settings().consent_groups = false;
    let access = token(&sim);
    let claims = String::from_utf8(base64url_decode(access.split('.').nth(1).unwrap())).unwrap();
    assert!(!claims.contains("roles"), "{claims}");
}

#[test]
fn token_endpoint_errors() {
    let sim = Sim::start();
    let replace = |key: &str, value: &'static str| -> Vec<(&'static str, &'static str)> {
        good_form()
            .into_iter()
            .map(|(k, v)| if k == key { (k, value) } else { (k, v) })
            .collect()
    };
    // (tenant in the URL, form, status, OAuth error, AADSTS code)
    type Case = (
        String,
        Vec<(&'static str, &'static str)>,
        u16,
        &'static str,
        u64,
    );
    let cases: Vec<Case> = vec![
        (
            TENANT_ID.into(),
            replace("client_secret", "nope"),
            401,
            "invalid_client",
            7000215,
        ),
        (
            TENANT_ID.into(),
            replace("client_id", "99999999-2222-3333-4444-555555555555"),
            400,
            "unauthorized_client",
            700016,
        ),
        (
            "fabrikam.example".into(),
            good_form(),
            400,
            "invalid_tenant",
            90002,
        ),
        (
            TENANT_ID.into(),
            replace("scope", "User.Read.All"),
            400,
            "invalid_scope",
            1002012,
        ),
        (
            TENANT_ID.into(),
            replace("grant_type", "password"),
            400,
            "unsupported_grant_type",
            70003,
        ),
    ];
    for (tenant, form, status, error, code) in cases {
        let resp = post_token(&sim, &tenant, &form);
        assert_eq!(resp.status, status, "{}", resp.body);
        assert_aad_error(&resp.json(), error, code);
    }

    let forced = [
        (TokenError::WrongSecret, 401, "invalid_client", 7000215),
        (TokenError::ExpiredSecret, 401, "invalid_client", 7000222),
        (TokenError::AppNotFound, 400, "unauthorized_client", 700016),
        (
            TokenError::NoServicePrincipal,
            401,
            "invalid_client",
            7000229,
        ),
        (TokenError::AppDisabled, 400, "unauthorized_client", 7000112),
        (TokenError::TenantNotFound, 400, "invalid_tenant", 90002),
        (TokenError::WrongCloud, 400, "invalid_request", 90038),
        (
            TokenError::Unavailable,
            503,
            "temporarily_unavailable",
            50033,
        ),
    ];
    for (error, status, class, code) in forced {
        sim.settings().token_error = Some(error);
        let resp = post_token(&sim, TENANT_ID, &good_form());
        assert_eq!(resp.status, status, "{error:?}");
        assert_aad_error(&resp.json(), class, code);
    }
}

fn assert_aad_error(body: &Value, error: &str, code: u64) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]));
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    let parts: Vec<&str> = description.split("\r\n").collect();
    assert_eq!(parts.len(), 4, "{description}");
    assert!(parts[1].starts_with("Trace ID: ") && parts[2].starts_with("Correlation ID: "));
    let timestamp = body["timestamp"].as_str().unwrap();
    assert_eq!(parts[3], format!("Timestamp: {timestamp}"));
    // `YYYY-MM-DD HH:MM:SSZ`, with a space.
    assert_eq!(timestamp.len(), 20);
    assert_eq!(&timestamp[10..11], " ");
    assert!(timestamp.ends_with('Z'));
    assert_eq!(body["trace_id"].as_str().unwrap().len(), 36);
    assert_eq!(body["correlation_id"].as_str().unwrap().len(), 36);
    assert!(
        body["error_uri"]
            .as_str()
            .unwrap()
            .ends_with(&code.to_string())
    );
}

// ----- users rounds -----

#[test]
fn users_initial_round_pages_until_delta_link() {
    let sim = Sim::start();
    add_users(&mut sim.tenant(), 450);
    let token = token(&sim);
    let (pages, delta) = round(&users_url(&sim), &token, None);
    assert_eq!(pages.len(), 3);
    assert_eq!(
        pages
            .iter()
            .map(|p| p["value"].as_array().unwrap().len())
            .collect::<Vec<_>>(),
        [200, 200, 50]
    );
    assert!(delta.starts_with(&format!("{}/v1.0/users/delta?$deltatoken=", sim.url())));
    assert!(delta.len() > sim.url().len() + 40, "long opaque token");
    assert!(
        pages[0]["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with(&format!("$metadata#users({USER_SELECT})"))
    );

    let all = objects(&pages);
    let ids: BTreeSet<_> = all.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 450);
    let never_set = &by_id(&all, &user(3))[0];
    assert!(
        never_set.get("jobTitle").is_none() && never_set.get("mail").is_none(),
        "{never_set}"
    );
    assert_eq!(by_id(&all, &user(4))[0]["jobTitle"], "Engineer");
    assert!(
        all.iter().all(|o| o.get("givenName").is_none()),
        "only selected properties"
    );

    // Graph's headers on every response.
    let resp = get(&users_url(&sim), &token, None);
    assert_eq!(
        resp.header("content-type"),
        Some(
            "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
        )
    );
    assert_eq!(resp.header("request-id").unwrap().len(), 36);
    assert_eq!(
        resp.header("client-request-id"),
        Some("4c4f5a34-0001-4000-8000-000000000001")
    );
    assert!(resp.header("date").is_some() && resp.header("x-ms-ags-diagnostic").is_some());
}

#[test]
fn users_incremental_rounds() {
    let sim = Sim::start();
    add_users(&mut sim.tenant(), 10);
    let token = token(&sim);
    let (pages, delta1) = round(&users_url(&sim), &token, None);
    let mut mirror = Mirror::default();
    mirror.apply(&pages);

    // No changes: an empty page with a new deltaLink.
    let (pages, delta2) = round(&delta1, &token, None);
    assert_eq!(objects(&pages).len(), 0);
    assert_ne!(delta1, delta2);

    {
        let mut tenant = sim.tenant();
        tenant.add_user(
            &user(100),
            json!({"displayName": "New", "userPrincipalName": "new@contoso.example"}),
        );
        tenant.update_user(
            &user(1),
            json!({"jobTitle": null, "displayName": "Renamed"}),
        );
        tenant.update_user(&user(2), json!({"givenName": "Unselected"}));
        tenant.soft_delete_user(&user(3));
        tenant.soft_delete_user(&user(4));
        tenant.restore_user(&user(4));
        tenant.purge_user(&user(5));
    }
    // Default payload: every selected property of a changed user, cleared ones as null.
    let (pages, _) = round(&delta2, &token, None);
    let changes = objects(&pages);
    let renamed = &by_id(&changes, &user(1))[0];
    assert_eq!(renamed["displayName"], "Renamed");
    assert_eq!(renamed["jobTitle"], Value::Null);
    assert_eq!(renamed["userPrincipalName"], "user1@contoso.example");
    assert!(
        by_id(&changes, &user(2)).is_empty(),
        "unselected change is not tracked"
    );
    assert_eq!(
        by_id(&changes, &user(3))[0],
        json!({"id": user(3), "@removed": {"reason": "changed"}})
    );
    assert_eq!(
        by_id(&changes, &user(4))[0]["userPrincipalName"],
        "user4@contoso.example"
    );
    assert_eq!(
        by_id(&changes, &user(5))[0],
        json!({"id": user(5), "@removed": {"reason": "deleted"}})
    );
    assert_eq!(by_id(&changes, &user(100))[0]["displayName"], "New");

    // The same deltaLink again (nothing issued from it used yet) with return=minimal.
    let (pages, delta3) = round(&delta2, &token, Some("return=minimal"));
    let changes = objects(&pages);
    assert_eq!(
        by_id(&changes, &user(1))[0],
        json!({"id": user(1), "displayName": "Renamed", "jobTitle": null})
    );
    assert!(
        by_id(&changes, &user(4))[0]
            .get("userPrincipalName")
            .is_some(),
        "restore: full object"
    );
    mirror.apply(&pages);
    assert_mirrors_users(&mirror, &sim.tenant(), USER_SELECT);

    // Moving on retires the older link.
    let (_, _) = round(&delta3, &token, None);
    let resp = get(&delta2, &token, None);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["code"], "syncStateNotFound");
}

#[test]
fn change_during_round_is_replayed_next_round() {
    let sim = Sim::start();
    add_users(&mut sim.tenant(), 30);
    sim.settings().users_page_size = 10;
    let token = token(&sim);
    let first = get(&users_url(&sim), &token, None).json();
    sim.tenant()
        .update_user(&user(0), json!({"displayName": "Changed mid-round"}));
    let (rest, delta) = round(first["@odata.nextLink"].as_str().unwrap(), &token, None);
    assert_eq!(objects(&rest).len(), 20);
    let (next, _) = round(&delta, &token, None);
    assert_eq!(
        by_id(&objects(&next), &user(0))[0]["displayName"],
        "Changed mid-round"
    );
}

// ----- groups rounds -----

fn groups_tenant() -> Tenant {
    let mut tenant = Tenant::new();
    add_users(&mut tenant, 1300);
    tenant.add_group(
        &group(1),
        json!({"displayName": "All Staff", "securityEnabled": true, "groupTypes": []}),
    );
    tenant.add_group(
        &group(2),
        json!({"displayName": "Engineering", "securityEnabled": true, "groupTypes": []}),
    );
    tenant.add_group(
        &group(3),
        json!({"displayName": "Empty Team", "securityEnabled": false, "groupTypes": ["Unified"]}),
    );
    for n in 0..1200 {
        tenant.add_member(&group(1), &user(n), MemberKind::User);
    }
    tenant.add_member(&group(1), &group(2), MemberKind::Group);
    tenant.add_member(
        &group(1),
        "5e000000-0000-4000-8000-0000000000b1",
        MemberKind::ServicePrincipal,
    );
    tenant.add_member(
        &group(1),
        "de000000-0000-4000-8000-0000000000d1",
        MemberKind::Device,
    );
    tenant.add_member(
        &group(1),
        "c0000000-0000-4000-8000-0000000000c1",
        MemberKind::OrgContact,
    );
    for n in 1200..1210 {
        tenant.add_member(&group(2), &user(n), MemberKind::User);
    }
    tenant
}

#[test]
fn groups_members_are_sliced_across_pages() {
    let sim = Sim::start_with(groups_tenant());
    let token = token(&sim);
    let (pages, _) = round(&groups_url(&sim), &token, None);
    let all = objects(&pages);
    let slices = by_id(&all, &group(1));
    assert_eq!(slices.len(), 3, "1204 links in slices of at most 500");
    for slice in &slices {
        assert_eq!(slice["displayName"], "All Staff");
        assert_eq!(slice["securityEnabled"], true);
    }
    for page in &pages {
        let links: usize = page["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                o.get("members@delta")
                    .map_or(0, |m| m.as_array().unwrap().len())
            })
            .sum();
        assert!(links <= 500);
    }
    let empty = &by_id(&all, &group(3))[0];
    assert!(
        empty.get("members@delta").is_none(),
        "no members: no members@delta key"
    );
    let types: BTreeSet<String> = slices
        .iter()
        .flat_map(|s| s["members@delta"].as_array().unwrap().clone())
        .map(|m| m["@odata.type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types.len(), 5, "{types:?}");
    let mut mirror = Mirror::default();
    mirror.apply(&pages);
    assert_mirrors_groups(&mirror, &sim.tenant());

    // Without `members` in $select there is no members@delta anywhere.
    let url = format!("{}/v1.0/groups/delta?$select=id,displayName", sim.url());
    let (pages, _) = round(&url, &token, None);
    assert_eq!(objects(&pages).len(), 3);
    assert!(
        objects(&pages)
            .iter()
            .all(|g| g.get("members@delta").is_none())
    );
}

#[test]
fn groups_incremental_round() {
    let sim = Sim::start_with(groups_tenant());
    let token = token(&sim);
    let (pages, users_delta) = round(&users_url(&sim), &token, None);
    let mut users = Mirror::default();
    users.apply(&pages);
    let (pages, groups_delta) = round(&groups_url(&sim), &token, None);
    let mut groups = Mirror::default();
    groups.apply(&pages);
    {
        let mut tenant = sim.tenant();
        tenant.soft_delete_user(&user(0));
        tenant.purge_user(&user(1));
        tenant.remove_member(&group(2), &user(1200));
        tenant.add_member(&group(2), &user(1250), MemberKind::User);
        tenant.update_group(&group(3), json!({"description": "now described"}));
        tenant.add_group(&group(4), json!({"displayName": "Temp", "groupTypes": []}));
        tenant.add_member(&group(4), &user(7), MemberKind::User);
        tenant.add_group(
            &group(5),
            json!({"displayName": "M365", "groupTypes": ["Unified"]}),
        );
    }
    let (pages, groups_delta2) = round(&groups_delta, &token, None);
    let changes = objects(&pages);
    let all_staff = by_id(&changes, &group(1));
    assert_eq!(all_staff.len(), 1);
    assert_eq!(
        all_staff[0]["displayName"], "All Staff",
        "default mode: all selected properties"
    );
    assert_eq!(
        all_staff[0]["members@delta"],
        json!([{"@odata.type": "#microsoft.graph.user", "id": user(1), "@removed": {"reason": "deleted"}}]),
        "purged user removed; the soft-deleted user is not"
    );
    let engineering = &by_id(&changes, &group(2))[0]["members@delta"];
    assert_eq!(engineering.as_array().unwrap().len(), 2);
    let described = &by_id(&changes, &group(3))[0];
    assert_eq!(described["description"], "now described");
    assert!(
        described.get("members@delta").is_none(),
        "membership unchanged: no members@delta"
    );
    assert_eq!(
        by_id(&changes, &group(4))[0]["members@delta"][0]["id"],
        user(7)
    );
    groups.apply(&pages);
    assert_mirrors_groups(&groups, &sim.tenant());

    // Soft-deleted user: membership kept; users/delta says `changed`.
    assert!(
        sim.tenant()
            .members_of(&group(1))
            .iter()
            .any(|(m, _)| *m == user(0))
    );
    let (pages, _) = round(&users_delta, &token, None);
    users.apply(&pages);
    assert!(users.soft_deleted.contains(&user(0)));

    // Security group delete is permanent, Microsoft 365 delete is soft, restore is full.
    {
        let mut tenant = sim.tenant();
        tenant.delete_group(&group(4));
        tenant.delete_group(&group(5));
    }
    let (pages, groups_delta3) = round(&groups_delta2, &token, Some("return=minimal"));
    let changes = objects(&pages);
    assert_eq!(
        by_id(&changes, &group(4))[0]["@removed"]["reason"],
        "deleted"
    );
    assert_eq!(
        by_id(&changes, &group(5))[0]["@removed"]["reason"],
        "changed"
    );
    sim.tenant().restore_group(&group(5));
    let (pages, _) = round(&groups_delta3, &token, Some("return=minimal"));
    let restored = &by_id(&objects(&pages), &group(5))[0];
    assert_eq!(restored["displayName"], "M365");
    assert!(restored.get("@removed").is_none());
}

#[test]
fn synthetic_tenant_round_trips_with_hostile_paging() {
    let sim = Sim::start_with(Tenant::synthetic(3000, 120, 30_000, 4, 7));
    {
        let mut settings = sim.settings();
        settings.duplicate_every = Some(17);
        settings.empty_page_every = Some(3);
        settings.short_pages = true;
        settings.link_form = LinkForm::Alternate;
        settings.links_page_size = 300;
    }
    let token = token(&sim);
    let (pages, delta) = round(&groups_url(&sim), &token, None);
    assert!(
        pages.iter().any(
            |p| p["value"].as_array().unwrap().is_empty() && p.get("@odata.nextLink").is_some()
        )
    );
    let links: Vec<&str> = pages
        .iter()
        .filter_map(|p| p["@odata.nextLink"].as_str())
        .collect();
    assert!(
        links
            .iter()
            .any(|l| l.contains("/groups/microsoft.graph.delta()?$skiptoken="))
    );
    assert!(
        links
            .iter()
            .any(|l| l.contains("/groups/delta?$skiptoken="))
    );
    let all = objects(&pages);
    let distinct: BTreeSet<_> = all.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 120);
    assert!(all.len() > 120 + 120 / 17, "repeats and slices");
    let mut mirror = Mirror::default();
    mirror.apply(&pages);
    assert_mirrors_groups(&mirror, &sim.tenant());

    // Mutate a lot, then an incremental round brings the mirror up to date.
    {
        let mut tenant = sim.tenant();
        let users = tenant.user_ids();
        let groups = tenant.group_ids();
        for (i, g) in groups.iter().enumerate().take(40) {
            let members = tenant.members_of(g);
            for (m, _) in members.iter().take(i % 5) {
                tenant.remove_member(g, m);
            }
            tenant.add_member(g, &users[(i * 37) % users.len()], MemberKind::User);
        }
        for u in users.iter().take(30) {
            tenant.purge_user(u);
        }
        tenant.purge_group(&groups[5]);
    }
    let (pages, _) = round(&delta, &token, None);
    mirror.apply(&pages);
    assert_mirrors_groups(&mirror, &sim.tenant());
}

#[test]
fn optional_fidelity_knobs() {
    let sim = Sim::start();
    add_users(&mut sim.tenant(), 20);
    {
        let mut tenant = sim.tenant();
        tenant.set_manager(&user(1), Some(&user(0)));
        tenant.add_group(&group(1), json!({"displayName": "g", "groupTypes": []}));
        tenant.add_member(&group(1), &user(2), MemberKind::User);
        tenant.add_member(&group(1), &user(3), MemberKind::User);
        tenant.remove_member(&group(1), &user(3));
        tenant.soft_delete_user(&user(4));
        tenant.purge_user(&user(5));
    }
    let token = token(&sim);

    // manager@delta: the current manager first, then a change with the old one removed.
    let url = format!(
        "{}/v1.0/users/delta?$select=id,displayName,manager",
        sim.url()
    );
    let (pages, delta) = round(&url, &token, None);
    let manager = json!([{"@odata.type": "#microsoft.graph.user", "id": user(0)}]);
    assert_eq!(
        by_id(&objects(&pages), &user(1))[0]["manager@delta"],
        manager
    );
    sim.tenant().set_manager(&user(1), Some(&user(6)));
    let (pages, _) = round(&delta, &token, Some("return=minimal"));
    let expected = json!([
        {"@odata.type": "#microsoft.graph.user", "id": user(6)},
        {"@odata.type": "#microsoft.graph.user", "id": user(0), "@removed": {"reason": "deleted"}},
    ]);
    assert_eq!(
        objects(&pages),
        vec![json!({"id": user(1), "manager@delta": expected})]
    );

    // Initial rounds may list removed objects and stale member removals.
    {
        let mut settings = sim.settings();
        settings.initial_removed_objects = true;
        settings.stale_member_removals = true;
        settings.duplicate_every = Some(5);
        settings.users_page_size = 7;
    }
    let (pages, _) = round(&users_url(&sim), &token, None);
    let all = objects(&pages);
    assert_eq!(by_id(&all, &user(4))[0]["@removed"]["reason"], "changed");
    assert_eq!(by_id(&all, &user(5))[0]["@removed"]["reason"], "deleted");
    assert!(all.len() >= 20 + 4, "every fifth user repeated");
    let (pages, _) = round(&groups_url(&sim), &token, None);
    let removed = json!({"@odata.type": "#microsoft.graph.user", "id": user(3), "@removed": {"reason": "deleted"}});
    let members = objects(&pages)[0]["members@delta"].clone();
    assert!(members.as_array().unwrap().contains(&removed), "{members}");

    // Reusable links when single use is off; a TTL expires them.
    sim.settings().single_use_tokens = false;
    let (_, delta) = round(&users_url(&sim), &token, None);
    let (_, newer) = round(&delta, &token, None);
    round(&newer, &token, None);
    assert_eq!(get(&delta, &token, None).status, 200);
    sim.settings().delta_token_ttl = Duration::ZERO;
    assert_eq!(get(&delta, &token, None).status, 400);
}

// ----- options and errors -----

#[test]
fn query_options() {
    let sim = Sim::start();
    add_users(&mut sim.tenant(), 60);
    let token = token(&sim);
    let base = format!("{}/v1.0/users/delta", sim.url());

    let resp = get(&format!("{base}?$select=id,nonsense"), &token, None);
    assert_eq!(resp.status, 400);
    let error = &resp.json()["error"];
    assert_eq!(error["code"], "Request_BadRequest");
    assert_eq!(
        error["message"],
        "Could not find a property named 'nonsense' on type 'microsoft.graph.user'."
    );
    assert_eq!(
        error["innerError"]["client-request-id"],
        "4c4f5a34-0001-4000-8000-000000000001"
    );
    assert!(
        error["innerError"]["date"].is_string() && error["innerError"]["request-id"].is_string()
    );

    let resp = get(&format!("{base}?$select=id,skills"), &token, None);
    assert_eq!(resp.status, 501);
    assert_eq!(resp.json()["error"]["code"], "NotImplemented");

    let filter = |ids: &[String]| {
        ids.iter()
            .map(|id| format!("id%20eq%20'{id}'"))
            .collect::<Vec<_>>()
            .join("%20or%20")
    };
    let ids: Vec<String> = (0..51).map(user).collect();
    let resp = get(&format!("{base}?$filter={}", filter(&ids)), &token, None);
    assert_eq!(resp.status, 400);
    let (pages, delta) = round(
        &format!(
            "{base}?$select=id,displayName&$filter={}&$top=1",
            filter(&ids[..2])
        ),
        &token,
        None,
    );
    assert_eq!(objects(&pages).len(), 2);
    sim.tenant()
        .update_user(&user(1), json!({"displayName": "x"}));
    sim.tenant()
        .update_user(&user(9), json!({"displayName": "y"}));
    let (pages, _) = round(&delta, &token, None);
    assert_eq!(
        objects(&pages),
        vec![json!({"id": user(1), "displayName": "x"})],
        "filter kept in the token"
    );

    // $deltatoken=latest: nothing listed, later changes are.
    let (pages, latest) = round(
        &format!("{base}?$select=id,displayName&$deltatoken=latest"),
        &token,
        None,
    );
    assert_eq!(objects(&pages).len(), 0);
    sim.tenant()
        .update_user(&user(2), json!({"displayName": "z"}));
    let (pages, _) = round(&latest, &token, None);
    assert_eq!(
        objects(&pages),
        vec![json!({"id": user(2), "displayName": "z"})]
    );

    // Qualified path forms are accepted; $select with a skiptoken is not.
    let (pages, _) = round(
        &format!(
            "{}/v1.0/users/microsoft.graph.delta()?$select=id",
            sim.url()
        ),
        &token,
        None,
    );
    assert_eq!(objects(&pages).len(), 60);
    sim.settings().users_page_size = 10;
    let next = get(&base, &token, None).json()["@odata.nextLink"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(get(&format!("{next}&$select=id"), &token, None).status, 400);
}

#[test]
fn delta_state_faults() {
    let sim = Sim::start();
    add_users(&mut sim.tenant(), 5);
    let token = token(&sim);
    let (_, delta) = round(&users_url(&sim), &token, None);

    sim.push_fault(Resource::Users, Fault::Gone);
    let resp = get(&delta, &token, None);
    assert_eq!(resp.status, 410);
    assert_eq!(resp.json()["error"]["code"], "resyncRequired");
    let location = resp.header("location").unwrap().to_string();
    assert!(location.starts_with(&format!("{}/v1.0/users/delta?$select=", sim.url())));
    assert!(location.ends_with("$deltatoken="));
    let (pages, _) = round(&location, &token, None);
    assert_eq!(objects(&pages).len(), 5, "Location starts a full round");

    sim.push_fault(Resource::Users, Fault::SyncStateNotFound);
    let resp = get(&delta, &token, None);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["code"], "syncStateNotFound");

    sim.expire_delta_tokens();
    let resp = get(&delta, &token, None);
    assert_eq!(resp.status, 400);
    let error = resp.json()["error"].clone();
    assert_eq!(error["code"], "syncStateNotFound");
    assert_eq!(
        error["message"],
        "The sync state generation is not found. The delta token is expired and data must be synchronized again."
    );
}

#[test]
fn transient_faults() {
    let sim = Sim::start();
    add_users(&mut sim.tenant(), 30);
    sim.settings().users_page_size = 10;
    let token = token(&sim);
    let url = users_url(&sim);

    sim.push_fault(
        Resource::Users,
        Fault::Status {
            status: 429,
            retry_after: Some("2.128".into()),
            code: "TooManyRequests",
        },
    );
    sim.push_fault(
        Resource::Any,
        Fault::Status {
            status: 503,
            retry_after: Some("3".into()),
            code: "ServiceUnavailable",
        },
    );
    sim.push_fault(
        Resource::Users,
        Fault::Status {
            status: 503,
            retry_after: None,
            code: "ServiceUnavailable",
        },
    );
    sim.push_fault(
        Resource::Users,
        Fault::Status {
            status: 504,
            retry_after: None,
            code: "GatewayTimeout",
        },
    );
    let resp = get(&url, &token, None);
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("2.128"));
    assert!(
        resp.header("x-ms-throttle-scope").is_some()
            && resp.header("x-ms-throttle-information").is_some()
    );
    let body = resp.json();
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert_eq!(body["error"]["innerError"]["status"], "429");
    let resp = get(&url, &token, None);
    assert_eq!((resp.status, resp.header("retry-after")), (503, Some("3")));
    let resp = get(&url, &token, None);
    assert_eq!((resp.status, resp.header("retry-after")), (503, None));
    assert_eq!(get(&url, &token, None).status, 504);
    assert_eq!(sim.pending_faults(), 0);
    sim.push_fault(
        Resource::Users,
        Fault::Status {
            status: 500,
            retry_after: None,
            code: "",
        },
    );
    let resp = get(&url, &token, None);
    assert_eq!(resp.status, 500);
    assert_eq!(resp.json()["error"]["code"], "UnknownError");

    // Broken bodies; the same link still works afterwards.
    let first = get(&url, &token, None).json();
    let next = first["@odata.nextLink"].as_str().unwrap().to_string();
    sim.push_fault(Resource::Users, Fault::Malformed);
    let resp = get(&next, &token, None);
    assert_eq!(resp.status, 200);
    assert!(serde_json::from_str::<Value>(&resp.body).is_err());
    sim.push_fault(Resource::Users, Fault::Truncated);
    let resp = get(&next, &token, None);
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-length").unwrap(),
        resp.body.len().to_string()
    );
    assert!(serde_json::from_str::<Value>(&resp.body).is_err());
    assert_eq!(get(&next, &token, None).status, 200);

    // A foreign nextLink, then a delayed answer.
    sim.push_fault(
        Resource::Users,
        Fault::ForeignNextLink("https://graph.evil.example".into()),
    );
    let page = get(&next, &token, None).json();
    assert!(
        page["@odata.nextLink"]
            .as_str()
            .unwrap()
            .starts_with("https://graph.evil.example/v1.0/users/")
    );
    sim.push_fault(Resource::Users, Fault::Delay(Duration::from_millis(300)));
    let (started, served) = (Instant::now(), sim.serving_time());
    assert_eq!(get(&next, &token, None).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        sim.serving_time() - served < Duration::from_millis(300),
        "latency is not serving time"
    );

    // Token endpoint faults.
    sim.push_fault(
        Resource::Token,
        Fault::Status {
            status: 503,
            retry_after: Some("1".into()),
            code: "temporarily_unavailable",
        },
    );
    let resp = post_token(&sim, TENANT_ID, &good_form());
    assert_eq!(resp.status, 503);
    assert_eq!(resp.json()["error"], "temporarily_unavailable");
    let recorded = sim.requests();
    let last = recorded.last().unwrap();
    assert_eq!(
        (last.resource, last.status, last.method.as_str()),
        (Resource::Token, 503, "POST")
    );
    assert!(last.body.contains("grant_type=client_credentials"));
}

#[test]
fn graph_authorization() {
    let sim = Sim::start();
    add_users(&mut sim.tenant(), 3);
    let url = users_url(&sim);

    let resp = read(agent().get(&url).call());
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"]["code"], "InvalidAuthenticationToken");
    assert!(
        resp.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer realm=\"\"")
    );
    assert_eq!(get(&url, "not-a-token", None).status, 401);

    let token = token(&sim);
    assert_eq!(get(&url, &token, None).status, 200);
    sim.expire_tokens();
    let resp = get(&url, &token, None);
    assert_eq!(resp.status, 401);
    assert_eq!(
        resp.json()["error"]["message"],
        "Access token has expired or is not yet valid."
    );
    assert!(resp.header("www-authenticate").is_some());

    // Consent missing for users only: users 403, groups fine; consent later needs a new token.
    sim.settings().consent_users = false;
    let token = self::token(&sim);
    let resp = get(&url, &token, None);
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json()["error"]["code"], "Authorization_RequestDenied");
    assert_eq!(get(&groups_url(&sim), &token, None).status, 200);
    sim.settings().consent_users = true;
    assert_eq!(get(&url, &token, None).status, 403);
    assert_eq!(get(&url, &self::token(&sim), None).status, 200);

    // Short-lived tokens really expire.
    sim.settings().token_lifetime_secs = 1;
    let token = self::token(&sim);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get(&url, &token, None).status, 401);
}

#[test]
fn latency_does_not_serialise_chains() {
    let mut tenant = Tenant::new();
    add_users(&mut tenant, 50);
    tenant.add_group(&group(1), json!({"displayName": "g"}));
    for n in 0..50 {
        tenant.add_member(&group(1), &user(n), MemberKind::User);
    }
    let sim = Sim::start_with(tenant);
    {
        let mut settings = sim.settings();
        settings.users_page_size = 10;
        settings.links_page_size = 10;
        settings.page_latency = Duration::from_millis(300);
    }
    let token = token(&sim);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let users = scope.spawn(|| round(&users_url(&sim), &token, None).0.len());
        let groups = scope.spawn(|| round(&groups_url(&sim), &token, None).0.len());
        assert_eq!(users.join().unwrap(), 5);
        assert_eq!(groups.join().unwrap(), 5);
    });
    let elapsed = started.elapsed();
    // Five pages per chain: 1.5 s each when concurrent, 3 s when serialised.
    assert!(elapsed >= Duration::from_millis(1500));
    assert!(
        elapsed < Duration::from_millis(2600),
        "chains ran concurrently: {elapsed:?}"
    );
    assert!(sim.serving_time() < Duration::from_millis(500));
}

#[test]
fn large_synthetic_tenant_is_fast() {
    let started = Instant::now();
    let tenant = Tenant::synthetic(100_000, 10_000, 1_000_000, 5, 42);
    let built = started.elapsed();
    // A generous bound: it catches an accidental quadratic build, not a slow machine (2 cores
    // shared by many builds). The speed figure itself belongs to the benchmark.
    assert!(built < Duration::from_secs(60), "built in {built:?}");
    assert_eq!(tenant.user_ids().len(), 100_000);
    assert_eq!(tenant.group_ids().len(), 10_000);
    assert_eq!(tenant.link_count(), 1_000_000);
    let groups = tenant.group_ids();
    let sizes: Vec<usize> = groups.iter().map(|g| tenant.members_of(g).len()).collect();
    assert!(sizes.iter().filter(|s| **s >= 20_000).count() >= 2);
    let nested = groups
        .iter()
        .filter(|g| {
            tenant
                .members_of(g)
                .iter()
                .any(|(_, k)| *k == MemberKind::Group)
        })
        .count();
    assert_eq!(nested, 5);
    let kinds: BTreeSet<_> = tenant
        .members_of(&groups[0])
        .into_iter()
        .map(|(_, k)| format!("{k:?}"))
        .collect();
    assert!(kinds.len() >= 3, "{kinds:?}");
    // Deterministic for a seed.
    let again = Tenant::synthetic(2000, 50, 10_000, 2, 42);
    let other = Tenant::synthetic(2000, 50, 10_000, 2, 42);
    assert_eq!(again.user_ids(), other.user_ids());
    assert_eq!(
        again.members_of(&again.group_ids()[7]),
        other.members_of(&other.group_ids()[7])
    );

    // A full groups round over HTTP: each page costs O(page), not O(tenant).
    let sim = Sim::start_with(tenant);
    let token = token(&sim);
    let started = Instant::now();
    let mut url = groups_url(&sim);
    let mut pages = 0;
    let mut links = 0usize;
    let mut per_group: HashMap<String, usize> = HashMap::new();
    loop {
        let page = get(&url, &token, None).json();
        pages += 1;
        for group in page["value"].as_array().unwrap() {
            let count = group
                .get("members@delta")
                .map_or(0, |m| m.as_array().unwrap().len());
            links += count;
            *per_group
                .entry(group["id"].as_str().unwrap().to_string())
                .or_default() += count;
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(links, 1_000_000);
    assert_eq!(per_group.len(), 10_000);
    assert!(pages >= 2000);
    let per_page = sim.serving_time() / pages;
    eprintln!(
        "groups round: {pages} pages in {:?}, serving {per_page:?}/page",
        started.elapsed()
    );
    assert!(
        per_page < Duration::from_millis(20),
        "{per_page:?} per page"
    );
}

// ----- base64 for the tests -----

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64url_decode(text: &str) -> Vec<u8> {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (mut bits, mut count, mut out) = (0u32, 0, Vec::new());
    for c in text.bytes() {
        bits = bits << 6 | TABLE.iter().position(|&t| t == c).unwrap() as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

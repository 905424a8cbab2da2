//! Self-tests of `$batch`, the resource-unit budget (notes 5.2), concurrency, and the whole
//! fast initial sync of notes 3.11. Included by `tests/sim_selftest.rs`.

use super::fast_sync::{http_encode, ids, list_all, partitions, post_json, ru};
use super::*;
use sim::Endpoint;

#[test]
fn batch_limits_order_and_items() {
    let mut tenant = Tenant::new();
    add_users(&mut tenant, 30);
    for g in 0..20 {
        tenant.add_group(&group(g), json!({"displayName": format!("G{g}")}));
        for n in 0..=g {
            tenant.add_member(&group(g), &user(n), MemberKind::User);
        }
    }
    let sim = Sim::start_with(tenant);
    let token = token(&sim);
    let batch = format!("{}/v1.0/$batch", sim.url());
    let members = |count: usize| -> Vec<Value> {
        (0..count)
            .map(|g| {
                // With and without the leading "/".
                let slash = if g % 2 == 0 { "/" } else { "" };
                json!({"id": format!("{g}"), "method": "GET",
                       "url": format!("{slash}groups/{}/members?$select=id&$top=999", group(g % 20))})
            })
            .collect()
    };
    let resp = post_json(&batch, &token, &json!({"requests": members(21)}));
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["code"], "BadRequest");
    assert_eq!(post_json(&batch, &token, &json!({"nope": 1})).status, 400);

    let resp = post_json(&batch, &token, &json!({"requests": members(20)}));
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(ru(&resp), 0, "the envelope costs nothing");
    let responses = resp.json()["responses"].as_array().unwrap().clone();
    assert_eq!(responses.len(), 20);
    let order: Vec<String> = responses
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let sorted: Vec<String> = (0..20).map(|g| g.to_string()).collect();
    assert_ne!(order, sorted, "shuffled");
    for response in &responses {
        let g: usize = response["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(response["status"], 200, "{response}");
        assert_eq!(response["headers"]["x-ms-resource-unit"], "2");
        let mut got = ids(response["body"]["value"].as_array().unwrap());
        got.sort();
        let mut want: Vec<String> = (0..=g).map(user).collect();
        want.sort();
        assert_eq!(got, want, "item {g}");
    }
    let in_batch = sim
        .requests()
        .iter()
        .filter(|r| r.in_batch && r.endpoint == Endpoint::Members)
        .count();
    assert_eq!(in_batch, 20);

    // Delta links, lists, a 404 and an absolute url in one batch; items inherit the token.
    sim.settings().users_page_size = 10;
    let first = get(&users_url(&sim), &token, None).json();
    let next = first["@odata.nextLink"].as_str().unwrap();
    let relative = next.strip_prefix(&format!("{}/v1.0", sim.url())).unwrap();
    let requests = json!({"requests": [
        {"id": "delta", "method": "GET", "url": relative},
        {"id": "users", "method": "GET", "url": "users?$select=id&$top=5"},
        {"id": "groups", "method": "GET", "url": "/groups/delta?$select=id,members"},
        {"id": "missing", "method": "GET", "url": format!("/groups/{}/members", group(99))},
        {"id": "absolute", "method": "GET", "url": next},
    ]});
    let resp = post_json(&batch, &token, &requests);
    let by: HashMap<String, Value> = resp.json()["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    assert_eq!(by["delta"]["status"], 200);
    assert_eq!(by["delta"]["body"]["value"].as_array().unwrap().len(), 10);
    assert_eq!(by["users"]["body"]["value"].as_array().unwrap().len(), 5);
    assert!(by["users"]["body"]["@odata.nextLink"].is_string());
    assert_eq!(by["groups"]["status"], 200);
    assert_eq!(by["missing"]["status"], 404);
    assert_eq!(
        by["missing"]["body"]["error"]["code"],
        "Request_ResourceNotFound"
    );
    assert_eq!(by["absolute"]["status"], 400);

    // Faults can target one endpoint, inside a batch too.
    sim.push_fault(
        Endpoint::Members,
        Fault::Status {
            status: 503,
            retry_after: Some("1".into()),
            code: "",
        },
    );
    let resp = post_json(&batch, &token, &json!({"requests": members(3)}));
    let statuses: BTreeSet<u64> = resp.json()["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, BTreeSet::from([200, 503]));
    assert_eq!(sim.pending_faults(), 0);
}

#[test]
fn resource_unit_costs_per_request() {
    let sim = Sim::start_with(groups_tenant());
    let token = token(&sim);
    let group = sim.tenant().group_ids()[0].clone();
    let base = sim.url();
    for (path, cost) in [
        ("/v1.0/users".to_string(), 2),
        ("/v1.0/users?$select=id".to_string(), 1),
        ("/v1.0/users?$top=10".to_string(), 1),
        ("/v1.0/users?$select=id&$top=10".to_string(), 1),
        ("/v1.0/groups".to_string(), 2),
        ("/v1.0/groups?$select=id".to_string(), 1),
        (format!("/v1.0/groups/{group}/members"), 3),
        (format!("/v1.0/groups/{group}/members?$select=id"), 2),
        (format!("/v1.0/groups/{group}/members?$select=id&$top=5"), 1),
        (format!("/v1.0/groups/{group}/members?$top=999"), 3),
        ("/v1.0/users/delta".to_string(), 2),
        ("/v1.0/users/delta?$select=id".to_string(), 1),
        ("/v1.0/groups/delta?$select=id,members".to_string(), 1),
        ("/v1.0/nonsense".to_string(), 1),
    ] {
        let resp = get(&format!("{base}{path}"), &token, None);
        assert_eq!(ru(&resp), cost, "{path}: {}", resp.body);
        assert!(
            resp.header("x-ms-throttle-limit-percentage").is_none(),
            "no quota, no percentage"
        );
    }
    // A delta nextLink is billed by the round's query (it had a $select).
    sim.settings().users_page_size = 10;
    let first = get(&users_url(&sim), &token, None).json();
    let next = get(first["@odata.nextLink"].as_str().unwrap(), &token, None);
    assert_eq!(ru(&next), 1);
    let counters = sim.counters();
    assert_eq!(
        counters.ru_spent,
        2 + 1 + 1 + 1 + 2 + 1 + 3 + 2 + 1 + 3 + 2 + 1 + 1 + 1 + 1 + 1
    );
    assert_eq!(counters.requests[&Endpoint::UserList], 4);
    assert_eq!(counters.requests[&Endpoint::Members], 4);
    assert_eq!(counters.throttled, 0);
}

#[test]
fn resource_unit_budget_throttles_with_accurate_retry_after() {
    let sim = Sim::start();
    add_users(&mut sim.tenant(), 10);
    let token = token(&sim);
    // 10 RU per second, bucket of 10.
    sim.settings().ru_quota = Some((10, Duration::from_secs(1)));
    let url = format!("{}/v1.0/users", sim.url());
    let mut percentages = Vec::new();
    let throttled = loop {
        let resp = get(&url, &token, None);
        if resp.status == 429 {
            break resp;
        }
        assert_eq!(resp.status, 200);
        assert_eq!(ru(&resp), 2);
        percentages.extend(
            resp.header("x-ms-throttle-limit-percentage")
                .map(str::to_string),
        );
        assert!(
            sim.counters().requests[&Endpoint::UserList] < 30,
            "never throttled"
        );
    };
    assert!(
        !percentages.is_empty(),
        "above 80 % the percentage is reported"
    );
    for p in &percentages {
        let p: f64 = p.parse().unwrap();
        assert!((0.8..=1.8).contains(&p), "{p}");
    }
    assert_eq!(ru(&throttled), 1, "a throttled request costs 1 RU");
    assert_eq!(
        throttled.header("x-ms-throttle-information"),
        Some("ResourceUnitLimitExceeded")
    );
    assert!(
        throttled
            .header("x-ms-throttle-scope")
            .unwrap()
            .starts_with("Tenant_Application/")
    );
    let percentage: f64 = throttled
        .header("x-ms-throttle-limit-percentage")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1.0..=1.8).contains(&percentage));
    let error = &throttled.json()["error"];
    assert_eq!(error["code"], "TooManyRequests");
    assert_eq!(error["innerError"]["status"], "429");
    let retry_after: f64 = throttled.header("Retry-After").unwrap().parse().unwrap();
    assert!(retry_after > 0.0 && retry_after < 1.0, "{retry_after}");
    assert!(
        throttled.header("Retry-After").unwrap().contains('.'),
        "fractional"
    );

    // Retrying at once is throttled again (and costs), waiting as told succeeds.
    let again = get(&url, &token, None);
    assert_eq!(again.status, 429);
    let retry_after: f64 = again.header("Retry-After").unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_secs_f64(retry_after));
    let resp = get(&url, &token, None);
    assert_eq!(resp.status, 200, "after Retry-After {retry_after}");
    let counters = sim.counters();
    assert_eq!(counters.throttled, 2);
    assert!(counters.ru_spent >= 12);

    // Back to unlimited.
    sim.settings().ru_quota = None;
    for _ in 0..20 {
        assert_eq!(get(&url, &token, None).status, 200);
    }
}

#[test]
fn batch_items_are_throttled_individually() {
    let sim = Sim::start_with(groups_tenant());
    let token = token(&sim);
    let groups = sim.tenant().group_ids();
    // 5 RU, refilled over 100 s: practically no refill during the test.
    sim.settings().ru_quota = Some((5, Duration::from_secs(100)));
    let requests: Vec<Value> = (0..4)
        .map(|i| {
            json!({"id": format!("{}", i + 1), "method": "GET",
                   "url": format!("/groups/{}/members?$select=id", groups[i % groups.len()])})
        })
        .collect();
    let resp = post_json(
        &format!("{}/v1.0/$batch", sim.url()),
        &token,
        &json!({"requests": requests}),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let by: HashMap<String, Value> = resp.json()["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    // Items run in request order: 2 + 2 RU paid, then the bucket (1 RU left) can't pay 2.
    for id in ["1", "2"] {
        assert_eq!(by[id]["status"], 200, "{}", by[id]);
        assert_eq!(by[id]["headers"]["x-ms-resource-unit"], "2");
    }
    for id in ["3", "4"] {
        let item = &by[id];
        assert_eq!(item["status"], 429, "{item}");
        assert_eq!(item["body"]["error"]["code"], "TooManyRequests");
        assert_eq!(item["headers"]["x-ms-resource-unit"], "1");
        let retry: f64 = item["headers"]["Retry-After"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry > 1.0, "{retry}");
    }
    let counters = sim.counters();
    assert_eq!((counters.throttled, counters.throttled_in_batch), (0, 2));
    assert_eq!(counters.requests[&Endpoint::Batch], 1);
    assert_eq!(counters.requests[&Endpoint::Members], 4);
    assert_eq!(counters.ru_spent, 6);
    // The bucket is now below empty; the free envelope still goes through, its item doesn't.
    let resp = post_json(
        &format!("{}/v1.0/$batch", sim.url()),
        &token,
        &json!({"requests": [{"id": "x", "method": "GET", "url": "users?$select=id"}]}),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["responses"][0]["status"], 429);
    assert_eq!(sim.counters().throttled, 0);
}

#[test]
fn sixteen_connections_are_served_at_once() {
    let sim = Sim::start_with(groups_tenant());
    let token = token(&sim);
    let group = sim.tenant().group_ids()[0].clone();
    sim.settings().page_latency = Duration::from_millis(400);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let url = match i % 3 {
                    0 => format!("{}/v1.0/users?$top=5", sim.url()),
                    1 => format!("{}/v1.0/groups?$top=5", sim.url()),
                    _ => format!("{}/v1.0/groups/{group}/members?$select=id", sim.url()),
                };
                let token = token.clone();
                scope.spawn(move || get(&url, &token, None).status)
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap(), 200);
        }
    });
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(400));
    assert!(
        elapsed < Duration::from_millis(1200),
        "16 at once: {elapsed:?}"
    );

    // A batch pays the latency once, not per item.
    let requests: Vec<Value> = (0..10)
        .map(|i| json!({"id": format!("{i}"), "method": "GET", "url": "/users?$select=id&$top=1"}))
        .collect();
    let started = Instant::now();
    let resp = post_json(
        &format!("{}/v1.0/$batch", sim.url()),
        &token,
        &json!({"requests": requests}),
    );
    assert_eq!(resp.status, 200);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(1200),
        "{elapsed:?}"
    );
}

#[test]
fn partitioned_snapshot_of_a_large_tenant() {
    let sim = Sim::start_with(Tenant::synthetic(100_000, 2_000, 200_000, 3, 11));
    let token = token(&sim);
    let started = Instant::now();
    let filters = partitions("userPrincipalName");
    // 27 ranges over 16 connections, as Microsoft's sample does.
    let seen: Vec<String> = std::thread::scope(|scope| {
        let chunks: Vec<Vec<String>> = (0..16)
            .map(|i| filters.iter().skip(i).step_by(16).cloned().collect())
            .collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let (sim, token) = (&sim, &token);
                scope.spawn(move || {
                    let mut ids_seen = Vec::new();
                    for filter in chunk {
                        let url = format!(
                            "{}/v1.0/users?$select=id,userPrincipalName&$top=999&$filter={}",
                            sim.url(),
                            http_encode(&filter)
                        );
                        ids_seen.extend(ids(&list_all(&url, token).0));
                    }
                    ids_seen
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(seen.len(), 100_000);
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 100_000);
    let pages = sim.counters().requests[&Endpoint::UserList];
    eprintln!(
        "100k users in {pages} pages over 16 connections: {:?}, serving {:?}/page",
        started.elapsed(),
        sim.serving_time() / u32::try_from(pages).unwrap()
    );
    // Generous, on wall time (serving time adds up 16 requests waiting for the tenant lock):
    // catches a listing that rescans the tenant per page, not a slow machine.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// The whole flow of notes 3.11: "latest" links first, a parallel-able snapshot (lists,
/// members through `$batch`) while the tenant changes, then a catch-up round from the links.
#[test]
fn latest_then_snapshot_then_catch_up_is_exact() {
    let mut tenant = Tenant::new();
    add_users(&mut tenant, 60);
    for g in 0..6 {
        let props = json!({"displayName": format!("G{g}"), "mailNickname": format!("g{g}"), "groupTypes": []});
        tenant.add_group(&group(g), props);
        for n in (g..60).step_by(6) {
            tenant.add_member(&group(g), &user(n), MemberKind::User);
        }
    }
    let sim = Sim::start_with(tenant);
    let token = token(&sim);
    let select = "id,displayName,userPrincipalName,accountEnabled";
    let latest = |url: String| -> String {
        let page = get(&format!("{url}&$deltatoken=latest"), &token, None).json();
        page["@odata.deltaLink"].as_str().unwrap().to_string()
    };
    let users_link = latest(format!("{}/v1.0/users/delta?$select={select}", sim.url()));
    let groups_link = latest(groups_url(&sim));

    // Snapshot, with changes between its pages.
    let mut users = Mirror::default();
    let mut url = format!("{}/v1.0/users?$select={select}&$top=25", sim.url());
    let mut turn = 0;
    loop {
        let page = get(&url, &token, None).json();
        users.apply(std::slice::from_ref(&page));
        turn += 1;
        if turn == 1 {
            let mut tenant = sim.tenant();
            tenant.update_user(&user(2), json!({"displayName": "Changed"}));
            tenant.soft_delete_user(&user(40));
            // All selected properties set: the lists send never-set ones as null, delta omits them.
            let props = json!({"displayName": "New", "userPrincipalName": "new@contoso.example", "accountEnabled": true});
            tenant.add_user(&user(100), props);
            tenant.add_member(&group(1), &user(100), MemberKind::User);
            tenant.remove_member(&group(0), &user(0));
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    let mut groups = Mirror::default();
    let (listed, _) = list_all(
        &format!("{}/v1.0/groups?$select=id,displayName", sim.url()),
        &token,
    );
    groups.apply(&[json!({ "value": listed })]);
    let requests: Vec<Value> = groups
        .live_ids()
        .iter()
        .map(|id| json!({"id": id, "method": "GET", "url": format!("/groups/{id}/members?$select=id&$top=999")}))
        .collect();
    let resp = post_json(
        &format!("{}/v1.0/$batch", sim.url()),
        &token,
        &json!({ "requests": requests }),
    );
    for response in resp.json()["responses"].as_array().unwrap() {
        assert_eq!(response["status"], 200, "{response}");
        let id = response["id"].as_str().unwrap().to_string();
        let members = response["body"]["value"].as_array().unwrap();
        let set = groups.members.entry(id).or_default();
        for member in members {
            set.insert(
                member["id"].as_str().unwrap().to_string(),
                member["@odata.type"].as_str().unwrap().to_string(),
            );
        }
    }

    // Catch up from the links taken before the snapshot.
    let (pages, _) = round(&users_link, &token, None);
    let changed: BTreeSet<String> = ids(&objects(&pages)).into_iter().collect();
    assert_eq!(changed, BTreeSet::from([user(2), user(40), user(100)]));
    users.apply(&pages);
    assert_mirrors_users(&users, &sim.tenant(), select);
    let (pages, _) = round(&groups_link, &token, None);
    groups.apply(&pages);
    // Exact up to soft-deleted users: the tenant keeps their links (notes 3.8), /members hides
    // them and the catch-up round reports nothing for them, so the snapshot never has them.
    let tenant = sim.tenant();
    let mut expected = tenant.group_ids();
    expected.sort();
    assert_eq!(groups.live_ids(), expected);
    for id in &expected {
        let want: BTreeMap<String, String> = tenant
            .members_of(id)
            .into_iter()
            .filter(|(member, _)| *member != user(40))
            .map(|(member, kind)| (member, kind.odata_type().to_string()))
            .collect();
        assert_eq!(
            groups.members.get(id).cloned().unwrap_or_default(),
            want,
            "{id}"
        );
    }
    assert!(
        tenant
            .members_of(&group(4))
            .iter()
            .any(|(m, _)| *m == user(40))
    );
}

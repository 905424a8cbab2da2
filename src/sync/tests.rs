//! The writer loop: counts that follow commits, rounds that end without their deltaLink.

use super::*;
use crate::graph::DirectoryObject;
use serde_json::json;

fn pass(run_id: i64) -> Pass {
    Pass {
        run_id,
        counts: Counts::default(),
        failures: Vec::new(),
        failed: Vec::new(),
        completed: Vec::new(),
        stopped: false,
        restarted: false,
        guard: Guard::off(),
        unusable: Vec::new(),
        lost: Vec::new(),
    }
}

fn rounds() -> Vec<Round> {
    Resource::ALL
        .iter()
        .map(|&resource| Round {
            resource,
            url: "https://graph.example/start".into(),
            full: false,
            fresh: false,
            generation: 0,
            query: "q".into(),
            held: false,
            baseline: false,
            catchup: false,
        })
        .collect()
}

fn users(ids: std::ops::Range<u32>, next: Next) -> Page {
    let objects = ids
        .map(|n| DirectoryObject {
            id: format!("u{n}"),
            removed: None,
            props: json!({"displayName": "x".repeat(2000)})
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into(),
            members: None,
        })
        .collect();
    Page { objects, next }
}

fn store() -> (tempfile::TempDir, Store, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("t.db")).unwrap();
    let run = store.begin_run("incremental", "t").unwrap();
    (dir, store, run)
}

/// Issue 7 item 6: a fetcher that ends (or panics, which drops its sender the same way)
/// without a deltaLink used to look like "done", and the pass succeeded.
#[test]
fn a_round_that_ends_without_its_delta_link_fails_the_pass() {
    let (_dir, store, run) = store();
    let (sender, receiver) = mpsc::sync_channel(4);
    sender
        .send(Msg::Page(
            Resource::Users,
            users(0..1, Next::More("next".into())),
        ))
        .unwrap();
    let groups = Page {
        objects: Vec::new(),
        next: Next::Done("delta".into()),
    };
    sender.send(Msg::Page(Resource::Groups, groups)).unwrap();
    drop(sender);
    let mut pass = pass(run);
    let mut rounds = rounds();
    pass.receive(&store, &receiver, &mut rounds, &Shutdown::new(), None)
        .unwrap();
    assert_eq!(pass.failed, [Resource::Users]);
    assert!(
        pass.failures[0].contains("users round ended before Graph sent its deltaLink"),
        "{:?}",
        pass.failures
    );
    assert_eq!(pass.completed, [Resource::Groups]);
    assert_eq!(pass.counts.users_created, 1, "the committed page counts");
}

/// Issue 7 item 14: counts follow the transaction. Two queued pages share a batch; the
/// second fills the disk, the batch rolls back, and nothing of it is counted.
#[test]
fn a_batch_that_rolls_back_counts_nothing() {
    let (_dir, store, run) = store();
    store.limit_pages_for_test(40);
    let (sender, receiver) = mpsc::sync_channel(4);
    sender
        .send(Msg::Page(
            Resource::Users,
            users(0..2, Next::More("n1".into())),
        ))
        .unwrap();
    sender
        .send(Msg::Page(
            Resource::Users,
            users(2..400, Next::More("n2".into())),
        ))
        .unwrap();
    drop(sender);
    let mut pass = pass(run);
    let mut rounds = rounds();
    let outcome = pass.receive(&store, &receiver, &mut rounds, &Shutdown::new(), None);
    assert!(outcome.is_err(), "the full disk fails the batch");
    assert_eq!(pass.counts, Counts::default());
    assert_eq!(store.live_counts("t").unwrap(), [0, 0, 0], "rolled back");
}

#[test]
fn a_batch_waits_for_answers_until_it_is_linger_old() {
    use std::time::Duration;
    let ms = Duration::from_millis;
    // (age of the batch, requests in flight, how long it waits)
    let cases = [
        (ms(0), 8, Some(LINGER)),
        (LINGER - ms(30), 1, Some(ms(30))),
        (LINGER, 8, None),
        (LINGER + ms(1), 8, None),
        (ms(0), 0, None),
    ];
    for (age, in_flight, wait) in cases {
        assert_eq!(
            linger_wait(age, in_flight),
            wait,
            "age {age:?}, {in_flight} in flight"
        );
    }
}

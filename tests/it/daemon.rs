//! `entra-sync run`: the service loop, signals, live configuration, systemd notifications and
//! logs. Each test runs the real binary as a child process against the simulator and waits
//! on conditions with deadlines; a child is always killed when its test ends.

use std::io::BufRead;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sim::{self, Fault, MemberKind, Resource};
use crate::support::*;

/// Deadline for start-up and for a pass: generous, builds share two cores with the tests.
const SLOW: Duration = Duration::from_secs(20);
/// Deadline for what must happen "at once" or "within seconds".
const SOON: Duration = Duration::from_secs(5);
/// The log line of every successful pass (`sync: pass N full succeeded: users +1 ...`).
const PASS_OK: &str = " succeeded: users ";

/// A running `entra-sync run`. Its stderr is read continuously (so it never blocks on a full
/// pipe) into `log`; dropping it kills the process.
struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(env: &TestEnv) -> Daemon {
        Daemon::spawn(env.command(&["run"]))
    }

    fn spawn(mut command: Command) -> Daemon {
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stderr);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
        });
        Daemon { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Lines of the log containing `needle`.
    fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// ERROR lines containing `needle` (debug lines repeat errors in full on purpose).
    fn count_errors(&self, needle: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("ERROR entra_sync") && l.contains(needle))
            .count()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for `condition`, failing early if the daemon exits, with its log on failure.
    #[track_caller]
    fn until(&mut self, what: &str, timeout: Duration, mut condition: impl FnMut(&Daemon) -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader may still be draining the pipe: give it a moment for the panic.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the daemon exited ({status}) while waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `n` passes have succeeded in this process.
    #[track_caller]
    fn passes(&mut self, n: usize, timeout: Duration) {
        self.until(&format!("{n} successful passes"), timeout, |d| {
            d.count(PASS_OK) >= n
        });
    }

    /// Waits for the process to end, up to `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader take the last lines from the pipe.
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status and how long the exit took.
    #[track_caller]
    fn stop(&mut self) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(10));
        let took = sent.elapsed();
        let status = status.unwrap_or_else(|| {
            panic!(
                "the daemon did not stop within 10 s of SIGTERM; log:\n{}",
                self.log()
            )
        });
        (status, took)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three users; Engineering (security) holds u1 and u2, Sales holds u3.
fn tenant(env: &TestEnv) {
    let mut t = env.sim.tenant();
    for n in 1..=3 {
        t.add_user(&u(n), user_props(&format!("User {n}")));
    }
    t.add_group(&g(1), security_group("Engineering"));
    t.add_group(&g(2), security_group("Sales"));
    t.add_member(&g(1), &u(1), MemberKind::User);
    t.add_member(&g(1), &u(2), MemberKind::User);
    t.add_member(&g(2), &u(3), MemberKind::User);
}

/// Rewrites the config as editors save: a new file renamed over the old one.
fn edit_config(env: &TestEnv, edit: impl FnOnce(String) -> String) {
    let text = edit(std::fs::read_to_string(&env.config).unwrap());
    let temp = env.config.with_extension("toml.new");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, &env.config).unwrap();
}

fn set_interval(env: &TestEnv, interval: &str) {
    edit_config(env, |t| {
        t.replace("interval = \"1s\"", &format!("interval = \"{interval}\""))
    });
}

fn status_json(env: &TestEnv) -> serde_json::Value {
    let out = env.run(&["status", "--json"]);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What the daemon last recorded for `status`, read from the database directly.
fn daemon_state(env: &TestEnv) -> serde_json::Value {
    let text = env.strings("SELECT value FROM meta WHERE key = 'daemon'");
    serde_json::from_str(&text[0]).unwrap()
}

fn kinds(env: &TestEnv) -> Vec<String> {
    env.strings("SELECT kind || ' ' || status FROM sync_runs ORDER BY id")
}

/// The secret and every access token the simulator issued are absent from `log`.
#[track_caller]
fn assert_no_secrets(env: &TestEnv, log: &str) {
    assert!(
        !log.contains(sim::CLIENT_SECRET),
        "the client secret is in the log"
    );
    let tokens: Vec<String> = env
        .sim
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization"))
        .filter_map(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned)
        .collect();
    assert!(!tokens.is_empty(), "no Graph request carried a token");
    for token in tokens {
        assert!(!log.contains(&token), "an access token is in the log");
        // Not even a recognisable piece of one.
        if let Some(piece) = token.get(token.len() / 2..token.len() / 2 + 24) {
            assert!(
                !log.contains(piece),
                "part of an access token is in the log"
            );
        }
    }
}

/// Start-up pass at once, then a pass every `interval` counted from the end of the previous
/// one: with pages slower than the interval, passes never overlap or stack up.
#[test]
fn startup_pass_then_interval_passes_from_the_end_of_the_last() {
    let env = TestEnv::new();
    // The pages of the delta chain are what this test is about.
    env.delta_chain();
    tenant(&env);
    // Every Graph request takes longer than the 1 s interval: each pass overruns it.
    env.sim.settings().page_latency = Duration::from_millis(1200);
    let mut d = Daemon::start(&env);
    d.passes(3, SLOW + SOON);
    let users = env.graph_requests(Resource::Users);
    let groups = env.graph_requests(Resource::Groups);
    // One page per round: one users and one groups request per pass, never two passes at once.
    assert!(users.len() >= 3 && groups.len() >= 3);
    assert!(!users[0].path_and_query.contains("deltatoken="));
    for pair in users.windows(2).take(2) {
        let gap = pair[1].at - pair[0].at;
        // A pass takes ≥ 1.2 s; the next starts 1 s after its end, never while it runs.
        assert!(
            gap >= Duration::from_millis(2100),
            "the next pass started {gap:?} after the previous one"
        );
        assert!(gap < Duration::from_secs(8), "interval not kept: {gap:?}");
        assert!(pair[1].path_and_query.contains("deltatoken="));
    }
    let runs = kinds(&env);
    assert_eq!(runs[0], "full succeeded");
    assert!(
        runs[1..]
            .iter()
            .all(|r| r == "incremental succeeded" || r == "incremental running"),
        "{runs:?}"
    );
    assert!(
        env.count("SELECT count(*) FROM sync_runs WHERE status = 'running'") <= 1,
        "passes overlap"
    );
    assert!(d.alive());
}

#[test]
fn sigusr1_starts_a_pass_now() {
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    let mut d = Daemon::start(&env);
    // The start-up pass does not wait for the (1 hour) interval.
    d.passes(1, SLOW);
    env.sim.clear_requests();
    d.signal("USR1");
    d.passes(2, SOON);
    assert!(d.log().contains("SIGUSR1, starting a pass now"));
    let users = env.graph_requests(Resource::Users);
    assert!(users[0].path_and_query.contains("deltatoken="));
    assert_eq!(kinds(&env), vec!["full succeeded", "incremental succeeded"]);
}

/// SIGHUP re-reads the file when no file event announces it: the config is a symlink into
/// another directory (as with configuration management), so the edit is invisible to the
/// directory watch.
#[test]
fn sighup_reloads_the_config_now() {
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    // A hard link in another directory: writing through it changes the config without an
    // event in the config's directory, so only the signal can make the daemon read it.
    let other = env.dir.path().join("managed").join("config.toml");
    std::fs::create_dir(other.parent().unwrap()).unwrap();
    std::fs::hard_link(&env.config, &other).unwrap();

    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);
    assert_eq!(env.team(), vec![u(1), u(2)]);
    let text = std::fs::read_to_string(&other).unwrap();
    std::fs::write(&other, text.replace("\"Engineering\"", "\"Sales\"")).unwrap();
    d.signal("HUP");
    d.until("the reload", SOON, |d| {
        d.log().contains("reloading the configuration (SIGHUP)")
    });
    d.until("the new team", SOON, |_| env.team() == vec![u(3)]);
    assert!(!d.log().contains("(the file changed)"));
}

/// SIGTERM while a page is in flight and Graph takes 6 s to answer: exit 0 within 5 s, the
/// run marked interrupted, only whole pages stored, and the next start resumes.
#[test]
fn sigterm_during_a_slow_page_stops_promptly_and_resumes() {
    let env = TestEnv::new();
    // The pages of the delta chain are what this test is about.
    env.delta_chain();
    tenant(&env);
    {
        let mut t = env.sim.tenant();
        for n in 4..=60 {
            t.add_user(&u(n), user_props(&format!("User {n}")));
        }
        let mut s = env.sim.settings();
        s.users_page_size = 5;
        s.page_latency = Duration::from_millis(150);
    }
    set_interval(&env, "1h");
    let mut d = Daemon::start(&env);
    d.until("two committed users pages", SLOW, |_| {
        committed(&env, "SELECT count(*) FROM users") >= 10
    });
    // The next users request to arrive hangs for 6 s: wait until one has taken it.
    env.sim
        .push_fault(Resource::Users, Fault::Delay(Duration::from_secs(6)));
    d.until("a slow page in flight", SOON, |_| {
        env.sim.pending_faults() == 0
    });
    let (status, took) = d.stop();
    assert!(status.success(), "exit {status}; log:\n{}", d.log());
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    assert!(d.log().contains("daemon: stopping"));

    let conn = env.db();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let stored = env.count("SELECT count(*) FROM users");
    assert!(
        stored < 60 && stored % 5 == 0,
        "{stored} users: not whole pages"
    );
    assert_eq!(kinds(&env), vec!["full interrupted"]);
    assert_eq!(
        env.count(
            "SELECT count(*) FROM sync_state WHERE resource = 'users' AND resume_link IS NOT NULL"
        ),
        1
    );

    env.sim.clear_requests();
    env.sim.settings().page_latency = Duration::ZERO;
    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);
    let first = &env.graph_requests(Resource::Users)[0];
    assert!(
        first.path_and_query.contains("skiptoken="),
        "did not resume: {}",
        first.path_and_query
    );
    assert_eq!(env.count("SELECT count(*) FROM users"), 60);
    assert_eq!(kinds(&env), vec!["full interrupted", "full succeeded"]);
    assert_eq!(env.team(), vec![u(1), u(2)]);
}

/// Users committed so far as an outside reader sees them (0 before the file exists).
fn committed(env: &TestEnv, sql: &str) -> i64 {
    if !env.db.exists() {
        return 0;
    }
    rusqlite::Connection::open(&env.db)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(0)
}

/// Both ways editors save are seen, and one save is one reload (bursts are debounced).
#[test]
fn config_edits_by_rename_and_in_place_are_applied() {
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);
    assert_eq!(env.team(), vec![u(1), u(2)]);

    edit_config(&env, |t| t.replace("\"Engineering\"", "\"Sales\""));
    d.until("the renamed-in config", SOON, |_| env.team() == vec![u(3)]);

    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, text.replace("\"Sales\"", "\"Engineering\"")).unwrap();
    d.until("the config written in place", SOON, |_| {
        env.team() == vec![u(1), u(2)]
    });

    assert_eq!(
        d.count("reloading the configuration (the file changed)"),
        2,
        "{}",
        d.log()
    );
    assert_eq!(d.count("nothing changed"), 0, "a save was reloaded twice");
    assert_eq!(d.count(PASS_OK), 1, "an edit of the mapping ran a pass");
}

/// An invalid edit is logged as `check` reports it; the old config stays in force and the
/// daemon keeps syncing; fixing the file applies it.
#[test]
fn invalid_edit_keeps_the_old_config() {
    let env = TestEnv::new();
    tenant(&env);
    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);

    edit_config(&env, |t| {
        t.replace("\"Engineering\"", "\"Sales\"").replace(
            &format!("client_id = \"{}\"", sim::CLIENT_ID),
            "client_id = \"not-a-guid\"",
        )
    });
    let check = env.run(&["check"]);
    assert_eq!(check.status.code(), Some(78));
    let message = stderr(&check)
        .lines()
        .find_map(|l| {
            l.split_once("ERROR entra_sync] ")
                .map(|(_, m)| m.to_owned())
        })
        .unwrap();
    assert!(message.contains("entra.client_id"), "{message}");
    d.until("the invalid edit to be logged", SOON, |d| {
        d.log().contains(&message)
    });
    assert!(d.log().contains("keeping the configuration in force"));

    // Still syncing, on the old mapping and the old (valid) client id.
    let before = d.count(PASS_OK);
    d.passes(before + 2, SOON);
    assert_eq!(env.team(), vec![u(1), u(2)]);
    // `status` reads the same file: it reports the error as `check` does...
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains(&message));
    // ...and the daemon records that the file on disk is not in force.
    let state = daemon_state(&env);
    assert!(
        state["config_error"]
            .as_str()
            .unwrap()
            .contains("entra.client_id"),
        "{state}"
    );
    assert_eq!(state["pid"], d.pid());

    edit_config(&env, |t| {
        t.replace(
            "client_id = \"not-a-guid\"",
            &format!("client_id = \"{}\"", sim::CLIENT_ID),
        )
    });
    d.until("the fixed config", SOON, |_| env.team() == vec![u(3)]);
    d.until("the config error to clear", SOON, |_| {
        daemon_state(&env)["config_error"].is_null()
    });
}

/// `enabled = false`: no request while passes would otherwise run every second, SIGUSR1
/// included; switched back on (with a 1 hour interval) a pass starts at once.
#[test]
fn disabled_makes_no_requests_and_enabling_resumes_at_once() {
    let env = TestEnv::new();
    tenant(&env);
    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);
    edit_config(&env, |t| t.replace("[sync]\n", "[sync]\nenabled = false\n"));
    d.until("the daemon to say it is disabled", SOON, |_| {
        status_json(&env)["daemon"]["state"] == "disabled"
    });
    let passes = d.count(PASS_OK);
    env.sim.clear_requests();
    d.signal("USR1");
    d.until("SIGUSR1 to be refused", SOON, |d| {
        d.log().contains("SIGUSR1 ignored")
    });
    // Three intervals' worth of silence (an absence can only be watched for a while).
    let watch = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch {
        assert!(env.sim.requests().is_empty(), "a request while disabled");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(d.count(PASS_OK), passes);
    let text = stdout(&env.run(&["status"]));
    assert!(text.contains("disabled (sync.enabled = false)"), "{text}");
    assert!(text.contains("daemon:    disabled"), "{text}");

    let switched = Instant::now();
    edit_config(&env, |t| {
        t.replace("enabled = false\n", "")
            .replace("interval = \"1s\"", "interval = \"1h\"")
    });
    d.passes(passes + 1, SOON);
    assert!(switched.elapsed() < SOON);
    assert_eq!(status_json(&env)["daemon"]["enabled"], true);
}

/// A new mapping is applied from the database alone, audited, without a Graph request.
#[test]
fn mapping_change_updates_the_team_without_graph() {
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);
    assert_eq!(env.team(), vec![u(1), u(2)]);
    env.sim.clear_requests();
    edit_config(&env, |t| {
        t.replace(
            "groups = [\"Engineering\"]",
            "team = \"Ops\"\ngroups = [\"Sales\", \"Engineering\"]",
        )
    });
    d.until("the new team", SOON, |_| {
        env.strings("SELECT team || ' ' || user_id FROM team_members ORDER BY user_id")
            == vec![
                format!("Ops {}", u(1)),
                format!("Ops {}", u(2)),
                format!("Ops {}", u(3)),
            ]
    });
    assert!(env.sim.requests().is_empty(), "Graph was asked");
    // The rename to "Ops" removes the old rows and adds all three under the new name.
    let run: i64 = env
        .db()
        .query_row(
            "SELECT max(id) FROM sync_runs WHERE kind = 'team'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut events = env.strings(&format!(
        "SELECT action || ' ' || entity_id FROM audit_events WHERE run_id = {run} AND entity = 'team'"
    ));
    events.sort();
    assert_eq!(
        events,
        vec![
            format!("added {}", u(1)),
            format!("added {}", u(2)),
            format!("added {}", u(3)),
            format!("removed {}", u(1)),
            format!("removed {}", u(2)),
        ]
    );
    assert_eq!(
        env.strings("SELECT status FROM sync_runs WHERE kind = 'team'"),
        vec!["succeeded"]
    );
}

/// A wrong secret written to the secret file is used from the next request (and fails); the
/// right one then works without a restart.
#[test]
fn secret_change_uses_the_new_secret() {
    const WRONG: &str = "wrong-secret-value";
    let env = TestEnv::new();
    tenant(&env);
    let secret = env.dir.path().join("client-secret");
    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);

    std::fs::write(&secret, format!("{WRONG}\n")).unwrap();
    d.until("a pass failing on the wrong secret", SOON, |d| {
        d.log().contains("secret Value, not the Secret ID")
    });
    // Entra's answer carries a new trace id and timestamp every time; it is still the same
    // failure, logged in full once and briefly after.
    d.until("the failure to repeat", SOON, |d| {
        d.count("failed again with the same error") >= 1
    });
    assert_eq!(
        d.count_errors("secret Value, not the Secret ID"),
        1,
        "{}",
        d.log()
    );
    let token_bodies = || -> Vec<String> {
        env.graph_requests(Resource::Token)
            .into_iter()
            .map(|r| r.body)
            .collect()
    };
    assert!(
        token_bodies()
            .iter()
            .any(|b| b.contains(&format!("client_secret={WRONG}")))
    );

    let passes = d.count(PASS_OK);
    std::fs::write(&secret, format!("{}\n", sim::CLIENT_SECRET)).unwrap();
    d.passes(passes + 1, SOON);
    assert!(d.log().contains("sync works again"));
    let last = token_bodies().pop().unwrap();
    // "Xy9~sim~..." form-encoded: "~" may or may not be escaped.
    assert!(last.contains("client_secret=Xy9"), "{last}");
    assert!(d.alive());
    assert_no_secrets(&env, &d.log());
    assert!(!d.log().contains(WRONG), "the wrong secret is in the log");
}

/// One daemon per database: a second `run` and a `sync` are refused at once naming the pid;
/// a killed daemon leaves no stale lock.
#[test]
fn second_instance_is_refused() {
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    let mut first = Daemon::start(&env);
    first.passes(1, SLOW);
    for command in ["run", "sync"] {
        // Spawned, so that a second daemon that starts after all ends with the test.
        let mut second = Daemon::spawn(env.command(&[command]));
        let status = second
            .wait_exit(SOON)
            .unwrap_or_else(|| panic!("{command} was not refused at once; log:\n{}", second.log()));
        assert_eq!(status.code(), Some(1), "{command}");
        let err = second.log();
        assert!(
            err.contains(&format!(
                "in use by another entra-sync process (pid {})",
                first.pid()
            )),
            "{command}: {err}"
        );
    }
    assert!(first.alive());
    // SIGKILL: no chance to clean up; the kernel drops the lock with the process.
    first.signal("KILL");
    assert!(first.wait_exit(SOON).is_some());
    let mut second = Daemon::start(&env);
    second.passes(1, SLOW);
}

/// The sd_notify protocol on a test `NOTIFY_SOCKET`: READY and STATUS, RELOADING/READY around
/// a reload, STOPPING, and watchdog pings when WATCHDOG_USEC/WATCHDOG_PID are set.
#[test]
fn notify_socket_messages() {
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    let socket_path = env.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // systemd sets WATCHDOG_PID to the service's pid: exec keeps the shell's pid.
    let base = env.command(&["run"]);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("WATCHDOG_PID=$$; export WATCHDOG_PID; exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(base.get_args());
    for (key, value) in base.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000");
    let mut d = Daemon::spawn(command);
    let mut messages: Vec<String> = Vec::new();
    let mut receive_until = |d: &mut Daemon, what: &str, wanted: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + SLOW;
        loop {
            let mut buffer = [0u8; 4096];
            if let Ok(n) = socket.recv(&mut buffer) {
                let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
                let found = wanted(&message);
                messages.push(message);
                if found {
                    return messages.clone();
                }
            }
            assert!(
                Instant::now() < deadline && d.alive(),
                "no {what} notification; got {messages:?}; log:\n{}",
                d.log()
            );
        }
    };
    let got = receive_until(&mut d, "READY=1", &|m: &str| m.contains("READY=1"));
    assert!(got.last().unwrap().contains("STATUS="), "{got:?}");
    let got = receive_until(&mut d, "STATUS after the pass", &|m: &str| {
        m.contains("STATUS=last pass succeeded at ") && m.contains("; next pass at ")
    });
    assert!(got.iter().any(|m| m.contains("STATUS=syncing")), "{got:?}");
    receive_until(&mut d, "WATCHDOG=1", &|m: &str| m == "WATCHDOG=1\n");

    d.signal("HUP");
    let got = receive_until(&mut d, "RELOADING=1", &|m: &str| m.contains("RELOADING=1"));
    assert!(got.last().unwrap().contains("MONOTONIC_USEC="), "{got:?}");
    receive_until(&mut d, "READY=1 after the reload", &|m: &str| {
        m.contains("READY=1")
    });

    d.signal("TERM");
    receive_until(&mut d, "STOPPING=1", &|m: &str| m.contains("STOPPING=1"));
    let status = d.wait_exit(SOON).unwrap();
    assert!(status.success());
}

/// Under journald: a syslog priority on every line, no timestamps; RUST_LOG still applies.
#[test]
fn journald_log_format() {
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    env.sim.settings().consent_groups = false;
    let mut command = env.command(&["run"]);
    command.env("JOURNAL_STREAM", "8:123456");
    let mut d = Daemon::spawn(command);
    d.until("an error line", SLOW, |d| {
        d.log()
            .lines()
            .any(|l| l.starts_with("<3>") && l.contains("GroupMember.Read.All"))
    });
    let (status, _) = d.stop();
    assert!(status.success());
    let log = d.log();
    assert!(log.contains("<6>daemon: started (pid"), "{log}");
    // RUST_LOG=entra_sync=debug (set by the test environment) overrides the info default.
    assert!(log.lines().any(|l| l.starts_with("<7>")), "{log}");
    for line in log.lines() {
        let bytes = line.as_bytes();
        assert!(
            bytes.len() > 3
                && bytes[0] == b'<'
                && (b'0'..=b'7').contains(&bytes[1])
                && bytes[2] == b'>',
            "no priority prefix: {line:?}"
        );
        assert!(
            !line[3..].starts_with('[') && !line[3..].starts_with("20"),
            "a timestamp or env_logger header under journald: {line:?}"
        );
    }
}

/// No secret and no access token in any log line, at debug level, through sign-in, token
/// renewal after a 401, a wrong secret and its fix.
#[test]
fn no_secret_or_token_in_the_log() {
    let env = TestEnv::new();
    tenant(&env);
    let secret = env.dir.path().join("client-secret");
    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);
    env.sim.expire_tokens();
    d.until("a 401 and a renewed token", SOON + SOON, |_| {
        env.sim.requests().iter().any(|r| r.status == 401)
    });
    let passes = d.count(PASS_OK);
    d.passes(passes + 1, SOON);
    std::fs::write(&secret, "Zz8~another~wrong~value\n").unwrap();
    d.until("a failed sign-in", SOON, |d| {
        d.log().contains("the client secret is wrong")
    });
    std::fs::write(&secret, format!("{}\n", sim::CLIENT_SECRET)).unwrap();
    d.until("sync works again", SOON, |d| {
        d.log().contains("sync works again")
    });
    let (status, _) = d.stop();
    assert!(status.success());
    let log = d.log();
    assert_no_secrets(&env, &log);
    assert!(!log.contains("Zz8~another~wrong~value"));
}

/// `status --json` while the daemon runs, and after it stopped.
#[test]
fn status_json_while_running() {
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    let expires = time::OffsetDateTime::now_utc().date() + time::Duration::days(100);
    edit_config(&env, |t| {
        t.replace(
            "[entra]\n",
            &format!("[entra]\nclient_secret_expires = {expires}\n"),
        )
    });
    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);
    d.until("the daemon to be idle", SOON, |_| {
        status_json(&env)["daemon"]["state"] == "idle"
    });
    let status = status_json(&env);
    assert_eq!(status["running_pid"], d.pid(), "{status}");
    assert_eq!(status["enabled"], true);
    assert_eq!(status["secret_days_left"], 100);
    let daemon = &status["daemon"];
    assert_eq!(daemon["pid"], d.pid());
    assert_eq!(daemon["enabled"], true);
    assert_eq!(daemon["last_pass_status"], "succeeded");
    assert!(daemon["last_pass_at"].is_string(), "{status}");
    assert!(daemon["next_pass_at"].is_string(), "{status}");
    assert!(daemon["last_error"].is_null());
    let text = stdout(&env.run(&["status"]));
    assert!(
        text.contains(&format!("running (pid {})", d.pid())),
        "{text}"
    );
    assert!(text.contains("daemon:    idle"), "{text}");
    assert!(text.contains("(100 days left)"), "{text}");

    let (exit, _) = d.stop();
    assert!(exit.success());
    let status = status_json(&env);
    assert!(status["running_pid"].is_null(), "{status}");
    assert!(status["daemon"].is_null(), "{status}");
}

/// A different tenant (the domain instead of the GUID): new token, and the stored delta
/// links are not reused: the next pass is full.
#[test]
fn tenant_change_makes_the_next_pass_full() {
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);
    d.signal("USR1");
    d.passes(2, SOON);
    assert_eq!(kinds(&env), vec!["full succeeded", "incremental succeeded"]);

    edit_config(&env, |t| t.replace(sim::TENANT_ID, sim::TENANT_DOMAIN));
    d.until("the new credentials", SOON, |d| {
        d.log().contains("credentials or endpoints changed")
    });
    env.sim.clear_requests();
    d.signal("USR1");
    d.passes(3, SOON);
    assert_eq!(
        kinds(&env),
        vec!["full succeeded", "incremental succeeded", "full succeeded"]
    );
    let token = env.graph_requests(Resource::Token);
    assert_eq!(token.len(), 1, "the cached token was reused");
    assert!(token[0].path_and_query.contains(sim::TENANT_DOMAIN));
    for resource in [Resource::Users, Resource::Groups] {
        let first = &env.graph_requests(resource)[0];
        // A full pass starts from scratch: a snapshot's "latest" link, never a stored one.
        let query = &first.path_and_query;
        assert!(
            !query.contains("deltatoken=") || query.contains("deltatoken=latest"),
            "{resource:?} reused a link: {}",
            first.path_and_query
        );
    }
}

/// A pass failing every interval never ends the daemon; the full message is logged once,
/// then briefly; once consent is granted the next pass works (with a fresh token).
#[test]
fn failing_pass_keeps_the_daemon_and_repeats_briefly() {
    let env = TestEnv::new();
    tenant(&env);
    env.sim.settings().consent_groups = false;
    let mut d = Daemon::start(&env);
    d.until("three failed passes", SLOW, |d| {
        d.count("failed again with the same error") >= 2
    });
    let errors: Vec<String> = d
        .log()
        .lines()
        .filter(|l| l.contains("ERROR entra_sync"))
        .map(str::to_owned)
        .collect();
    let full: Vec<&String> = errors
        .iter()
        .filter(|l| l.contains("Grant admin consent"))
        .collect();
    assert_eq!(full.len(), 1, "{errors:#?}");
    assert!(full[0].contains("GroupMember.Read.All"));
    assert!(
        errors
            .iter()
            .filter(|l| !l.contains("Grant admin consent"))
            .all(|l| l.contains("failed again with the same error")),
        "{errors:#?}"
    );
    assert!(d.alive());
    let status = status_json(&env);
    assert!(
        status["daemon"]["last_error"]
            .as_str()
            .unwrap()
            .contains("GroupMember.Read.All"),
        "{status}"
    );

    env.sim.settings().consent_groups = true;
    d.passes(1, SOON);
    assert!(d.log().contains("sync works again"));
    assert!(status_json(&env)["daemon"]["last_error"].is_null());
}

/// `sync.full_sync_interval` brings a reconciling full pass back after incremental ones.
#[test]
fn periodic_full_pass() {
    let env = TestEnv::new();
    tenant(&env);
    edit_config(&env, |t| {
        t.replace(
            "interval = \"1s\"",
            "interval = \"1s\"\nfull_sync_interval = \"3s\"",
        )
    });
    let mut d = Daemon::start(&env);
    d.until("a second full pass after incremental ones", SLOW, |d| {
        d.count(PASS_OK) >= 2 && kinds(&env).iter().skip(1).any(|k| k == "full succeeded")
    });
    let runs = kinds(&env);
    assert_eq!(runs[0], "full succeeded");
    assert_eq!(runs[1], "incremental succeeded", "{runs:?}");
}

/// Switching sync off during a long pass stops it at a page boundary: no request follows the
/// page in flight, and switched back on, the pass resumes from its last page.
#[test]
fn pausing_during_a_pass_stops_it_and_resumes_later() {
    let env = TestEnv::new();
    // The pages of the delta chain are what this test is about.
    env.delta_chain();
    {
        let mut t = env.sim.tenant();
        for n in 1..=200 {
            t.add_user(&u(n), user_props(&format!("User {n}")));
        }
        let mut s = env.sim.settings();
        s.users_page_size = 5;
        s.page_latency = Duration::from_millis(100);
    }
    let mut d = Daemon::start(&env);
    d.until("a few committed pages", SLOW, |_| {
        committed(&env, "SELECT count(*) FROM users") >= 20
    });
    edit_config(&env, |t| t.replace("[sync]\n", "[sync]\nenabled = false\n"));
    d.until("the pass to stop for the reload", SOON, |_| {
        status_json(&env)["daemon"]["state"] == "disabled"
    });
    // At most the page already in flight per resource may follow.
    let settled = env.sim.requests().len();
    let watch = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < watch {
        assert!(
            env.sim.requests().len() <= settled + 2,
            "requests went on while disabled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stored = committed(&env, "SELECT count(*) FROM users");
    assert!(
        stored < 200,
        "the pass ran to the end ({stored} users); log:\n{}",
        d.log()
    );
    assert!(
        kinds(&env).contains(&"full interrupted".to_owned()),
        "{:?}",
        kinds(&env)
    );

    env.sim.clear_requests();
    edit_config(&env, |t| t.replace("enabled = false\n", ""));
    d.passes(1, SLOW);
    let first = &env.graph_requests(Resource::Users)[0];
    assert!(
        first.path_and_query.contains("skiptoken="),
        "did not resume: {}",
        first.path_and_query
    );
    assert_eq!(committed(&env, "SELECT count(*) FROM users"), 200);
}

/// Names of the process's threads (`/proc/<pid>/task/*/comm`).
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// Issue 7.9: every SIGHUP stops the pass while its fetchers wait on a slow Graph; the next
/// pass starts only once they have ended, so six reloads never leave more than one pass's
/// two fetch threads, and the other threads stay those of the first pass (plus ureq's
/// short-lived DNS threads, at most one per fetcher).
#[test]
fn reloads_against_a_slow_graph_leave_no_extra_fetch_threads() {
    let env = TestEnv::new();
    tenant(&env);
    {
        let mut t = env.sim.tenant();
        for n in 4..=40 {
            t.add_user(&u(n), user_props(&format!("User {n}")));
        }
        let mut s = env.sim.settings();
        s.users_page_size = 2;
        s.page_latency = Duration::from_millis(1500);
    }
    set_interval(&env, "1h");
    let mut d = Daemon::start(&env);
    let fetchers = |d: &Daemon| {
        thread_names(d.pid())
            .iter()
            .filter(|n| n.starts_with("fetch-"))
            .count()
    };
    d.until("the first pass's two fetch threads", SLOW, |d| {
        fetchers(d) == 2
    });
    let others = thread_names(d.pid()).len().saturating_sub(2);
    for hup in 0..6 {
        d.signal("HUP");
        let until = Instant::now() + Duration::from_millis(if hup == 5 { 4000 } else { 500 });
        while Instant::now() < until {
            let names = thread_names(d.pid());
            let all = names.len();
            let fetching = names.iter().filter(|n| n.starts_with("fetch-")).count();
            assert!(
                fetching <= 2 && all - fetching <= others + 2,
                "after SIGHUP {}: {fetching} fetch threads, {all} threads (first pass: {others} \
                 besides its fetchers): \
                 {names:?}; log:\n{}",
                hup + 1,
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(d.count("pass paused for a reload") >= 2, "{}", d.log());
    // Graph recovers: a pass runs to the end and leaves no fetch thread behind.
    env.sim.settings().page_latency = Duration::ZERO;
    d.passes(1, SLOW);
    d.until("no fetch thread after the pass", SOON, |d| fetchers(d) == 0);
    assert_eq!(committed(&env, "SELECT count(*) FROM users"), 40);
}

/// `Key=value` settings of a unit file in `systemd/`, in order.
fn unit_settings(name: &str) -> Vec<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Issue 7.3, 7.9 and 7.16: both units forbid core dumps (they would hold the secret and the
/// token), cap the number of tasks, and do not restart on exit statuses that need a person.
#[test]
fn units_forbid_core_dumps_and_cap_tasks() {
    for unit in ["entra-sync.service", "entra-sync@.service"] {
        let settings = unit_settings(unit);
        let value = |key: &str| {
            settings
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(value("LimitCORE").as_deref(), Some("0"), "{unit}");
        // Issue 7.16: a damaged database (65), like a config error (78), is not restarted.
        assert_eq!(
            value("RestartPreventExitStatus").as_deref(),
            Some("65 78"),
            "{unit}"
        );
        let tasks: u32 = value("TasksMax")
            .unwrap_or_else(|| panic!("{unit} has no TasksMax="))
            .parse()
            .unwrap();
        assert!((8..=64).contains(&tasks), "{unit}: TasksMax={tasks}");
    }
}

/// Issue 7.10: after each pass the daemon empties the WAL (checkpoint TRUNCATE); a reader
/// holding a transaction keeps it from doing so and is named in a warning; `status` shows
/// the WAL's size; once the reader ends, the next pass empties it again.
#[test]
fn a_reader_holding_a_transaction_is_reported_and_the_wal_emptied_after() {
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);
    d.until("an empty WAL after the first pass", SOON, |_| {
        status_json(&env)["wal_bytes"] == 0
    });
    let reader = env.db();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM users;")
        .unwrap();
    env.sim.tenant().add_user(&u(9), user_props("User 9"));
    d.signal("USR1");
    d.passes(2, SLOW);
    d.until("the warning about the reader", SOON, |d| {
        d.count("holds a read transaction open") >= 1
    });
    let held = status_json(&env)["wal_bytes"].as_u64().unwrap();
    assert!(held > 0, "the WAL was emptied under a reader");
    let text = stdout(&env.run(&["status"]));
    assert!(text.contains("(write-ahead log "), "{text}");
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    d.signal("USR1");
    d.passes(3, SLOW);
    d.until("an empty WAL once the reader is gone", SOON, |_| {
        status_json(&env)["wal_bytes"] == 0
    });
    assert_eq!(d.count("holds a read transaction open"), 1, "{}", d.log());
}

/// Issue 7.13: with the config a symbolic link into another directory, edits of the target
/// (in place and by rename there) are seen, and so is pointing the link at another file.
#[test]
fn a_symlinked_config_follows_edits_of_its_target() {
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    let managed = env.dir.path().join("managed");
    std::fs::create_dir(&managed).unwrap();
    let real = managed.join("config.toml");
    std::fs::rename(&env.config, &real).unwrap();
    std::os::unix::fs::symlink(&real, &env.config).unwrap();

    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);
    assert_eq!(env.team(), vec![u(1), u(2)]);
    let text = std::fs::read_to_string(&real).unwrap();
    std::fs::write(&real, text.replace("\"Engineering\"", "\"Sales\"")).unwrap();
    d.until("the target edited in place", SOON, |_| {
        env.team() == vec![u(3)]
    });

    let temp = managed.join("config.toml.new");
    std::fs::write(&temp, &text).unwrap();
    std::fs::rename(&temp, &real).unwrap();
    d.until("the target replaced by rename", SOON, |_| {
        env.team() == vec![u(1), u(2)]
    });

    // The link now points at another file: that file is followed from then on.
    let second = managed.join("second.toml");
    std::fs::write(&second, &text).unwrap();
    let link = env.dir.path().join("config.toml.link");
    std::os::unix::fs::symlink(&second, &link).unwrap();
    std::fs::rename(&link, &env.config).unwrap();
    d.until("the reload of the retargeted link", SOON, |d| {
        d.count("nothing changed") >= 1
    });
    std::fs::write(&second, text.replace("\"Engineering\"", "\"Sales\"")).unwrap();
    d.until("the new target edited", SOON, |_| env.team() == vec![u(3)]);
    assert!(
        d.log()
            .contains("reloading the configuration (the file changed)"),
        "{}",
        d.log()
    );
}

/// Issue 7.12: a config rewritten in place by a writer that pauses half-way is applied only
/// once its content has stayed the same for the debounce period: the half that drops the
/// mapping's groups (a valid file with an empty team) is never applied, so no member leaves
/// the team and only the whole edit's one addition is audited.
#[test]
fn a_config_written_in_place_with_a_pause_is_applied_whole() {
    use std::io::Write;
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);
    assert_eq!(env.team(), vec![u(1), u(2)]);

    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("[\"Engineering\"]", "[\"Engineering\", \"Sales\"]");
    let cut = text.find("groups = ").unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&env.config)
        .unwrap();
    file.write_all(&text.as_bytes()[..cut]).unwrap();
    file.sync_data().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    file.write_all(&text.as_bytes()[cut..]).unwrap();
    drop(file);

    d.until("the whole edit", SOON, |_| {
        env.team() == vec![u(1), u(2), u(3)]
    });
    let team_events = env.strings(
        "SELECT action || ' ' || entity_id FROM audit_events WHERE entity = 'team' \
         AND run_id > (SELECT min(id) FROM sync_runs) ORDER BY id",
    );
    assert_eq!(team_events, vec![format!("added {}", u(3))], "{}", d.log());
    assert_eq!(
        d.count("reloading the configuration (the file changed)"),
        1,
        "{}",
        d.log()
    );
}

/// Issue 7.3: the daemon makes itself non-dumpable (the kernel then gives its /proc files
/// to root) and takes `$ENTRA_SYNC_CLIENT_SECRET` out of its environment, while signing in
/// with it. Run as `nobody` when the tests run as root, so that the owner tells.
#[test]
fn the_secret_leaves_the_environment_and_the_process_is_not_dumpable() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let mut env = TestEnv::new();
    tenant(&env);
    let root = nix::unistd::geteuid().is_root();
    const NOBODY: u32 = 65534;
    if root {
        // nobody reads the config (root's, 0644, in a 0755 directory) and owns the state.
        let state = env.dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::os::unix::fs::chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        env.db = state.join("entra-sync.db");
    }
    env.write_config(r#"groups = ["Engineering"]"#);
    let text = std::fs::read_to_string(&env.config).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("client_secret_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env.config, text).unwrap();
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut command = env.command(&["run"]);
    command.env("ENTRA_SYNC_CLIENT_SECRET", sim::CLIENT_SECRET);
    if root {
        command.uid(NOBODY).gid(NOBODY);
    }
    let mut d = Daemon::spawn(command);
    d.passes(1, SLOW);
    assert_eq!(env.team(), vec![u(1), u(2)], "signed in with the secret");

    let environ = format!("/proc/{}/environ", d.pid());
    let owner = std::fs::metadata(&environ).unwrap().uid();
    assert_eq!(
        owner, 0,
        "{environ} belongs to uid {owner}: the process is dumpable"
    );
    // Root may read a non-dumpable process's environment (with CAP_SYS_PTRACE): the secret
    // is not in it. Without that capability nobody can read it at all.
    if let Ok(bytes) = std::fs::read(&environ) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("ENTRA_SYNC_CLIENT_SECRET") && !text.contains(sim::CLIENT_SECRET),
            "the secret is still in the environment"
        );
    } else {
        assert!(!root, "root cannot read {environ}");
    }
    assert!(!d.log().contains("cannot take"), "{}", d.log());
    assert_no_secrets(&env, &d.log());
}

/// Issue 7: `systemd-analyze security` rates both units at an exposure of 1.2 or better
/// (lower is better). CI installs systemd-analyze (.ci/package.sh) before the tests run.
#[test]
fn units_keep_their_security_exposure_at_or_below_1_2() {
    for unit in ["entra-sync.service", "entra-sync@.service"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(unit);
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&path)
            .output()
            .expect("systemd-analyze is needed (apt-get install systemd)");
        let text = String::from_utf8_lossy(&out.stdout);
        let level: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{text}"));
        assert!(level <= 1.2, "{unit}: exposure {level} > 1.2:\n{text}");
    }
}

/// Issue 7.16: the database is damaged under a running daemon (a failing disk): the next
/// pass meets the corruption, quick_check confirms it, and the daemon stops with exit 65 and
/// the way to recover instead of failing every pass forever.
#[test]
fn a_database_damaged_under_the_daemon_stops_it_with_exit_65() {
    let env = TestEnv::new();
    tenant(&env);
    set_interval(&env, "1h");
    let mut d = Daemon::start(&env);
    d.passes(1, SLOW);
    // The pass is recorded before its WAL is checkpointed: damaging the file before that
    // checkpoint lets it write good pages back over the damage (seen on a loaded machine).
    let wal = env.db.with_extension("db-wal");
    wait_for("the checkpoint after the pass", SLOW, || {
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0)
    });
    crate::commands::damage(&env.db);
    // Another writer's commit makes the daemon drop its page cache and read the file again
    // (it rewrites only the header page, which survives the damage).
    let conn = env.db();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    conn.pragma_update(None, "user_version", version).unwrap();
    drop(conn);
    d.signal("USR1");
    let status = d.wait_exit(SLOW).unwrap_or_else(|| {
        panic!(
            "the daemon did not stop on a damaged database; log:\n{}",
            d.log()
        )
    });
    assert_eq!(status.code(), Some(65), "{}", d.log());
    assert_eq!(d.count_errors("is damaged"), 1, "{}", d.log());
    assert!(d.log().contains(".damaged"), "{}", d.log());
}

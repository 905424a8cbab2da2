//! Running the real binary against the simulator in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::sim::{self, Sim};

pub const BIN: &str = env!("CARGO_BIN_EXE_entra-sync");

/// A temp dir holding a config, a secret file and a database, and a simulator to sync from.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub sim: Sim,
    pub config: PathBuf,
    pub db: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv::with_mapping(r#"groups = ["Engineering"]"#)
    }

    /// `mapping` is the body of the `[mapping]` table.
    pub fn with_mapping(mapping: &str) -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::start();
        let config = dir.path().join("config.toml");
        let db = dir.path().join("entra-sync.db");
        let env = TestEnv {
            dir,
            sim,
            config,
            db,
        };
        let secret = env.dir.path().join("client-secret");
        std::fs::write(&secret, format!("{}\n", sim::CLIENT_SECRET)).unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        env.write_config(mapping);
        env
    }

    pub fn write_config(&self, mapping: &str) {
        self.write_config_with(mapping, "");
    }

    /// Writes the config with `mapping` and extra `[sync]` lines.
    pub fn write_config_with(&self, mapping: &str, sync_extra: &str) {
        let credential = format!(
            "client_id = \"{}\"\nclient_secret_file = \"{}\"",
            sim::CLIENT_ID,
            self.dir.path().join("client-secret").display()
        );
        self.write_config_full(&credential, mapping, sync_extra);
    }

    /// Writes the config with `credential` (the `[entra]` lines naming the client id and the
    /// credential) in place of the client secret file.
    pub fn write_config_credential(&self, credential: &str) {
        self.write_config_full(credential, r#"groups = ["Engineering"]"#, "");
    }

    fn write_config_full(&self, credential: &str, mapping: &str, sync_extra: &str) {
        let text = format!(
            r#"[entra]
tenant_id = "{tenant}"
{credential}
authority_host = "{url}"
graph_endpoint = "{url}"

[sync]
database = "{db}"
interval = "1s"
{sync_extra}

[mapping]
{mapping}
"#,
            tenant = sim::TENANT_ID,
            url = self.sim.url(),
            db = self.db.display(),
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Full passes by delta chain (`sync.full_pass = "delta"`), for tests of its pages.
    pub fn delta_chain(&self) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text.replacen("[sync]\n", "[sync]\nfull_pass = \"delta\"\n", 1);
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("ENTRA_SYNC_CLIENT_SECRET")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("AZURE_FEDERATED_TOKEN_FILE")
            .env_remove("AZURE_CLIENT_ID")
            .env_remove("AZURE_TENANT_ID")
            .env_remove("IDENTITY_ENDPOINT")
            .env_remove("IMDS_ENDPOINT")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "entra_sync=debug")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy");
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `sync` and asserts it succeeded.
    #[track_caller]
    pub fn sync(&self) -> Output {
        let output = self.run(&["sync"]);
        assert_success(&output);
        output
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn db(&self) -> Connection {
        Connection::open(&self.db).unwrap()
    }

    pub fn strings(&self, sql: &str) -> Vec<String> {
        let conn = self.db();
        let mut statement = conn.prepare(sql).unwrap();
        statement
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Sorted user ids of the team.
    pub fn team(&self) -> Vec<String> {
        let mut team = self.strings("SELECT user_id FROM team_members");
        team.sort();
        team
    }

    /// Sorted "group member type" lines of group_members.
    pub fn memberships(&self) -> Vec<String> {
        let mut rows = self.strings(
            "SELECT group_id || ' ' || member_id || ' ' || member_type FROM group_members",
        );
        rows.sort();
        rows
    }

    pub fn graph_requests(&self, resource: sim::Resource) -> Vec<sim::Recorded> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| std::mem::discriminant(&r.resource) == std::mem::discriminant(&resource))
            .collect()
    }
}

#[track_caller]
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits for `condition` to hold, polling; panics with `what` after `timeout`.
#[track_caller]
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A GUID-shaped id for test objects: `u(7)` and `g(7)` differ.
pub fn u(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

pub fn g(n: u32) -> String {
    format!("99999999-0000-4000-8000-{n:012x}")
}

pub fn user_props(name: &str) -> serde_json::Value {
    serde_json::json!({
        "displayName": name,
        "userPrincipalName": format!("{}@contoso.example", name.to_lowercase().replace(' ', ".")),
        "mail": format!("{}@contoso.example", name.to_lowercase().replace(' ', ".")),
        "accountEnabled": true,
        "userType": "Member",
        "jobTitle": "Engineer",
    })
}

pub fn security_group(name: &str) -> serde_json::Value {
    serde_json::json!({
        "displayName": name,
        "securityEnabled": true,
        "mailEnabled": false,
        "groupTypes": [],
    })
}

pub fn unified_group(name: &str) -> serde_json::Value {
    serde_json::json!({
        "displayName": name,
        "securityEnabled": false,
        "mailEnabled": true,
        "mail": format!("{}@contoso.example", name.to_lowercase()),
        "groupTypes": ["Unified"],
    })
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

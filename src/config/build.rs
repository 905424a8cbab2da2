//! Building [`Config`] from the raw document: all value validation happens here.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::credential;
use super::error::{ConfigError, Ctx, ErrorKind, line_of};
use super::schema::{RawConfig, RawMapping, RawSync, example_of};
use super::values::{is_guid, parse_duration, parse_local_date, parse_origin, validate_tenant};
use super::*;

// ---------------------------------------------------------------------------------------------
// Building Config from RawConfig: all value validation happens here
// ---------------------------------------------------------------------------------------------

pub(super) const CLIENT_HINT: &str = "copy the Application (client) ID from the app registration's Overview page in the Microsoft Entra admin center";

pub(super) fn build(ctx: &Ctx<'_>, raw: RawConfig, env: &Env) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    let base_dir = config_dir(ctx.path);

    // [entra]
    let Some(entra) = raw.entra else {
        return Err(ctx.error(
            ErrorKind::Invalid,
            None,
            Some("entra.tenant_id"),
            "required key is missing (there is no [entra] table); add an [entra] table with \
             tenant_id = \"contoso.onmicrosoft.com\", client_id = \"11111111-2222-3333-4444-555555555555\" \
             and a client secret (see config.example.toml)"
                .to_owned(),
        ));
    };
    let entra_span = entra.span();
    let entra = entra.into_inner();

    let asked = credential::asked(&entra, env);
    // With a federated token, $AZURE_TENANT_ID and $AZURE_CLIENT_ID stand in for missing keys
    // (the AKS workload identity convention); their errors name the variable, not a line.
    let from_env = |variable: &str, m: String| {
        ctx.error(
            ErrorKind::Invalid,
            None,
            None,
            format!("the environment variable {variable} {m}"),
        )
    };
    let tenant_id = match (&entra.tenant_id, asked.federated, &env.azure_tenant_id) {
        (Some(tenant), _, _) => validate_tenant(tenant.get_ref())
            .map_err(|m| ctx.invalid(tenant.span(), "entra.tenant_id", m))?,
        (None, true, Some(tenant)) => {
            validate_tenant(tenant).map_err(|m| from_env("AZURE_TENANT_ID", m))?
        }
        (None, _, _) => {
            required(
                ctx,
                None,
                &entra_span,
                "entra",
                "tenant_id",
                "the Directory (tenant) ID or a verified domain",
            )?;
            unreachable!("required(None) is an error")
        }
    };

    let client_id = if asked.managed_identity {
        // A managed identity signs in as itself; the app registration's id plays no part.
        if let Some(client) = &entra.client_id {
            warnings.push(format!(
                "entra.client_id ({:?}) is not used with a managed identity, which signs in as itself; \
                 remove it (a user-assigned identity is chosen with managed_identity_client_id)",
                client.get_ref()
            ));
        }
        None
    } else {
        let (client_id, span) = match (&entra.client_id, asked.federated, &env.azure_client_id) {
            (Some(client), _, _) => (client.get_ref().clone(), Some(client.span())),
            (None, true, Some(client)) => (client.clone(), None),
            (None, _, _) => {
                required(
                    ctx,
                    None,
                    &entra_span,
                    "entra",
                    "client_id",
                    "the Application (client) ID",
                )?;
                unreachable!("required(None) is an error")
            }
        };
        let problem = if !is_guid(&client_id) {
            Some(format!("{client_id:?} is not a GUID; {CLIENT_HINT}"))
        } else if client_id.eq_ignore_ascii_case(&tenant_id) {
            Some(format!(
                "{client_id:?} is the tenant ID, not the application's ID; {CLIENT_HINT}"
            ))
        } else {
            None
        };
        if let Some(m) = problem {
            return Err(match span {
                Some(span) => ctx.invalid(span, "entra.client_id", m),
                None => from_env("AZURE_CLIENT_ID", m),
            });
        }
        Some(client_id)
    };

    let cloud = match &entra.cloud {
        None => Cloud::default(),
        Some(value) => Cloud::from_name(value.get_ref()).ok_or_else(|| {
            let valid = Cloud::ALL.map(Cloud::as_str).join(", ");
            ctx.invalid(
                value.span(),
                "entra.cloud",
                format!(
                    "{:?} is not a known cloud; use one of {valid} (global unless the tenant is in a US Government or China cloud)",
                    value.get_ref()
                ),
            )
        })?,
    };

    let authority_host = match &entra.authority_host {
        None => cloud.authority_host().to_owned(),
        Some(value) => parse_origin(
            value.get_ref(),
            cloud.authority_host(),
            " (the tenant goes in entra.tenant_id)",
        )
        .map_err(|m| ctx.invalid(value.span(), "entra.authority_host", m))?,
    };
    let graph_endpoint = match &entra.graph_endpoint {
        None => cloud.graph_endpoint().to_owned(),
        Some(value) => parse_origin(
            value.get_ref(),
            cloud.graph_endpoint(),
            " (entra-sync adds the API version itself)",
        )
        .map_err(|m| ctx.invalid(value.span(), "entra.graph_endpoint", m))?,
    };

    let client_secret_expires = match &entra.client_secret_expires {
        None => None,
        Some(value) => Some(
            parse_local_date(value.get_ref())
                .map_err(|m| ctx.invalid(value.span(), "entra.client_secret_expires", m))?,
        ),
    };

    let sync = build_sync(
        ctx,
        raw.sync.map(Spanned::into_inner).unwrap_or_default(),
        &base_dir,
    )?;
    let mapping = build_mapping(
        ctx,
        raw.mapping.map(Spanned::into_inner).unwrap_or_default(),
    )?;

    // The credential last: it may read files.
    let credential = credential::resolve(ctx, &entra, &entra_span, env, &base_dir, &mut warnings)?;

    Ok(Config {
        path: ctx.path.to_path_buf(),
        entra: Entra {
            tenant_id,
            client_id,
            credential,
            client_secret_expires,
            cloud,
            authority_host,
            graph_endpoint,
        },
        sync,
        mapping,
        warnings,
    })
}

pub(super) fn build_sync(
    ctx: &Ctx<'_>,
    sync: RawSync,
    base_dir: &Path,
) -> Result<SyncSettings, ConfigError> {
    let enabled = sync.enabled.as_ref().is_none_or(|v| *v.get_ref());
    let interval = match &sync.interval {
        None => DEFAULT_INTERVAL,
        Some(value) => {
            let d = parse_duration(value.get_ref())
                .map_err(|m| ctx.invalid(value.span(), "sync.interval", m))?;
            if d < MIN_INTERVAL {
                return Err(ctx.invalid(
                    value.span(),
                    "sync.interval",
                    format!(
                        "{:?} is shorter than 1s; use at least \"1s\" (the default is \"5m\")",
                        value.get_ref()
                    ),
                ));
            }
            d
        }
    };
    let full_sync_interval = match &sync.full_sync_interval {
        None => DEFAULT_FULL_SYNC_INTERVAL,
        Some(value) => parse_duration(value.get_ref())
            .map_err(|m| ctx.invalid(value.span(), "sync.full_sync_interval", m))?,
    };
    if full_sync_interval < interval {
        return Err(match (&sync.full_sync_interval, &sync.interval) {
            (Some(full), _) => ctx.invalid(
                full.span(),
                "sync.full_sync_interval",
                format!(
                    "{:?} is shorter than sync.interval ({}); make it at least as long as interval",
                    full.get_ref(),
                    humantime::format_duration(interval)
                ),
            ),
            (None, value) => {
                // `value` is never None here: the defaults are ordered, so interval was set.
                let shown = value.as_ref().map_or_else(
                    || humantime::format_duration(interval).to_string(),
                    |v| format!("{:?}", v.get_ref()),
                );
                ctx.error(
                    ErrorKind::Invalid,
                    value.as_ref().map(Spanned::span),
                    Some("sync.interval"),
                    format!(
                        "{shown} is longer than full_sync_interval (default \"7d\"); shorten interval or set full_sync_interval to at least that"
                    ),
                )
            }
        });
    }
    let max_deletions = match &sync.max_deletions {
        None => DEFAULT_MAX_DELETIONS,
        Some(value) => parse_max_deletions(value.get_ref())
            .map_err(|m| ctx.invalid(value.span(), "sync.max_deletions", m))?,
    };
    let database = match &sync.database {
        None => PathBuf::from(DEFAULT_DATABASE),
        Some(value) => {
            let raw_path = value.get_ref();
            if raw_path.trim().is_empty() {
                return Err(ctx.invalid(
                    value.span(),
                    "sync.database",
                    format!("is empty; give the SQLite file's path, or remove the key to use the default \"{DEFAULT_DATABASE}\""),
                ));
            }
            if raw_path.ends_with('/') {
                return Err(ctx.invalid(
                    value.span(),
                    "sync.database",
                    format!("{raw_path:?} is a directory; give a file path such as \"{DEFAULT_DATABASE}\""),
                ));
            }
            base_dir.join(raw_path)
        }
    };
    let metrics_file = match &sync.metrics_file {
        None => None,
        Some(value) => {
            let raw_path = value.get_ref();
            if raw_path.trim().is_empty() || raw_path.ends_with('/') {
                return Err(ctx.invalid(
                    value.span(),
                    "sync.metrics_file",
                    format!(
                        "{raw_path:?} is not a file path; give one such as \
                         \"/var/lib/prometheus/node-exporter/entra-sync.prom\", or remove the key"
                    ),
                ));
            }
            Some(base_dir.join(raw_path))
        }
    };
    let full_pass = match &sync.full_pass {
        None => FullPass::default(),
        Some(value) => FullPass::from_name(value.get_ref()).ok_or_else(|| {
            let valid = FullPass::ALL.map(FullPass::as_str).join(", ");
            ctx.invalid(
                value.span(),
                "sync.full_pass",
                format!(
                    "{:?} is not a way to read the tenant; use one of {valid} (snapshot, the default, reads it in parallel; delta one page after another)",
                    value.get_ref()
                ),
            )
        })?,
    };
    let max_concurrency = match &sync.max_concurrency {
        None => DEFAULT_MAX_CONCURRENCY,
        Some(value) => parse_max_concurrency(*value.get_ref())
            .map_err(|m| ctx.invalid(value.span(), "sync.max_concurrency", m))?,
    };
    Ok(SyncSettings {
        enabled,
        interval,
        full_sync_interval,
        max_deletions,
        database,
        metrics_file,
        full_pass,
        max_concurrency,
    })
}

/// An integer within [`MAX_CONCURRENCY`].
fn parse_max_concurrency(value: i64) -> Result<usize, String> {
    match usize::try_from(value) {
        Ok(n) if MAX_CONCURRENCY.contains(&n) => Ok(n),
        _ => Err(format!(
            "{value} is not from {} to {}; give the number of requests in flight during a snapshot, from {} to {} (the default is {DEFAULT_MAX_CONCURRENCY})",
            MAX_CONCURRENCY.start(),
            MAX_CONCURRENCY.end(),
            MAX_CONCURRENCY.start(),
            MAX_CONCURRENCY.end(),
        )),
    }
}

/// `500`, `0` (off) or `"10%"`.
fn parse_max_deletions(value: &toml::Value) -> Result<MaxDeletions, String> {
    const FIX: &str = "write a count such as max_deletions = 500, a share such as \
                       max_deletions = \"10%\", or 0 to switch the guard off";
    match value {
        toml::Value::Integer(0) => Ok(MaxDeletions::Off),
        toml::Value::Integer(n) if *n > 0 => Ok(MaxDeletions::Count(*n as u64)),
        toml::Value::Integer(n) => Err(format!("{n} is negative; {FIX}")),
        toml::Value::String(text) => {
            let number = text.trim().strip_suffix('%').map(str::trim);
            match number.map(str::parse::<u32>) {
                Some(Ok(0)) => Ok(MaxDeletions::Off),
                Some(Ok(p)) if p <= 100 => Ok(MaxDeletions::Percent(p)),
                Some(Ok(_)) => Err(format!("{text:?} is more than 100%; {FIX}")),
                _ => Err(format!("{text:?} is not a count or a percentage; {FIX}")),
            }
        }
        other => Err(format!(
            "invalid type: {}, expected an integer or a percentage string; {FIX}",
            other.type_str()
        )),
    }
}

pub(super) fn build_mapping(ctx: &Ctx<'_>, mapping: RawMapping) -> Result<Mapping, ConfigError> {
    let team = match &mapping.team {
        None => DEFAULT_TEAM.to_owned(),
        Some(value) if value.get_ref().trim().is_empty() => {
            return Err(ctx.invalid(
                value.span(),
                "mapping.team",
                format!("is empty; give the local team's name, or remove the key to use the default \"{DEFAULT_TEAM}\""),
            ));
        }
        Some(value) => value.get_ref().clone(),
    };
    let mut groups: Vec<String> = Vec::new();
    let mut seen: Vec<(String, &Spanned<String>)> = Vec::new();
    for group in mapping.groups.iter().flat_map(|g| g.get_ref()) {
        let name = group.get_ref();
        if name.trim().is_empty() {
            return Err(ctx.invalid(
                group.span(),
                "mapping.groups",
                "contains an empty string; give each group's display name or object ID, or remove the empty entry".to_owned(),
            ));
        }
        let folded = name.to_lowercase();
        if let Some((_, first)) = seen.iter().find(|(f, _)| *f == folded) {
            let first_line = line_of(ctx.text.as_bytes(), first.span().start);
            return Err(ctx.invalid(
                group.span(),
                "mapping.groups",
                format!(
                    "{name:?} is listed twice (also on line {first_line} as {:?}; names and IDs are compared ignoring case); remove one of them",
                    first.get_ref()
                ),
            ));
        }
        seen.push((folded, group));
        groups.push(name.clone());
    }
    Ok(Mapping {
        team,
        groups,
        nested: mapping.nested.as_ref().is_none_or(|v| *v.get_ref()),
        include_disabled: mapping
            .include_disabled
            .as_ref()
            .is_some_and(|v| *v.get_ref()),
    })
}

pub(super) fn required<'v>(
    ctx: &Ctx<'_>,
    value: Option<&'v Spanned<String>>,
    table_span: &Range<usize>,
    table: &str,
    key: &str,
    what: &str,
) -> Result<&'v Spanned<String>, ConfigError> {
    value.ok_or_else(|| {
        let dotted = format!("{table}.{key}");
        let example = example_of(&dotted).unwrap_or_default();
        ctx.error(
            ErrorKind::Invalid,
            Some(table_span.clone()),
            Some(&dotted),
            format!(
                "required key is missing; add it to the [{table}] table, e.g. {example} ({what})"
            ),
        )
    })
}

/// Directory that relative paths in the file are relative to.
pub(super) fn config_dir(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match absolute.parent() {
        Some(parent) => parent.to_path_buf(),
        None => PathBuf::from("/"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is fine in tests only
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn missing_required_keys() {
        check_errors(&[
            (
                "[entra]\nclient_id = \"11111111-2222-3333-4444-555555555555\"\n",
                "config: /etc/entra-sync/config.toml:1: entra.tenant_id: required key is missing; add it to the [entra] table, e.g. tenant_id = \"contoso.onmicrosoft.com\" (the Directory (tenant) ID or a verified domain)",
            ),
            (
                "# comment\n\n[entra]\ntenant_id = \"contoso.onmicrosoft.com\"\n",
                "config: /etc/entra-sync/config.toml:3: entra.client_id: required key is missing; add it to the [entra] table, e.g. client_id = \"11111111-2222-3333-4444-555555555555\" (the Application (client) ID)",
            ),
            (
                "[sync]\nenabled = true\n",
                "config: /etc/entra-sync/config.toml: entra.tenant_id: required key is missing (there is no [entra] table); add an [entra] table with tenant_id = \"contoso.onmicrosoft.com\", client_id = \"11111111-2222-3333-4444-555555555555\" and a client secret (see config.example.toml)",
            ),
            (
                "",
                "config: /etc/entra-sync/config.toml: entra.tenant_id: required key is missing (there is no [entra] table); add an [entra] table with tenant_id = \"contoso.onmicrosoft.com\", client_id = \"11111111-2222-3333-4444-555555555555\" and a client secret (see config.example.toml)",
            ),
        ]);
    }

    #[test]
    fn max_deletions_is_a_count_a_share_or_off() {
        for (text, want) in [
            ("", MaxDeletions::Count(500)),
            ("max_deletions = 20\n", MaxDeletions::Count(20)),
            ("max_deletions = \"10%\"\n", MaxDeletions::Percent(10)),
            ("max_deletions = 0\n", MaxDeletions::Off),
            ("max_deletions = \"0%\"\n", MaxDeletions::Off),
        ] {
            let config = ok(&with_head(&format!("[sync]\n{text}")));
            assert_eq!(config.sync.max_deletions, want, "{text}");
        }
        assert_eq!(MaxDeletions::Percent(10).limit(1234), Some(123));
        assert_eq!(MaxDeletions::Off.limit(5), None);
        let fix = "write a count such as max_deletions = 500, a share such as max_deletions = \"10%\", or 0 to switch the guard off";
        check_errors(&[
            (
                &with_head("[sync]\nmax_deletions = -1\n"),
                &format!("config: {P}:5: sync.max_deletions: -1 is negative; {fix}"),
            ),
            (
                &with_head("[sync]\nmax_deletions = \"ten\"\n"),
                &format!(
                    "config: {P}:5: sync.max_deletions: \"ten\" is not a count or a percentage; {fix}"
                ),
            ),
            (
                &with_head("[sync]\nmax_deletions = \"150%\"\n"),
                &format!("config: {P}:5: sync.max_deletions: \"150%\" is more than 100%; {fix}"),
            ),
            (
                &with_head("[sync]\nmax_deletions = 1.5\n"),
                &format!(
                    "config: {P}:5: sync.max_deletions: invalid type: float, expected an integer or a percentage string; {fix}"
                ),
            ),
        ]);
    }

    #[test]
    fn full_pass_and_max_concurrency() {
        for (text, full_pass, max_concurrency) in [
            ("", FullPass::Snapshot, 8),
            ("full_pass = \"snapshot\"\n", FullPass::Snapshot, 8),
            ("full_pass = \"delta\"\n", FullPass::Delta, 8),
            ("full_pass = \"Delta\"\n", FullPass::Delta, 8),
            ("max_concurrency = 1\n", FullPass::Snapshot, 1),
            ("max_concurrency = 16\n", FullPass::Snapshot, 16),
            (
                "full_pass = \"delta\"\nmax_concurrency = 4\n",
                FullPass::Delta,
                4,
            ),
        ] {
            let config = ok(&with_head(&format!("[sync]\n{text}")));
            assert_eq!(config.sync.full_pass, full_pass, "{text}");
            assert_eq!(config.sync.max_concurrency, max_concurrency, "{text}");
        }
        let modes = "use one of snapshot, delta (snapshot, the default, reads it in parallel; delta one page after another)";
        let range = "give the number of requests in flight during a snapshot, from 1 to 16 (the default is 8)";
        check_errors(&[
            (
                &with_head("[sync]\nfull_pass = \"parallel\"\n"),
                &format!(
                    "config: {P}:5: sync.full_pass: \"parallel\" is not a way to read the tenant; {modes}"
                ),
            ),
            (
                &with_head("[sync]\nfull_pass = \"\"\n"),
                &format!(
                    "config: {P}:5: sync.full_pass: \"\" is not a way to read the tenant; {modes}"
                ),
            ),
            (
                &with_head("[sync]\nfull_pass = true\n"),
                &format!(
                    "config: {P}:5: sync.full_pass: invalid type: boolean `true`, expected a string; write it like full_pass = \"snapshot\""
                ),
            ),
            (
                &with_head("[sync]\nmax_concurrency = 0\n"),
                &format!("config: {P}:5: sync.max_concurrency: 0 is not from 1 to 16; {range}"),
            ),
            (
                &with_head("[sync]\nmax_concurrency = 17\n"),
                &format!("config: {P}:5: sync.max_concurrency: 17 is not from 1 to 16; {range}"),
            ),
            (
                &with_head("[sync]\nmax_concurrency = -3\n"),
                &format!("config: {P}:5: sync.max_concurrency: -3 is not from 1 to 16; {range}"),
            ),
            (
                &with_head("[sync]\nmax_concurrency = \"8\"\n"),
                &format!(
                    "config: {P}:5: sync.max_concurrency: invalid type: string \"8\", expected i64; write it like max_concurrency = 8"
                ),
            ),
        ]);
    }

    #[test]
    fn sync_rules() {
        let hint = "write a duration like \"30s\", \"5m\", \"1h 30m\" or \"7d\"";
        let config = ok(&with_head(
            "[sync]\ninterval = \"1s\"\nfull_sync_interval = \"1s\"\nenabled = false\n",
        ));
        assert_eq!(config.sync.interval, Duration::from_secs(1));
        assert_eq!(config.sync.full_sync_interval, Duration::from_secs(1));
        assert!(!config.sync.enabled);
        let config = ok(&with_head(
            "[sync]\ninterval = \"1h 30m\"\nfull_sync_interval = \"2weeks\"\n",
        ));
        assert_eq!(config.sync.interval, Duration::from_secs(5400));
        assert_eq!(
            config.sync.full_sync_interval,
            Duration::from_secs(14 * 86400)
        );

        check_errors(&[
            (
                &with_head("[sync]\ninterval = \"0s\"\n"),
                &format!(
                    "config: {P}:5: sync.interval: \"0s\" is shorter than 1s; use at least \"1s\" (the default is \"5m\")"
                ),
            ),
            (
                &with_head("[sync]\ninterval = \"500ms\"\n"),
                &format!(
                    "config: {P}:5: sync.interval: \"500ms\" is shorter than 1s; use at least \"1s\" (the default is \"5m\")"
                ),
            ),
            (
                &with_head("[sync]\ninterval = \"five minutes\"\n"),
                &format!(
                    "config: {P}:5: sync.interval: \"five minutes\" is not a duration (expected number at 0); {hint}"
                ),
            ),
            (
                &with_head("[sync]\ninterval = \"5 parsecs\"\n"),
                &format!(
                    "config: {P}:5: sync.interval: \"5 parsecs\" is not a duration (unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)); {hint}"
                ),
            ),
            (
                &with_head("[sync]\nfull_sync_interval = \"\"\n"),
                &format!(
                    "config: {P}:5: sync.full_sync_interval: \"\" is not a duration (value was empty); {hint}"
                ),
            ),
            (
                &with_head("[sync]\ninterval = \"1h\"\nfull_sync_interval = \"30m\"\n"),
                &format!(
                    "config: {P}:6: sync.full_sync_interval: \"30m\" is shorter than sync.interval (1h); make it at least as long as interval"
                ),
            ),
            (
                &with_head("[sync]\ninterval = \"8d\"\n"),
                &format!(
                    "config: {P}:5: sync.interval: \"8d\" is longer than full_sync_interval (default \"7d\"); shorten interval or set full_sync_interval to at least that"
                ),
            ),
            (
                &with_head("[sync]\ndatabase = \"\"\n"),
                &format!(
                    "config: {P}:5: sync.database: is empty; give the SQLite file's path, or remove the key to use the default \"/var/lib/entra-sync/entra-sync.db\""
                ),
            ),
            (
                &with_head("[sync]\ndatabase = \"/var/lib/entra-sync/\"\n"),
                &format!(
                    "config: {P}:5: sync.database: \"/var/lib/entra-sync/\" is a directory; give a file path such as \"/var/lib/entra-sync/entra-sync.db\""
                ),
            ),
        ]);
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let config = ok(&with_head("[sync]\ndatabase = \"data/mirror.db\"\n"));
        assert_eq!(
            config.sync.database,
            PathBuf::from("/etc/entra-sync/data/mirror.db")
        );
        let config = ok(&with_head("[sync]\ndatabase = \"/srv/mirror.db\"\n"));
        assert_eq!(config.sync.database, PathBuf::from("/srv/mirror.db"));

        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
        let path = dir.path().join("config.toml");
        let text = with_head("client_secret_file = \"secret\"\n");
        let config = Config::parse(&text, &path, &Env::default()).unwrap();
        assert_eq!(
            config.entra.secret_source().cloned().unwrap(),
            SecretSource::File(dir.path().join("secret"))
        );
        assert_eq!(config.entra.secret().cloned().unwrap().expose(), SECRET);
    }

    #[test]
    fn mapping_rules() {
        let config = ok(&with_head(
            "[mapping]\nteam = \"Staff\"\ngroups = [\"Engineering\", \"6f1b8c3e-0000-4000-8000-000000000001\"]\nnested = false\ninclude_disabled = true\n",
        ));
        assert_eq!(
            config.mapping,
            Mapping {
                team: "Staff".to_owned(),
                groups: vec![
                    "Engineering".to_owned(),
                    "6f1b8c3e-0000-4000-8000-000000000001".to_owned()
                ],
                nested: false,
                include_disabled: true,
            }
        );
        check_errors(&[
            (
                &with_head("[mapping]\nteam = \" \"\n"),
                &format!(
                    "config: {P}:5: mapping.team: is empty; give the local team's name, or remove the key to use the default \"Microsoft Entra ID Users\""
                ),
            ),
            (
                &with_head("[mapping]\ngroups = [\"Engineering\", \"\"]\n"),
                &format!(
                    "config: {P}:5: mapping.groups: contains an empty string; give each group's display name or object ID, or remove the empty entry"
                ),
            ),
            (
                &with_head(
                    "[mapping]\ngroups = [\n  \"Engineering\",\n  \"Sales\",\n  \"ENGINEERING\",\n]\n",
                ),
                &format!(
                    "config: {P}:8: mapping.groups: \"ENGINEERING\" is listed twice (also on line 6 as \"Engineering\"; names and IDs are compared ignoring case); remove one of them"
                ),
            ),
            (
                &with_head(
                    "[mapping]\ngroups = [\"6F1B8C3E-0000-4000-8000-000000000001\", \"6f1b8c3e-0000-4000-8000-000000000001\"]\n",
                ),
                &format!(
                    "config: {P}:5: mapping.groups: \"6f1b8c3e-0000-4000-8000-000000000001\" is listed twice (also on line 5 as \"6F1B8C3E-0000-4000-8000-000000000001\"; names and IDs are compared ignoring case); remove one of them"
                ),
            ),
        ]);
    }

    #[test]
    fn defaults() {
        let config = ok(HEAD);
        assert_eq!(
            config,
            Config {
                path: PathBuf::from(P),
                entra: Entra {
                    tenant_id: TENANT.to_owned(),
                    client_id: Some(CLIENT.to_owned()),
                    credential: Credential::Secret {
                        secret: Secret::new(SECRET),
                        source: SecretSource::Env,
                    },
                    client_secret_expires: None,
                    cloud: Cloud::Global,
                    authority_host: "https://login.microsoftonline.com".to_owned(),
                    graph_endpoint: "https://graph.microsoft.com".to_owned(),
                },
                sync: SyncSettings {
                    enabled: true,
                    interval: Duration::from_secs(300),
                    full_sync_interval: Duration::from_secs(7 * 86400),
                    max_deletions: MaxDeletions::Count(500),
                    database: PathBuf::from("/var/lib/entra-sync/entra-sync.db"),
                    metrics_file: None,
                    full_pass: FullPass::Snapshot,
                    max_concurrency: 8,
                },
                mapping: Mapping {
                    team: "Microsoft Entra ID Users".to_owned(),
                    groups: vec![],
                    nested: true,
                    include_disabled: false,
                },
                warnings: vec![],
            }
        );
        // Empty tables are the same as absent ones.
        assert_eq!(ok(&with_head("[sync]\n[mapping]\n")), config);
        assert_eq!(config.entra.scope(), "https://graph.microsoft.com/.default");
        assert_eq!(
            config.entra.token_url(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(config.entra.graph_endpoint, "https://graph.microsoft.com");
    }
}

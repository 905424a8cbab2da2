//! The schema: every table and key with an example value for hints, the raw document that
//! mirrors the TOML, and the shape check (known tables and keys only).

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, Ctx};

// ---------------------------------------------------------------------------------------------
// The schema: every table and key, with an example value used in hints
// ---------------------------------------------------------------------------------------------

pub(super) type KeyExample = (&'static str, &'static str);

pub(super) const SCHEMA: &[(&str, &[KeyExample])] = &[
    (
        "entra",
        &[
            ("tenant_id", "\"contoso.onmicrosoft.com\""),
            ("client_id", "\"11111111-2222-3333-4444-555555555555\""),
            ("client_secret", "\"<the secret's Value>\""),
            ("client_secret_file", "\"/etc/entra-sync/client-secret\""),
            ("client_secret_expires", "2028-11-26"),
            ("client_certificate_file", "\"/etc/entra-sync/client.pem\""),
            (
                "client_certificate_key_file",
                "\"/etc/entra-sync/client.key\"",
            ),
            ("managed_identity", "true"),
            (
                "managed_identity_client_id",
                "\"11111111-2222-3333-4444-555555555555\"",
            ),
            (
                "managed_identity_endpoint",
                "\"http://169.254.169.254/metadata/identity/oauth2/token\"",
            ),
            (
                "federated_token_file",
                "\"/var/run/secrets/azure/tokens/azure-identity-token\"",
            ),
            ("cloud", "\"global\""),
            ("authority_host", "\"https://login.microsoftonline.com\""),
            ("graph_endpoint", "\"https://graph.microsoft.com\""),
        ],
    ),
    (
        "sync",
        &[
            ("enabled", "true"),
            ("interval", "\"5m\""),
            ("full_sync_interval", "\"7d\""),
            ("max_deletions", "500"),
            ("database", "\"/var/lib/entra-sync/entra-sync.db\""),
            (
                "metrics_file",
                "\"/var/lib/prometheus/node-exporter/entra-sync.prom\"",
            ),
            ("full_pass", "\"snapshot\""),
            ("max_concurrency", "8"),
        ],
    ),
    (
        "mapping",
        &[
            ("team", "\"Microsoft Entra ID Users\""),
            ("groups", "[\"Engineering\", \"Sales\"]"),
            ("nested", "true"),
            ("include_disabled", "false"),
        ],
    ),
];

pub(super) fn table_keys(table: &str) -> Option<&'static [KeyExample]> {
    SCHEMA
        .iter()
        .find(|(name, _)| *name == table)
        .map(|(_, keys)| *keys)
}

/// `key = example` for a dotted key, e.g. `interval = "5m"`.
pub(super) fn example_of(dotted: &str) -> Option<String> {
    let (table, key) = dotted.split_once('.')?;
    let (key, example) = table_keys(table)?.iter().find(|(k, _)| *k == key)?;
    Some(format!("{key} = {example}"))
}

pub(super) fn tables_list() -> String {
    SCHEMA
        .iter()
        .map(|(name, _)| format!("[{name}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// The raw document, mirroring the TOML. No Debug: it may hold the secret.
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) entra: Option<Spanned<RawEntra>>,
    pub(super) sync: Option<Spanned<RawSync>>,
    pub(super) mapping: Option<Spanned<RawMapping>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntra {
    pub(super) tenant_id: Option<Spanned<String>>,
    pub(super) client_id: Option<Spanned<String>>,
    pub(super) client_secret: Option<Spanned<String>>,
    pub(super) client_secret_file: Option<Spanned<String>>,
    /// Any TOML value, so that a quoted date or a date-time gets a precise message.
    pub(super) client_secret_expires: Option<Spanned<toml::Value>>,
    pub(super) client_certificate_file: Option<Spanned<String>>,
    pub(super) client_certificate_key_file: Option<Spanned<String>>,
    pub(super) managed_identity: Option<Spanned<bool>>,
    pub(super) managed_identity_client_id: Option<Spanned<String>>,
    pub(super) managed_identity_endpoint: Option<Spanned<String>>,
    pub(super) federated_token_file: Option<Spanned<String>>,
    pub(super) cloud: Option<Spanned<String>>,
    pub(super) authority_host: Option<Spanned<String>>,
    pub(super) graph_endpoint: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub(super) enabled: Option<Spanned<bool>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) full_sync_interval: Option<Spanned<String>>,
    /// An integer or a percentage string: any TOML value, for a precise message.
    pub(super) max_deletions: Option<Spanned<toml::Value>>,
    pub(super) database: Option<Spanned<String>>,
    pub(super) metrics_file: Option<Spanned<String>>,
    pub(super) full_pass: Option<Spanned<String>>,
    pub(super) max_concurrency: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMapping {
    pub(super) team: Option<Spanned<String>>,
    pub(super) groups: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) nested: Option<Spanned<bool>>,
    pub(super) include_disabled: Option<Spanned<bool>>,
}

// ---------------------------------------------------------------------------------------------
// Shape: known tables and keys only
// ---------------------------------------------------------------------------------------------

pub(super) fn sorted_entries<'t, 'i>(
    table: &'t DeTable<'i>,
) -> Vec<(
    &'t Spanned<std::borrow::Cow<'i, str>>,
    &'t Spanned<DeValue<'i>>,
)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

pub(super) fn check_shape(ctx: &Ctx<'_>, root: &DeTable<'_>) -> Result<(), ConfigError> {
    for (key, value) in sorted_entries(root) {
        let name: &str = key.get_ref();
        let Some(keys) = table_keys(name) else {
            return Err(ctx.invalid(key.span(), name, unknown_top_level(name, value.get_ref())));
        };
        let DeValue::Table(table) = value.get_ref() else {
            let is_array_of_tables = value
                .get_ref()
                .as_array()
                .is_some_and(|items| items.iter().any(|item| item.get_ref().is_table()));
            let message = if is_array_of_tables {
                format!(
                    "is written [[{name}]] (an array of tables); write [{name}] with single brackets"
                )
            } else {
                format!(
                    "must be a table but is {}; write a section header [{name}] with its keys on the lines below it",
                    with_article(value.get_ref().type_str())
                )
            };
            return Err(ctx.invalid(key.span(), name, message));
        };
        for (inner, _) in sorted_entries(table) {
            let inner_name: &str = inner.get_ref();
            if !keys.iter().any(|(k, _)| *k == inner_name) {
                return Err(ctx.invalid(
                    inner.span(),
                    &format!("{name}.{inner_name}"),
                    unknown_in_table(name, inner_name, keys),
                ));
            }
        }
    }
    Ok(())
}

/// "an integer", "a string".
pub(super) fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

pub(super) fn unknown_in_table(table: &str, key: &str, keys: &[KeyExample]) -> String {
    let valid = keys.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
    if let Some((home, _)) = SCHEMA
        .iter()
        .find(|(t, ks)| *t != table && ks.iter().any(|(k, _)| *k == key))
    {
        return format!(
            "unknown key in [{table}]; {key} belongs in the [{home}] table, so move it below the [{home}] header"
        );
    }
    match suggest(key, keys.iter().map(|(k, _)| *k)) {
        Some(near) => {
            format!("unknown key; did you mean {near}? (valid keys in [{table}]: {valid})")
        }
        None => format!("unknown key; valid keys in [{table}] are: {valid}"),
    }
}

pub(super) fn unknown_top_level(name: &str, value: &DeValue<'_>) -> String {
    let tables = tables_list();
    if let Some((home, _)) = SCHEMA
        .iter()
        .find(|(_, keys)| keys.iter().any(|(k, _)| *k == name))
    {
        return format!(
            "unknown top-level key; {name} belongs in the [{home}] table, so move it below the [{home}] header"
        );
    }
    let near = suggest(name, SCHEMA.iter().map(|(t, _)| *t));
    match (value.is_table(), near) {
        (true, Some(near)) => {
            format!("unknown table [{name}]; did you mean [{near}]? (valid tables: {tables})")
        }
        (true, None) => format!("unknown table [{name}]; valid tables are {tables}"),
        (false, _) => {
            format!("unknown top-level key; every key goes in one of the tables {tables}")
        }
    }
}

/// The candidate closest to `word` (at most two edits away, or equal ignoring case and `-`/`_`).
pub(super) fn suggest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let normal = word.to_ascii_lowercase().replace('-', "_");
    candidates
        .map(|c| (edit_distance(&normal, c), c))
        .filter(|(distance, c)| *distance == 0 || (*distance <= 2 && *distance < c.len() / 2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is fine in tests only
mod tests {
    use crate::config::test_support::*;

    // ---- errors: the shape of the document ----

    #[test]
    fn syntax_shape_and_type_errors() {
        check_errors(&[
            (
                "[entra]\ntenant_id = \"x\n",
                "config: /etc/entra-sync/config.toml:2: not valid TOML: invalid basic string, expected `\"`; fix the syntax on this line (see https://toml.io)",
            ),
            (
                "[entra\n",
                "config: /etc/entra-sync/config.toml:1: not valid TOML: unclosed table, expected `]`; fix the syntax on this line (see https://toml.io)",
            ),
            (
                &with_head("\n[sync]\ninterval = 5m\n"),
                "config: /etc/entra-sync/config.toml:6: not valid TOML: string values must be quoted, expected literal string; fix the syntax on this line (see https://toml.io)",
            ),
            (
                &with_head("tenant_id = \"fabrikam.com\"\n"),
                "config: /etc/entra-sync/config.toml:4: not valid TOML: duplicate key `tenant_id`; a key or table may appear only once, so delete or merge the repeated one",
            ),
            (
                &with_head("[sync]\n[sync]\n"),
                "config: /etc/entra-sync/config.toml:5: not valid TOML: duplicate key `sync`; a key or table may appear only once, so delete or merge the repeated one",
            ),
            (
                &with_head("foo = 1\n"),
                "config: /etc/entra-sync/config.toml:4: entra.foo: unknown key; valid keys in [entra] are: tenant_id, client_id, client_secret, client_secret_file, client_secret_expires, client_certificate_file, client_certificate_key_file, managed_identity, managed_identity_client_id, managed_identity_endpoint, federated_token_file, cloud, authority_host, graph_endpoint",
            ),
            (
                &with_head("[sync]\nintervall = \"5m\"\n"),
                "config: /etc/entra-sync/config.toml:5: sync.intervall: unknown key; did you mean interval? (valid keys in [sync]: enabled, interval, full_sync_interval, max_deletions, database, metrics_file, full_pass, max_concurrency)",
            ),
            (
                &with_head("[mapping]\nInclude-Disabled = true\n"),
                "config: /etc/entra-sync/config.toml:5: mapping.Include-Disabled: unknown key; did you mean include_disabled? (valid keys in [mapping]: team, groups, nested, include_disabled)",
            ),
            (
                &with_head("interval = \"5m\"\n"),
                "config: /etc/entra-sync/config.toml:4: entra.interval: unknown key in [entra]; interval belongs in the [sync] table, so move it below the [sync] header",
            ),
            (
                "tenant_id = \"contoso.onmicrosoft.com\"\n[entra]\n",
                "config: /etc/entra-sync/config.toml:1: tenant_id: unknown top-level key; tenant_id belongs in the [entra] table, so move it below the [entra] header",
            ),
            (
                "verbose = true\n",
                "config: /etc/entra-sync/config.toml:1: verbose: unknown top-level key; every key goes in one of the tables [entra], [sync], [mapping]",
            ),
            (
                &with_head("[synk]\nenabled = true\n"),
                "config: /etc/entra-sync/config.toml:4: synk: unknown table [synk]; did you mean [sync]? (valid tables: [entra], [sync], [mapping])",
            ),
            (
                &with_head("[logging]\nlevel = \"debug\"\n"),
                "config: /etc/entra-sync/config.toml:4: logging: unknown table [logging]; valid tables are [entra], [sync], [mapping]",
            ),
            (
                &with_head("[entra.extra]\nx = 1\n"),
                "config: /etc/entra-sync/config.toml:4: entra.extra: unknown key; valid keys in [entra] are: tenant_id, client_id, client_secret, client_secret_file, client_secret_expires, client_certificate_file, client_certificate_key_file, managed_identity, managed_identity_client_id, managed_identity_endpoint, federated_token_file, cloud, authority_host, graph_endpoint",
            ),
            (
                "[[entra]]\ntenant_id = \"contoso.onmicrosoft.com\"\n",
                "config: /etc/entra-sync/config.toml:1: entra: is written [[entra]] (an array of tables); write [entra] with single brackets",
            ),
            (
                "sync = 5\n",
                "config: /etc/entra-sync/config.toml:1: sync: must be a table but is an integer; write a section header [sync] with its keys on the lines below it",
            ),
            (
                "[entra]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = 12\n",
                "config: /etc/entra-sync/config.toml:3: entra.client_id: invalid type: integer `12`, expected a string; write it like client_id = \"11111111-2222-3333-4444-555555555555\"",
            ),
            (
                &with_head("[sync]\ninterval = 300\n"),
                "config: /etc/entra-sync/config.toml:5: sync.interval: invalid type: integer `300`, expected a string; write it like interval = \"5m\"",
            ),
            (
                &with_head("[sync]\nenabled = \"yes\"\n"),
                "config: /etc/entra-sync/config.toml:5: sync.enabled: invalid type: string \"yes\", expected a boolean; write it like enabled = true",
            ),
            (
                &with_head("[mapping]\ngroups = [\n  \"Engineering\",\n  5,\n]\n"),
                "config: /etc/entra-sync/config.toml:7: mapping.groups: invalid type: integer `5`, expected a string; write it like groups = [\"Engineering\", \"Sales\"]",
            ),
            (
                &with_head("[mapping]\ngroups = \"Engineering\"\n"),
                "config: /etc/entra-sync/config.toml:5: mapping.groups: invalid type: string \"Engineering\", expected a sequence; write it like groups = [\"Engineering\", \"Sales\"]",
            ),
            // Dotted keys at the top level are the same as a table.
            (
                "entra.tenant_id = \"contoso.onmicrosoft.com\"\nentra.client_id = \"abc\"\n",
                "config: /etc/entra-sync/config.toml:2: entra.client_id: \"abc\" is not a GUID; copy the Application (client) ID from the app registration's Overview page in the Microsoft Entra admin center",
            ),
        ]);
    }
}

//! Value checks: pure functions from a raw value to a checked one or a message (what is
//! wrong and how to fix it). The caller adds file, line and key.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::error::one_line;
use super::schema::with_article;
use crate::origin::{Origin, OriginError};

pub(super) const TENANT_HINT: &str = "use the Directory (tenant) ID from the app registration's Overview page in the Microsoft Entra admin center, \
     or a verified domain such as contoso.onmicrosoft.com";
pub(super) const DURATION_HINT: &str =
    "write a duration like \"30s\", \"5m\", \"1h 30m\" or \"7d\"";

/// An object id as Entra writes it: 8-4-4-4-12 hex digits, either case.
pub fn is_guid(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A DNS name: dot-separated labels of ASCII letters, digits and hyphens, 1-63 characters,
/// not starting or ending with a hyphen, 253 characters at most.
pub(super) fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub(super) fn validate_tenant(tenant: &str) -> Result<String, String> {
    if tenant.trim().is_empty() {
        return Err(format!("is empty; {TENANT_HINT}"));
    }
    let lower = tenant.to_ascii_lowercase();
    if ["common", "organizations", "consumers"].contains(&lower.as_str()) {
        return Err(format!(
            "{tenant:?} is a multi-tenant alias, but client credentials needs a tenant-specific authority; {TENANT_HINT}"
        ));
    }
    if is_guid(tenant) {
        return Ok(tenant.to_owned());
    }
    let all_numeric_tld = tenant
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    if tenant.contains('.') && is_dns_name(tenant) && !all_numeric_tld {
        return Ok(tenant.to_owned());
    }
    Err(format!(
        "{tenant:?} is neither a GUID nor a domain name; {TENANT_HINT}"
    ))
}

pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!(
            "{text:?} is not a duration ({}); {DURATION_HINT}",
            one_line(&e.to_string())
        )
    })
}

pub(super) fn parse_local_date(value: &toml::Value) -> Result<time::Date, String> {
    const HINT: &str = "write the date the secret expires (the Expires column under Certificates & secrets) \
                        without quotes, e.g. client_secret_expires = 2028-11-26";
    match value {
        toml::Value::Datetime(dt) => match (&dt.date, &dt.time, &dt.offset) {
            (Some(date), None, None) => time::Month::try_from(date.month)
                .ok()
                .and_then(|month| {
                    time::Date::from_calendar_date(i32::from(date.year), month, date.day).ok()
                })
                .ok_or_else(|| format!("{dt} is not a valid date; {HINT}")),
            _ => Err(format!(
                "{dt} is not a plain date (it has a time of day); {HINT}"
            )),
        },
        toml::Value::String(s) => Err(format!("{s:?} is a string, not a TOML date; {HINT}")),
        other => Err(format!(
            "is {}, not a TOML date; {HINT}",
            with_article(other.type_str())
        )),
    }
}

/// Parses a full endpoint URL `scheme://host[:port]/path` (the managed-identity token
/// endpoint) into its normal form. Like [`parse_origin`] for the origin, except that plain
/// http is also allowed for the link-local IMDS address 169.254.169.254; no query or fragment.
pub(super) fn parse_endpoint(raw: &str, example: &str) -> Result<String, String> {
    let shape = format!("give a URL like \"{example}\"");
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(format!("{raw:?} is not a URL; {shape}"));
    };
    if rest.contains(['?', '#']) {
        return Err(format!("{raw:?} has a query or fragment; {shape}"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{raw:?} contains whitespace; {shape}"));
    }
    let link_local = scheme.eq_ignore_ascii_case("http")
        && authority
            .split(':')
            .next()
            .is_some_and(|host| host == "169.254.169.254");
    let origin = if link_local {
        // parse_origin refuses http for non-loopback hosts; IMDS is plain http by design.
        parse_origin(&format!("https://{authority}"), example, "")
            .map(|o| o.replacen("https://", "http://", 1))?
    } else {
        parse_origin(&format!("{scheme}://{authority}"), example, "")?
    };
    let path = if path.is_empty() { "/" } else { path };
    Ok(format!("{origin}{path}"))
}

/// Parses a bare origin `scheme://host[:port]` (one trailing `/` allowed) into its normal form
/// (`Origin`'s `Display`: lower-case scheme and host, no default port, no trailing slash).
/// The parsing is `Origin::parse_bare`, the type the Graph client compares links with; this
/// adds the checks a configured endpoint needs (a real host name, http only for loopback)
/// and messages that say how to fix the value.
pub(super) fn parse_origin(raw: &str, example: &str, path_note: &str) -> Result<String, String> {
    let shape = "give only scheme://host[:port]";
    if raw.is_empty() {
        return Err(format!(
            "is empty; remove the key to use the cloud's default, or give an origin like \"{example}\""
        ));
    }
    let Some((_, rest)) = raw.split_once("://") else {
        return Err(format!("{raw:?} is not a URL; {shape}, e.g. \"{example}\""));
    };
    // Userinfo may hold a password: refused before anything echoes the value.
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err(format!(
            "contains a user name or password (user@host); credentials never go in the URL: {shape}, e.g. \"{example}\""
        ));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{raw:?} contains whitespace; {shape}, e.g. \"{example}\""
        ));
    }
    if !authority.is_ascii() {
        return Err(format!(
            "{raw:?} has a non-ASCII host; write it in its punycode (xn--) form"
        ));
    }
    if rest.contains('#') {
        return Err(format!(
            "{raw:?} has a query or fragment; {shape}, e.g. \"{example}\""
        ));
    }
    // Messages for the shapes the URL parser only calls invalid.
    if authority.split(':').next().is_none_or(str::is_empty) {
        return Err(format!("{raw:?} has no host; {shape}, e.g. \"{example}\""));
    }
    if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((_, after)) = bracketed.split_once(']') else {
            return Err(format!(
                "{raw:?} has an unclosed IPv6 address (missing ']'); {shape}"
            ));
        };
        if !after.is_empty() && !after.starts_with(':') {
            return Err(format!(
                "{raw:?} has {after:?} after the IPv6 address; {shape}"
            ));
        }
    }
    let origin = Origin::parse_bare(raw).map_err(|e| match e {
        OriginError::Scheme(scheme) => {
            format!("{raw:?} has scheme {scheme:?}; use https://, e.g. \"{example}\"")
        }
        OriginError::NoHost => format!("{raw:?} has no host; {shape}, e.g. \"{example}\""),
        OriginError::UserInfo => format!(
            "contains a user name or password (user@host); credentials never go in the URL: {shape}, e.g. \"{example}\""
        ),
        OriginError::Port(port) => format!(
            "{raw:?} has port {port:?}, which is not a number from 1 to 65535; {shape}"
        ),
        OriginError::Path(path) => {
            format!("{raw:?} has a path ({path:?}); {shape}, e.g. \"{example}\"{path_note}")
        }
        OriginError::Query => {
            format!("{raw:?} has a query or fragment; {shape}, e.g. \"{example}\"")
        }
        OriginError::NotAUrl => {
            format!("{raw:?} is not a valid URL; {shape}, e.g. \"{example}\"")
        }
    })?;
    let host = origin.host();
    if let Some(inside) = host.strip_prefix('[') {
        let inside = inside.trim_end_matches(']');
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "{raw:?}: [{inside}] is not a valid IPv6 address; {shape}"
            ));
        }
    } else if host
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        if host.parse::<Ipv4Addr>().is_err() {
            return Err(format!(
                "{raw:?}: {host:?} is not a valid IPv4 address; {shape}"
            ));
        }
    } else if !is_dns_name(host) {
        return Err(format!(
            "{raw:?}: {host:?} is not a valid host name (letters, digits, hyphens and dots only); {shape}, e.g. \"{example}\""
        ));
    }
    if !origin.is_https() && !origin.is_loopback() {
        let port = if origin.port() == 80 {
            String::new()
        } else {
            format!(":{}", origin.port())
        };
        return Err(format!(
            "{raw:?} uses plain http, which is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]); use https://{host}{port}"
        ));
    }
    Ok(origin.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is fine in tests only
mod tests {
    use crate::config::test_support::*;
    use crate::config::*;

    // ---- errors: values ----

    #[test]
    fn tenant_and_client_rules() {
        let tenant =
            |value: &str| format!("[entra]\ntenant_id = {value:?}\nclient_id = \"{CLIENT}\"\n");
        let hint = "use the Directory (tenant) ID from the app registration's Overview page in the Microsoft Entra admin center, or a verified domain such as contoso.onmicrosoft.com";
        let cases = [
            (
                "common",
                format!(
                    "\"common\" is a multi-tenant alias, but client credentials needs a tenant-specific authority; {hint}"
                ),
            ),
            (
                "Organizations",
                format!(
                    "\"Organizations\" is a multi-tenant alias, but client credentials needs a tenant-specific authority; {hint}"
                ),
            ),
            (
                "consumers",
                format!(
                    "\"consumers\" is a multi-tenant alias, but client credentials needs a tenant-specific authority; {hint}"
                ),
            ),
            (
                "contoso",
                format!("\"contoso\" is neither a GUID nor a domain name; {hint}"),
            ),
            ("", format!("is empty; {hint}")),
            (
                "contoso..com",
                format!("\"contoso..com\" is neither a GUID nor a domain name; {hint}"),
            ),
            (
                "contoso.com.",
                format!("\"contoso.com.\" is neither a GUID nor a domain name; {hint}"),
            ),
            (
                "-contoso.com",
                format!("\"-contoso.com\" is neither a GUID nor a domain name; {hint}"),
            ),
            (
                "contoso_x.com",
                format!("\"contoso_x.com\" is neither a GUID nor a domain name; {hint}"),
            ),
            (
                "10.0.0.1",
                format!("\"10.0.0.1\" is neither a GUID nor a domain name; {hint}"),
            ),
            (
                " contoso.com",
                format!("\" contoso.com\" is neither a GUID nor a domain name; {hint}"),
            ),
            (
                "https://login.microsoftonline.com/contoso.com",
                format!(
                    "\"https://login.microsoftonline.com/contoso.com\" is neither a GUID nor a domain name; {hint}"
                ),
            ),
            (
                "1234567-aaaa-bbbb-cccc-dddddddddddd",
                format!(
                    "\"1234567-aaaa-bbbb-cccc-dddddddddddd\" is neither a GUID nor a domain name; {hint}"
                ),
            ),
        ];
        let long_label = format!("{}.com", "a".repeat(64));
        let mut owned: Vec<(String, String)> = cases
            .iter()
            .map(|(value, message)| {
                (
                    tenant(value),
                    format!("config: {P}:2: entra.tenant_id: {message}"),
                )
            })
            .collect();
        owned.push((
            tenant(&long_label),
            format!("config: {P}:2: entra.tenant_id: {long_label:?} is neither a GUID nor a domain name; {hint}"),
        ));
        let client_hint = "copy the Application (client) ID from the app registration's Overview page in the Microsoft Entra admin center";
        for bad in [
            "abc",
            "",
            "11111111222233334444555555555555",
            "{11111111-2222-3333-4444-555555555555}",
            "11111111-2222-3333-4444-55555555555g",
        ] {
            owned.push((
                format!("[entra]\ntenant_id = \"{TENANT}\"\nclient_id = {bad:?}\n"),
                format!("config: {P}:3: entra.client_id: {bad:?} is not a GUID; {client_hint}"),
            ));
        }
        owned.push((
            "[entra]\ntenant_id = \"AAAAAAAA-2222-3333-4444-555555555555\"\nclient_id = \"aaaaaaaa-2222-3333-4444-555555555555\"\n".to_owned(),
            format!("config: {P}:3: entra.client_id: \"aaaaaaaa-2222-3333-4444-555555555555\" is the tenant ID, not the application's ID; {client_hint}"),
        ));
        let cases: Vec<(&str, &str)> = owned
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        check_errors(&cases);

        // Accepted forms.
        for good in [
            "contoso.onmicrosoft.com",
            "Contoso.COM",
            "a-b.c-d.example",
            "6f1b8c3e-0000-4000-8000-000000000001",
            "6F1B8C3E-0000-4000-8000-00000000000A",
            "xn--bcher-kva.example",
        ] {
            assert_eq!(ok(&tenant(good)).entra.tenant_id, good);
        }
    }

    #[test]
    fn cloud_and_endpoints() {
        let e = |rest: &str| err(&with_head(rest));
        assert_eq!(
            e("cloud = \"azure\"\n"),
            "config: /etc/entra-sync/config.toml:4: entra.cloud: \"azure\" is not a known cloud; use one of global, usgov, usgov-dod, china (global unless the tenant is in a US Government or China cloud)"
        );
        for (name, cloud, login, graph) in [
            (
                "global",
                Cloud::Global,
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com",
            ),
            (
                "usgov",
                Cloud::UsGov,
                "https://login.microsoftonline.us",
                "https://graph.microsoft.us",
            ),
            (
                "USGov-DoD",
                Cloud::UsGovDod,
                "https://login.microsoftonline.us",
                "https://dod-graph.microsoft.us",
            ),
            (
                "china",
                Cloud::China,
                "https://login.partner.microsoftonline.cn",
                "https://microsoftgraph.chinacloudapi.cn",
            ),
        ] {
            let config = ok(&with_head(&format!("cloud = {name:?}\n")));
            assert_eq!(config.entra.cloud, cloud);
            assert_eq!(config.entra.authority_host, login);
            assert_eq!(config.entra.graph_endpoint, graph);
            assert_eq!(cloud.to_string(), name.to_ascii_lowercase());
            assert_eq!(Cloud::from_name(&cloud.to_string()), Some(cloud));
        }
        // An override wins over the cloud's host, for that host only.
        let config = ok(&with_head(
            "cloud = \"usgov\"\ngraph_endpoint = \"https://graph.example.test:8443/\"\n",
        ));
        assert_eq!(
            config.entra.authority_host,
            "https://login.microsoftonline.us"
        );
        assert_eq!(
            config.entra.graph_endpoint,
            "https://graph.example.test:8443"
        );
        // The token's audience stays the cloud's Graph resource.
        assert_eq!(config.entra.scope(), "https://graph.microsoft.us/.default");
        assert_eq!(
            config.entra.token_url(),
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
    }

    #[test]
    fn endpoint_normal_forms() {
        for (given, stored) in [
            ("https://graph.microsoft.com", "https://graph.microsoft.com"),
            (
                "https://graph.microsoft.com/",
                "https://graph.microsoft.com",
            ),
            ("HTTPS://Graph.Microsoft.COM", "https://graph.microsoft.com"),
            // The normal form is Origin's: no default port.
            ("https://graph.example:0443", "https://graph.example"),
            ("https://graph.example:443", "https://graph.example"),
            ("https://10.1.2.3:8443", "https://10.1.2.3:8443"),
            ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
            // http only for loopback
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://LOCALHOST/", "http://localhost"),
            ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
            ("http://127.45.6.7", "http://127.45.6.7"),
            ("http://[::1]:9000", "http://[::1]:9000"),
            ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
        ] {
            let config = ok(&with_head(&format!(
                "graph_endpoint = {given:?}\nauthority_host = {given:?}\n"
            )));
            assert_eq!(
                config.entra.graph_endpoint, stored,
                "graph_endpoint = {given:?}"
            );
            assert_eq!(
                config.entra.authority_host, stored,
                "authority_host = {given:?}"
            );
        }
    }

    #[test]
    fn endpoint_errors() {
        let shape = "give only scheme://host[:port]";
        let ex = "\"https://graph.microsoft.com\"";
        let cases: Vec<(&str, String)> = vec![
            ("graph.microsoft.com", format!("\"graph.microsoft.com\" is not a URL; {shape}, e.g. {ex}")),
            ("", format!("is empty; remove the key to use the cloud's default, or give an origin like {ex}")),
            ("ftp://graph.microsoft.com", format!("\"ftp://graph.microsoft.com\" has scheme \"ftp\"; use https://, e.g. {ex}")),
            ("https://", format!("\"https://\" has no host; {shape}, e.g. {ex}")),
            ("https://:443", format!("\"https://:443\" has no host; {shape}, e.g. {ex}")),
            ("https://graph.microsoft.com/v1.0", format!("\"https://graph.microsoft.com/v1.0\" has a path (\"/v1.0\"); {shape}, e.g. {ex} (entra-sync adds the API version itself)")),
            ("https://graph.microsoft.com//", format!("\"https://graph.microsoft.com//\" has a path (\"//\"); {shape}, e.g. {ex} (entra-sync adds the API version itself)")),
            ("https://graph.microsoft.com?x=1", format!("\"https://graph.microsoft.com?x=1\" has a query or fragment; {shape}, e.g. {ex}")),
            ("https://graph.microsoft.com/#top", format!("\"https://graph.microsoft.com/#top\" has a query or fragment; {shape}, e.g. {ex}")),
            ("https://admin:hunter2@graph.microsoft.com", format!("contains a user name or password (user@host); credentials never go in the URL: {shape}, e.g. {ex}")),
            ("https://graph.microsoft.com:0", format!("\"https://graph.microsoft.com:0\" has port \"0\", which is not a number from 1 to 65535; {shape}")),
            ("https://graph.microsoft.com:65536", format!("\"https://graph.microsoft.com:65536\" has port \"65536\", which is not a number from 1 to 65535; {shape}")),
            ("https://graph.microsoft.com:", format!("\"https://graph.microsoft.com:\" has port \"\", which is not a number from 1 to 65535; {shape}")),
            ("https://graph.microsoft.com:+80", format!("\"https://graph.microsoft.com:+80\" has port \"+80\", which is not a number from 1 to 65535; {shape}")),
            ("https://graph_api.example", format!("\"https://graph_api.example\": \"graph_api.example\" is not a valid host name (letters, digits, hyphens and dots only); {shape}, e.g. {ex}")),
            ("https://graph..example", format!("\"https://graph..example\": \"graph..example\" is not a valid host name (letters, digits, hyphens and dots only); {shape}, e.g. {ex}")),
            ("https://gräph.example", "\"https://gräph.example\" has a non-ASCII host; write it in its punycode (xn--) form".to_owned()),
            ("https://999.1.1.1", format!("\"https://999.1.1.1\": \"999.1.1.1\" is not a valid IPv4 address; {shape}")),
            ("https://[::1", format!("\"https://[::1\" has an unclosed IPv6 address (missing ']'); {shape}")),
            ("https://[zz::1]", format!("\"https://[zz::1]\": [zz::1] is not a valid IPv6 address; {shape}")),
            ("https://[::1]x", format!("\"https://[::1]x\" has \"x\" after the IPv6 address; {shape}")),
            (" https://graph.microsoft.com", format!("\" https://graph.microsoft.com\" contains whitespace; {shape}, e.g. {ex}")),
            ("https://graph.microsoft.com ", format!("\"https://graph.microsoft.com \" contains whitespace; {shape}, e.g. {ex}")),
            ("http://graph.microsoft.com", "\"http://graph.microsoft.com\" uses plain http, which is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]); use https://graph.microsoft.com".to_owned()),
            ("http://10.0.0.1:8080", "\"http://10.0.0.1:8080\" uses plain http, which is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]); use https://10.0.0.1:8080".to_owned()),
            ("http://[2001:db8::1]", "\"http://[2001:db8::1]\" uses plain http, which is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]); use https://[2001:db8::1]".to_owned()),
            ("http://localhost.evil.example", "\"http://localhost.evil.example\" uses plain http, which is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]); use https://localhost.evil.example".to_owned()),
            ("http://128.0.0.1", "\"http://128.0.0.1\" uses plain http, which is allowed only for loopback hosts (localhost, 127.0.0.0/8, [::1]); use https://128.0.0.1".to_owned()),
        ];
        let owned: Vec<(String, String)> = cases
            .iter()
            .map(|(value, message)| {
                (
                    with_head(&format!("graph_endpoint = {value:?}\n")),
                    format!("config: {P}:4: entra.graph_endpoint: {message}"),
                )
            })
            .collect();
        let cases: Vec<(&str, &str)> = owned
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        check_errors(&cases);
        // The password is not echoed.
        assert!(
            !err(&with_head(
                "graph_endpoint = \"https://admin:hunter2@graph.microsoft.com\"\n"
            ))
            .contains("hunter2")
        );
        // authority_host has its own note about paths.
        assert_eq!(
            err(&with_head(
                "authority_host = \"https://login.microsoftonline.com/contoso.onmicrosoft.com\"\n"
            )),
            "config: /etc/entra-sync/config.toml:4: entra.authority_host: \"https://login.microsoftonline.com/contoso.onmicrosoft.com\" has a path (\"/contoso.onmicrosoft.com\"); give only scheme://host[:port], e.g. \"https://login.microsoftonline.com\" (the tenant goes in entra.tenant_id)"
        );
    }

    #[test]
    fn secret_expiry() {
        let config = ok(&with_head("client_secret_expires = 2028-11-26\n"));
        let expires = time::macros::date!(2028 - 11 - 26);
        assert_eq!(config.entra.client_secret_expires, Some(expires));
        assert_eq!(
            config.secret_days_left(time::macros::date!(2028 - 11 - 16)),
            Some(10)
        );
        assert_eq!(config.secret_days_left(expires), Some(0));
        assert_eq!(
            config.secret_days_left(time::macros::date!(2028 - 12 - 01)),
            Some(-5)
        );
        assert_eq!(ok(HEAD).secret_days_left(expires), None);
        // Far in the future (API-created secrets): accepted without a warning.
        let config = ok(&with_head("client_secret_expires = 2099-01-01\n"));
        assert!(config.warnings.is_empty());

        let hint = "write the date the secret expires (the Expires column under Certificates & secrets) without quotes, e.g. client_secret_expires = 2028-11-26";
        check_errors(&[
            (
                &with_head("client_secret_expires = \"2028-11-26\"\n"),
                &format!(
                    "config: {P}:4: entra.client_secret_expires: \"2028-11-26\" is a string, not a TOML date; {hint}"
                ),
            ),
            (
                &with_head("client_secret_expires = 2028-11-26T10:00:00Z\n"),
                &format!(
                    "config: {P}:4: entra.client_secret_expires: 2028-11-26T10:00:00Z is not a plain date (it has a time of day); {hint}"
                ),
            ),
            (
                &with_head("client_secret_expires = 2028-11-26T10:00:00\n"),
                &format!(
                    "config: {P}:4: entra.client_secret_expires: 2028-11-26T10:00:00 is not a plain date (it has a time of day); {hint}"
                ),
            ),
            (
                &with_head("client_secret_expires = 10:00:00\n"),
                &format!(
                    "config: {P}:4: entra.client_secret_expires: 10:00:00 is not a plain date (it has a time of day); {hint}"
                ),
            ),
            (
                &with_head("client_secret_expires = 20281126\n"),
                &format!(
                    "config: {P}:4: entra.client_secret_expires: is an integer, not a TOML date; {hint}"
                ),
            ),
            (
                &with_head("client_secret_expires = 2028-02-30\n"),
                "config: /etc/entra-sync/config.toml:4: not valid TOML: invalid date, expected day between 01 and 29; fix the syntax on this line (see https://toml.io)",
            ),
        ]);
    }
}

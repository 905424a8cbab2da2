//! The origin of a URL: scheme, host and port, the unit a credential is bound to. The bearer
//! token goes only to the configured Graph origin and the client secret only to the configured
//! authority origin, so every link check compares `Origin`s.
//!
//! URLs are parsed with `ureq::http::Uri`, the type ureq itself parses a request URL into, so
//! what is checked is exactly what the request connects to: a string parser of our own could
//! read `https://graph.microsoft.com\@evil.example` or similar tricks differently.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ureq::http::Uri;

/// Scheme, host and port of an `http` or `https` URL. Two origins are equal when all three
/// are: the host compared case-insensitively (it is kept in lower case; IPv6 addresses in
/// their canonical form in brackets), an absent port as the scheme's default.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    https: bool,
    host: String,
    port: u16,
}

/// Why a URL has no usable origin. The variants carry only parts that are safe to show (never
/// user info, which may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("is not a URL")]
    NotAUrl,
    #[error("has scheme {0:?}, not https or http")]
    Scheme(String),
    #[error("has no host")]
    NoHost,
    #[error("contains a user name or password (user@host)")]
    UserInfo,
    #[error("has port {0:?}, which is not a number from 1 to 65535")]
    Port(String),
    #[error("has a path ({0:?})")]
    Path(String),
    #[error("has a query")]
    Query,
}

impl Origin {
    /// The origin of an absolute `http`/`https` URL (path and query allowed, as in a Graph
    /// link). URLs with user info are refused: a link never needs one, and it is where a
    /// look-alike host hides.
    pub fn parse(url: &str) -> Result<Origin, OriginError> {
        Origin::from_uri(&parse_uri(url)?)
    }

    /// A bare origin as configured, `scheme://host[:port]` with at most a trailing `/`.
    pub fn parse_bare(url: &str) -> Result<Origin, OriginError> {
        let uri = parse_uri(url)?;
        let origin = Origin::from_uri(&uri)?;
        if uri.query().is_some() {
            return Err(OriginError::Query);
        }
        // `Uri` reports "/" also when the URL has no path at all.
        let path = uri.path();
        if path != "/" {
            return Err(OriginError::Path(path.to_owned()));
        }
        Ok(origin)
    }

    /// The origin of a URI ureq is about to use.
    pub fn from_uri(uri: &Uri) -> Result<Origin, OriginError> {
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(s) => return Err(OriginError::Scheme(s.to_ascii_lowercase())),
            None => return Err(OriginError::NotAUrl),
        };
        let authority = uri.authority().ok_or(OriginError::NoHost)?;
        if authority.as_str().contains('@') {
            return Err(OriginError::UserInfo);
        }
        let host = normal_host(authority.host()).ok_or(OriginError::NoHost)?;
        let port = match explicit_port(authority.as_str()) {
            None if https => 443,
            None => 80,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
                _ => return Err(OriginError::Port(text.to_owned())),
            },
        };
        Ok(Origin { https, host, port })
    }

    /// `"https"` or `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host in lower case; an IPv6 address in brackets, e.g. `[::1]`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, the scheme's default when the URL gave none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `localhost`, `127.0.0.0/8` or `[::1]`: a host that never leaves this machine, so plain
    /// http is acceptable and no proxy is used.
    pub fn is_loopback(&self) -> bool {
        if self.host == "localhost" {
            return true;
        }
        if let Some(v6) = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
        {
            return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
        }
        self.host
            .parse::<Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
    }

    fn default_port(&self) -> u16 {
        if self.https { 443 } else { 80 }
    }
}

/// The normal form `scheme://host[:port]`, the port only when it is not the default. Joining a
/// path to it gives a URL (`format!("{origin}/v1.0/users")`).
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.host)?;
        if self.port != self.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

fn parse_uri(url: &str) -> Result<Uri, OriginError> {
    url.parse::<Uri>().map_err(|_| OriginError::NotAUrl)
}

/// The port as written after the host, if any. `Authority::port_u16` reads an out-of-range
/// port as "no port" (so 443); it must be refused instead.
fn explicit_port(authority: &str) -> Option<&str> {
    let after_host = &authority[authority.rfind(']').map_or(0, |i| i + 1)..];
    if authority.starts_with('[') && !after_host.is_empty() && !after_host.starts_with(':') {
        // `[::1]x`: whatever follows the address is no port; refused as one.
        return Some(after_host);
    }
    after_host.rsplit_once(':').map(|(_, port)| port)
}

fn normal_host(host: &str) -> Option<String> {
    if host.is_empty() {
        return None;
    }
    if let Some(inside) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return Some(match inside.parse::<Ipv6Addr>() {
            Ok(ip) => format!("[{ip}]"),
            Err(_) => host.to_ascii_lowercase(),
        });
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(url: &str) -> Origin {
        Origin::parse(url).unwrap()
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(
            o("https://graph.microsoft.com/v1.0/x?$a=b"),
            o("HTTPS://GRAPH.microsoft.com:443")
        );
        assert_ne!(
            o("https://graph.microsoft.com"),
            o("http://graph.microsoft.com")
        );
        assert_ne!(
            o("http://127.0.0.1:8080/v1.0"),
            o("http://127.0.0.1:8081/v1.0")
        );
        assert_ne!(
            o("https://graph.microsoft.com"),
            o("https://graph.microsoft.com.evil.example")
        );
        assert_ne!(
            o("https://graph.microsoft.com"),
            o("https://graph.microsoft.com:8443")
        );
        assert_eq!(o("http://[::1]:99/a").port(), 99);
        assert_eq!(o("http://[0:0:0:0:0:0:0:1]:99/a"), o("http://[::1]:99"));
        assert_eq!(o("https://graph.example:0443").port(), 443);
    }

    #[test]
    fn urls_without_a_usable_origin_are_refused() {
        let e = |url: &str| Origin::parse(url).unwrap_err();
        assert_eq!(
            e("https://user@graph.microsoft.com/"),
            OriginError::UserInfo
        );
        assert_eq!(
            e("https://graph.microsoft.com:pw@evil.example/"),
            OriginError::UserInfo
        );
        assert_eq!(
            e("ftp://graph.microsoft.com/"),
            OriginError::Scheme("ftp".into())
        );
        assert_eq!(e("/v1.0/users/delta"), OriginError::NotAUrl);
        assert_eq!(e("graph.microsoft.com"), OriginError::NotAUrl);
        for port in ["0", "65536", "", "+80", "99999999999"] {
            assert_eq!(
                e(&format!("https://graph.microsoft.com:{port}/")),
                OriginError::Port(port.into()),
                "{port}"
            );
        }
        assert_eq!(e("http://[::1]:x/"), OriginError::Port("x".into()));
        // Text glued to an IPv6 address is no port either (it used to read as "no port").
        assert_eq!(e("http://[::1]x/"), OriginError::Port("x".into()));
        assert_eq!(e("https://gräph.example/"), OriginError::NotAUrl);
        assert_eq!(e("https://graph.microsoft.com\n/"), OriginError::NotAUrl);
        assert_eq!(e(""), OriginError::NotAUrl);
    }

    #[test]
    fn bare_origins_have_no_path_or_query() {
        assert_eq!(
            Origin::parse_bare("https://Graph.Microsoft.COM/")
                .unwrap()
                .to_string(),
            "https://graph.microsoft.com"
        );
        assert_eq!(
            Origin::parse_bare("http://localhost:8080")
                .unwrap()
                .to_string(),
            "http://localhost:8080"
        );
        assert_eq!(
            Origin::parse_bare("https://graph.microsoft.com/v1.0"),
            Err(OriginError::Path("/v1.0".into()))
        );
        assert_eq!(
            Origin::parse_bare("https://graph.microsoft.com?x=1"),
            Err(OriginError::Query)
        );
    }

    #[test]
    fn display_is_the_normal_form() {
        assert_eq!(
            o("https://graph.microsoft.com:443/x").to_string(),
            "https://graph.microsoft.com"
        );
        assert_eq!(o("http://127.0.0.1:80").to_string(), "http://127.0.0.1");
        assert_eq!(o("https://[::1]:8443/").to_string(), "https://[::1]:8443");
        assert_eq!(o("http://[::1]/").host(), "[::1]");
        assert_eq!(o("https://x.example/").scheme(), "https");
    }

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://localhost:1",
            "http://LOCALHOST",
            "http://127.0.0.1:5000",
            "http://127.45.6.7",
            "http://[::1]:9000",
            "https://[0:0:0:0:0:0:0:1]",
        ] {
            assert!(o(url).is_loopback(), "{url}");
        }
        for url in [
            "https://graph.microsoft.com",
            "http://128.0.0.1",
            "http://localhost.evil.example",
            "http://[::2]",
            "http://10.0.0.1",
        ] {
            assert!(!o(url).is_loopback(), "{url}");
        }
    }
}

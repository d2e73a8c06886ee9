//! RFC 8414 authorization-server metadata: where an issuer publishes it.

/// The well-known URI suffix of RFC 8414 §3.
pub const WELL_KNOWN_SUFFIX: &str = "/.well-known/oauth-authorization-server";

/// Where `issuer`'s metadata is (RFC 8414 §3.1): the well-known suffix inserted between the
/// host and the issuer's path, a trailing `/` of the path dropped. `None` for an issuer that is
/// not an `http`/`https` URL, or that has a query or fragment (RFC 8414 §2).
///
/// Many servers also answer at the issuer with the suffix appended (the OpenID Connect
/// Discovery form); for an issuer without a path the two are the same URL.
///
/// ```
/// use keybound_core::metadata::well_known_url;
/// assert_eq!(
///     well_known_url("https://as.example").as_deref(),
///     Some("https://as.example/.well-known/oauth-authorization-server")
/// );
/// assert_eq!(
///     well_known_url("https://as.example/tenant").as_deref(),
///     Some("https://as.example/.well-known/oauth-authorization-server/tenant")
/// );
/// assert_eq!(well_known_url("as.example"), None);
/// ```
#[must_use]
pub fn well_known_url(issuer: &str) -> Option<String> {
    let (scheme, rest) = issuer.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http"))
        || rest.is_empty()
        || issuer.contains(['?', '#'])
    {
        return None;
    }
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if authority.is_empty() {
        return None;
    }
    let path = path.trim_end_matches('/');
    Some(format!("{scheme}://{authority}{WELL_KNOWN_SUFFIX}{path}"))
}

#[cfg(test)]
mod tests {
    use super::well_known_url;

    #[test]
    fn rfc8414_locations() {
        let root = "https://as.example/.well-known/oauth-authorization-server";
        assert_eq!(well_known_url("https://as.example").as_deref(), Some(root));
        assert_eq!(well_known_url("https://as.example/").as_deref(), Some(root));
        assert_eq!(
            well_known_url("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080/.well-known/oauth-authorization-server")
        );
        // RFC 8414 §3.1's own example.
        assert_eq!(
            well_known_url("https://example.com/issuer1").as_deref(),
            Some("https://example.com/.well-known/oauth-authorization-server/issuer1")
        );
        assert_eq!(
            well_known_url("https://as.example/a/b/").as_deref(),
            Some("https://as.example/.well-known/oauth-authorization-server/a/b")
        );
        for bad in [
            "as.example",
            "ftp://as.example",
            "https://",
            "https:///path",
            "https://as.example?x=1",
            "https://as.example#f",
        ] {
            assert_eq!(well_known_url(bad), None, "{bad}");
        }
    }
}

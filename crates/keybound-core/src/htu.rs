//! `htu`: the HTTP target URI a DPoP proof is bound to, normalised per standards §2.1
//! (RFC 9449 §4.3 item 9 with RFC 3986 §6.2.2 syntax-based and §6.2.3 scheme-based
//! normalisation). Query and fragment are dropped on both sides.

use std::fmt;

/// Longest URI accepted as an `htu`.
pub const MAX_HTU_LEN: usize = 4096;

/// Why a URI is not usable as an `htu`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HtuError {
    /// Not an absolute `http` or `https` URI.
    #[error("not an absolute http(s) URI")]
    NotAbsoluteHttp,
    /// A character that cannot appear in a URI, a bad percent-escape, or a bad port.
    #[error("the URI is malformed")]
    Malformed,
    /// Longer than [`MAX_HTU_LEN`].
    #[error("the URI is too long")]
    TooLong,
}

/// A normalised `htu`: `scheme://host[:port]/path`, with no query or fragment.
///
/// ```
/// use keybound_core::Htu;
/// let expected = Htu::parse("https://rs.example.com/api/res?x=1").unwrap();
/// let claim = Htu::parse("HTTPS://RS.EXAMPLE.COM:443/api/./%72es").unwrap();
/// assert_eq!(expected, claim);
/// assert_eq!(expected.as_str(), "https://rs.example.com/api/res");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Htu(String);

impl fmt::Debug for Htu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Htu({})", self.0)
    }
}

impl fmt::Display for Htu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` minus percent (handled separately) plus `/`: what a path may hold literally.
fn is_path_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        )
        || matches!(b, b':' | b'@' | b'/')
}

impl Htu {
    /// Parses and normalises `uri`.
    ///
    /// # Errors
    /// [`HtuError`] for relative URIs, other schemes, bad characters or escapes, or length.
    pub fn parse(uri: &str) -> Result<Self, HtuError> {
        if uri.len() > MAX_HTU_LEN {
            return Err(HtuError::TooLong);
        }
        // 2. drop fragment, then query.
        let uri = uri.split('#').next().unwrap_or_default();
        let uri = uri.split('?').next().unwrap_or_default();
        // 1. absolute http(s) URI; 3. lower-case scheme.
        let (scheme, rest) = uri.split_once("://").ok_or(HtuError::NotAbsoluteHttp)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => "443",
            "http" => "80",
            _ => return Err(HtuError::NotAbsoluteHttp),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let authority = normalise_authority(authority, default_port)?;
        // 6. empty path is "/"; 4. percent-encoding; 5. dot segments.
        let path = if path.is_empty() {
            "/".to_owned()
        } else {
            normalise_percent(path)?
        };
        let path = remove_dot_segments(&path);
        Ok(Self(format!("{scheme}://{authority}{path}")))
    }

    /// The normalised text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn normalise_authority(authority: &str, default_port: &str) -> Result<String, HtuError> {
    if authority.is_empty() || authority.contains('@') {
        return Err(HtuError::Malformed);
    }
    // IPv6 literal: "[...]" then optional ":port".
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or(HtuError::Malformed)?;
        if !inside
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(HtuError::Malformed);
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(HtuError::Malformed)?),
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(HtuError::Malformed);
        }
        (host.to_ascii_lowercase(), port)
    };
    match port {
        // §6.2.3: an empty port and the scheme's default port are dropped.
        None | Some("") => Ok(host),
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            let trimmed = p.trim_start_matches('0');
            let value: u32 = if trimmed.is_empty() {
                0
            } else {
                trimmed.parse().map_err(|_| HtuError::Malformed)?
            };
            if value > 65_535 {
                return Err(HtuError::Malformed);
            }
            if value.to_string() == default_port {
                Ok(host)
            } else {
                Ok(format!("{host}:{value}"))
            }
        }
        Some(_) => Err(HtuError::Malformed),
    }
}

/// Upper-cases percent-escape hex digits and decodes escapes of unreserved characters.
fn normalise_percent(path: &str) -> Result<String, HtuError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(HtuError::Malformed)?;
            let text = std::str::from_utf8(hex).map_err(|_| HtuError::Malformed)?;
            let value = u8::from_str_radix(text, 16).map_err(|_| HtuError::Malformed)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(HtuError::Malformed);
            }
            if is_unreserved(value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push_str(&text.to_ascii_uppercase());
            }
            i += 3;
        } else if is_path_char(b) {
            out.push(char::from(b));
            i += 1;
        } else {
            return Err(HtuError::Malformed);
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                output.pop();
                trailing_slash = i == last;
            }
            s => {
                output.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &output {
        out.push('/');
        out.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        Htu::parse(s).unwrap().0
    }

    #[test]
    fn dot_segments() {
        assert_eq!(n("https://a/b/c/./../../g"), "https://a/g");
        assert_eq!(n("https://a/b/."), "https://a/b/");
        assert_eq!(n("https://a/b/.."), "https://a/");
        assert_eq!(n("https://a/.."), "https://a/");
        assert_eq!(n("https://a/b//c"), "https://a/b//c");
    }

    #[test]
    fn reserved_escapes_stay_encoded_and_upper_case() {
        assert_eq!(n("https://a/x%2fy"), "https://a/x%2Fy");
        assert_ne!(n("https://a/x%2Fy"), n("https://a/x/y"));
        assert_eq!(n("https://a/%7e"), "https://a/~");
    }

    #[test]
    fn authority_forms() {
        assert_eq!(n("http://A.example:80"), "http://a.example/");
        assert_eq!(n("https://a.example:/x"), "https://a.example/x");
        assert_eq!(n("https://[::1]:8443/x"), "https://[::1]:8443/x");
        assert_eq!(n("https://a:0443/"), "https://a/");
        assert_eq!(Htu::parse("https://u@a/").unwrap_err(), HtuError::Malformed);
        assert_eq!(
            Htu::parse("https://a:99999/").unwrap_err(),
            HtuError::Malformed
        );
        assert_eq!(
            Htu::parse("ftp://a/").unwrap_err(),
            HtuError::NotAbsoluteHttp
        );
        assert_eq!(Htu::parse("https://a/ b").unwrap_err(), HtuError::Malformed);
        assert_eq!(
            Htu::parse("https://a/%zz").unwrap_err(),
            HtuError::Malformed
        );
        assert_eq!(
            Htu::parse("https://a/%+1").unwrap_err(),
            HtuError::Malformed
        );
    }
}

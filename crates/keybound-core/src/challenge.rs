//! `WWW-Authenticate` challenges for the `DPoP` and `Bearer` schemes (RFC 9449 §7.1,
//! RFC 6750 §3): building them at the RS and parsing them at the client.

use std::fmt;

use crate::alg::Algorithm;
use crate::error::ErrorCode;

/// Largest `WWW-Authenticate` value the parser accepts.
pub const MAX_CHALLENGE_LEN: usize = 8 * 1024;
const MAX_CHALLENGES: usize = 16;
const MAX_PARAMS: usize = 32;

/// An authentication scheme keybound speaks. Names compare case-insensitively (RFC 9110 §11.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `Bearer` (RFC 6750), also used for certificate-bound tokens (RFC 8705).
    Bearer,
    /// `DPoP` (RFC 9449).
    DPoP,
}

impl Scheme {
    /// The canonical spelling.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::DPoP => "DPoP",
        }
    }

    /// Recognises a scheme name in any case.
    ///
    /// ```
    /// use keybound_core::challenge::Scheme;
    /// assert_eq!(Scheme::from_name("dpop"), Some(Scheme::DPoP));
    /// assert_eq!(Scheme::from_name("bEARER"), Some(Scheme::Bearer));
    /// assert_eq!(Scheme::from_name("Basic"), None);
    /// ```
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Bearer, Self::DPoP]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

/// Whether `c` may appear in `error_description` and `scope` (RFC 6749 §5.2, RFC 6750 §3:
/// %x20-21 / %x23-5B / %x5D-7E): printable ASCII without `"` and `\`.
///
/// ```
/// use keybound_core::challenge::is_error_text_char;
/// assert!(is_error_text_char('a') && is_error_text_char(' '));
/// assert!(!is_error_text_char('"') && !is_error_text_char('\\') && !is_error_text_char('\n'));
/// ```
#[must_use]
pub fn is_error_text_char(c: char) -> bool {
    matches!(c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

/// Whether `value` is one `token68` (RFC 9110 §11.2): the syntax of a DPoP proof header and of
/// the credential after `DPoP ` or `Bearer `. A comma can never be part of one.
///
/// ```
/// use keybound_core::challenge::is_token68;
/// assert!(is_token68("a.b.c") && is_token68("abc=="));
/// assert!(!is_token68("") && !is_token68("a b") && !is_token68("a,b") && !is_token68("=="));
/// ```
#[must_use]
pub fn is_token68(value: &str) -> bool {
    let body = value.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| TOKEN68[usize::from(b)])
}

/// The bytes of RFC 9110 §11.2 `token68` before its `=` padding, as a table: every request
/// checks an access token and a proof of a kilobyte or more with it.
static TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// Keeps only [`is_error_text_char`] characters; anything else becomes a space.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if is_error_text_char(c) { c } else { ' ' })
        .collect()
}

/// A challenge to send in `WWW-Authenticate`.
///
/// ```
/// use keybound_core::{Algorithm, ErrorCode};
/// use keybound_core::challenge::{Challenge, Scheme};
/// let c = Challenge::new(Scheme::DPoP)
///     .error(ErrorCode::InvalidDpopProof)
///     .description("bad \"htu\"")
///     .algs(&[Algorithm::Es256, Algorithm::Ps256]);
/// assert_eq!(
///     c.to_string(),
///     r#"DPoP error="invalid_dpop_proof", error_description="bad  htu ", algs="ES256 PS256""#
/// );
/// assert_eq!(Challenge::new(Scheme::Bearer).to_string(), "Bearer");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    scheme: Scheme,
    realm: Option<String>,
    error: Option<ErrorCode>,
    description: Option<String>,
    scope: Option<String>,
    algs: Vec<Algorithm>,
}

impl Challenge {
    /// A challenge with no parameters (what a request without credentials gets).
    #[must_use]
    pub fn new(scheme: Scheme) -> Self {
        Self {
            scheme,
            realm: None,
            error: None,
            description: None,
            scope: None,
            algs: Vec::new(),
        }
    }

    /// Sets `realm`.
    #[must_use]
    pub fn realm(mut self, realm: &str) -> Self {
        self.realm = Some(sanitize(realm));
        self
    }

    /// Sets `error`.
    #[must_use]
    pub fn error(mut self, code: ErrorCode) -> Self {
        self.error = Some(code);
        self
    }

    /// Sets `error_description`; characters RFC 6750 forbids are replaced by spaces.
    #[must_use]
    pub fn description(mut self, text: &str) -> Self {
        self.description = Some(sanitize(text));
        self
    }

    /// Sets `scope` (for `insufficient_scope`).
    #[must_use]
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(sanitize(scope));
        self
    }

    /// Sets `algs` (DPoP only; ignored for Bearer).
    #[must_use]
    pub fn algs(mut self, algs: &[Algorithm]) -> Self {
        self.algs = algs.to_vec();
        self
    }

    /// The scheme.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme.name())?;
        let mut sep = " ";
        let mut param = |f: &mut fmt::Formatter<'_>, name: &str, value: &str| {
            let r = write!(f, "{sep}{name}=\"{value}\"");
            sep = ", ";
            r
        };
        if let Some(realm) = &self.realm {
            param(f, "realm", realm)?;
        }
        if let Some(error) = &self.error {
            param(f, "error", &sanitize(error.as_str()))?;
        }
        if let Some(d) = &self.description {
            param(f, "error_description", d)?;
        }
        if let Some(s) = &self.scope {
            param(f, "scope", s)?;
        }
        if self.scheme == Scheme::DPoP && !self.algs.is_empty() {
            let algs: Vec<&str> = self.algs.iter().map(|a| a.name()).collect();
            param(f, "algs", &algs.join(" "))?;
        }
        Ok(())
    }
}

/// Why a `WWW-Authenticate` value could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// Longer than [`MAX_CHALLENGE_LEN`], or too many challenges or parameters.
    #[error("the challenge is too large")]
    TooLarge,
    /// Not the RFC 9110 §11.6.1 syntax.
    #[error("the challenge is malformed")]
    Syntax,
}

/// A challenge received from a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedChallenge {
    scheme: String,
    token68: Option<String>,
    params: Vec<(String, String)>,
}

impl ParsedChallenge {
    /// The scheme name as received.
    #[must_use]
    pub fn scheme_name(&self) -> &str {
        &self.scheme
    }

    /// The scheme, if keybound knows it.
    #[must_use]
    pub fn scheme(&self) -> Option<Scheme> {
        Scheme::from_name(&self.scheme)
    }

    /// A parameter's value (names compare case-insensitively).
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error` parameter.
    #[must_use]
    pub fn error(&self) -> Option<ErrorCode> {
        self.param("error").map(ErrorCode::parse)
    }

    /// The `algs` parameter, split on spaces (unknown names are kept out).
    #[must_use]
    pub fn algs(&self) -> Vec<Algorithm> {
        self.param("algs")
            .unwrap_or_default()
            .split(' ')
            .filter_map(Algorithm::from_name)
            .collect()
    }

    /// A token68 credential-style challenge (e.g. `Negotiate abc==`), if that form was used.
    #[must_use]
    pub fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    /// token68 followed by OWS and then a comma or the end.
    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        while self.peek() == Some(b'=') {
            self.i += 1;
        }
        let end = self.i;
        self.skip_ws();
        if matches!(self.peek(), None | Some(b',')) {
            Some(String::from_utf8_lossy(&self.s[start..end]).into_owned())
        } else {
            self.i = start;
            None
        }
    }
    fn quoted(&mut self) -> Option<String> {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(String::from_utf8_lossy(&out).into_owned());
                }
                b'\\' => {
                    out.push(*self.s.get(self.i + 1)?);
                    self.i += 2;
                }
                b => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
    }
    /// Whether an `auth-param` (token BWS "=") starts here, without moving.
    fn at_param(&mut self) -> bool {
        let start = self.i;
        // A parameter needs a value after "=": "abc==" and "abc=" at the end are token68.
        let found = self.token().is_some() && {
            self.skip_ws();
            self.peek() == Some(b'=') && {
                self.i += 1;
                self.skip_ws();
                self.peek().is_some_and(|b| b == b'"' || is_tchar(b))
            }
        };
        self.i = start;
        found
    }
}

/// Parses a `WWW-Authenticate` field value into its challenges (RFC 9110 §11.6.1).
///
/// ```
/// use keybound_core::challenge::{parse_challenges, Scheme};
/// use keybound_core::ErrorCode;
/// let all = parse_challenges(r#"dpop error="use_dpop_nonce", algs="ES256 EdDSA", Bearer realm="x""#).unwrap();
/// assert_eq!(all.len(), 2);
/// assert_eq!(all[0].scheme(), Some(Scheme::DPoP));
/// assert_eq!(all[0].error(), Some(ErrorCode::UseDpopNonce));
/// assert_eq!(all[1].param("REALM"), Some("x"));
/// ```
///
/// # Errors
/// [`ChallengeError`] if the value is malformed or over the limits.
pub fn parse_challenges(value: &str) -> Result<Vec<ParsedChallenge>, ChallengeError> {
    if value.len() > MAX_CHALLENGE_LEN {
        return Err(ChallengeError::TooLarge);
    }
    let mut c = Cursor {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out: Vec<ParsedChallenge> = Vec::new();
    loop {
        c.skip_ws_and_commas();
        if c.peek().is_none() {
            break;
        }
        if out.len() == MAX_CHALLENGES {
            return Err(ChallengeError::TooLarge);
        }
        let scheme = c.token().ok_or(ChallengeError::Syntax)?;
        let mut challenge = ParsedChallenge {
            scheme,
            token68: None,
            params: Vec::new(),
        };
        let had_space = matches!(c.peek(), Some(b' ' | b'\t'));
        c.skip_ws();
        if had_space && !matches!(c.peek(), None | Some(b',')) {
            if c.at_param() {
                loop {
                    if challenge.params.len() == MAX_PARAMS {
                        return Err(ChallengeError::TooLarge);
                    }
                    let name = c.token().ok_or(ChallengeError::Syntax)?;
                    c.skip_ws();
                    if c.peek() != Some(b'=') {
                        return Err(ChallengeError::Syntax);
                    }
                    c.i += 1;
                    c.skip_ws();
                    let value = if c.peek() == Some(b'"') {
                        c.quoted().ok_or(ChallengeError::Syntax)?
                    } else {
                        c.token().ok_or(ChallengeError::Syntax)?
                    };
                    challenge.params.push((name, value));
                    c.skip_ws();
                    match c.peek() {
                        None => break,
                        Some(b',') => {
                            c.skip_ws_and_commas();
                            if !c.at_param() {
                                break;
                            }
                        }
                        Some(_) => return Err(ChallengeError::Syntax),
                    }
                }
            } else {
                challenge.token68 = Some(c.token68().ok_or(ChallengeError::Syntax)?);
            }
        } else if !matches!(c.peek(), None | Some(b',')) {
            return Err(ChallengeError::Syntax);
        }
        out.push(challenge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token68_accepts_exactly_the_rfc_9110_characters_before_padding() {
        const EXTRA: &[u8] = b"-._~+/";
        for b in 0..=255u8 {
            let text = format!("a{}", char::from(b));
            let allowed = b.is_ascii_alphanumeric() || EXTRA.contains(&b) || b == b'=';
            assert_eq!(is_token68(&text), allowed, "byte {b:#04x}");
        }
        assert!(is_token68("ab=="));
        assert!(!is_token68("a=b"), "padding only at the end");
    }

    #[test]
    fn built_challenges_parse_back() {
        let built = Challenge::new(Scheme::DPoP)
            .error(ErrorCode::InsufficientScope)
            .scope("read write")
            .algs(&Algorithm::FAPI2);
        let parsed = parse_challenges(&built.to_string()).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].error(), Some(ErrorCode::InsufficientScope));
        assert_eq!(parsed[0].param("scope"), Some("read write"));
        assert_eq!(parsed[0].algs(), Algorithm::FAPI2.to_vec());
    }

    #[test]
    fn token68_and_bare_schemes() {
        let parsed = parse_challenges("Negotiate abc==, DPoP, Basic realm=\"a\\\"b\"").unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].token68(), Some("abc=="));
        assert_eq!(parsed[1].scheme(), Some(Scheme::DPoP));
        assert_eq!(parsed[2].param("realm"), Some("a\"b"));
    }

    #[test]
    fn malformed_values_are_errors() {
        assert_eq!(
            parse_challenges("DPoP error=@").unwrap_err(),
            ChallengeError::Syntax
        );
        // "error=" with no value is the token68 form, not a parameter.
        assert_eq!(
            parse_challenges("DPoP error=").unwrap()[0].token68(),
            Some("error=")
        );
        assert_eq!(
            parse_challenges("DPoP error=\"unterminated").unwrap_err(),
            ChallengeError::Syntax
        );
        assert_eq!(parse_challenges("=x").unwrap_err(), ChallengeError::Syntax);
        assert_eq!(
            parse_challenges("DPoP a=b c").unwrap_err(),
            ChallengeError::Syntax
        );
        assert_eq!(
            parse_challenges(&"x".repeat(MAX_CHALLENGE_LEN + 1)).unwrap_err(),
            ChallengeError::TooLarge
        );
    }

    #[test]
    fn descriptions_are_sanitised() {
        let c = Challenge::new(Scheme::Bearer).description("a\\b\"c\nd");
        assert_eq!(c.to_string(), r#"Bearer error_description="a b c d""#);
    }
}

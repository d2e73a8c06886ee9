//! Rule 1 of standards §1.2: exactly one `DPoP` header field line holding one token68.

use super::ProofError;
use crate::challenge::is_token68;

/// Takes every received `DPoP` header value (each field line, as bytes) and returns the proof if
/// there is exactly one line holding one token68. A comma can never be part of a token68, so
/// comma-joined proofs are rejected here too.
///
/// ```
/// use keybound_core::dpop::{single_dpop_header, ProofError};
/// assert_eq!(single_dpop_header([&b"a.b.c"[..]]), Ok("a.b.c"));
/// assert_eq!(single_dpop_header([&b"a.b.c"[..], b"d.e.f"]), Err(ProofError::MultipleProofs));
/// assert_eq!(single_dpop_header([&b"a.b.c, d.e.f"[..]]), Err(ProofError::HeaderSyntax));
/// assert_eq!(single_dpop_header(Vec::<&[u8]>::new()), Err(ProofError::Missing));
/// ```
///
/// # Errors
/// [`ProofError::Missing`], [`ProofError::MultipleProofs`], [`ProofError::HeaderSyntax`] or
/// [`ProofError::TooLarge`].
pub fn single_dpop_header<'a, I>(values: I) -> Result<&'a str, ProofError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut values = values.into_iter();
    let first = values.next().ok_or(ProofError::Missing)?;
    if values.next().is_some() {
        return Err(ProofError::MultipleProofs);
    }
    if first.len() > super::MAX_PROOF_LEN {
        return Err(ProofError::TooLarge);
    }
    let text = std::str::from_utf8(first).map_err(|_| ProofError::HeaderSyntax)?;
    let text = text.trim_matches([' ', '\t']);
    if is_token68(text) {
        Ok(text)
    } else {
        Err(ProofError::HeaderSyntax)
    }
}

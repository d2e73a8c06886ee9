//! Stateless DPoP nonces (RFC 9449 §8, §9): an HMAC over a time step, under a key ring.
//!
//! A nonce is `base64url(step ‖ tag)` where `step` is the 64-bit big-endian time step and `tag`
//! is the first 24 bytes of HMAC-SHA-256(secret, label ‖ purpose ‖ step). Every replica that
//! shares the secrets issues and accepts the same nonces with no shared state. The `purpose`
//! separates the AS's nonces from each RS's, so one server's nonce is refused by another
//! (standards §2.4, §5 #23). The previous secret stays accepted during a rotation.

use std::fmt;

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::UnixTime;
use crate::b64;

const LABEL: &[u8] = b"keybound/dpop-nonce/v1\0";
const TAG_LEN: usize = 24;
const NONCE_BYTES: usize = 8 + TAG_LEN;
/// Longest `nonce` claim value accepted before any cryptographic check.
pub const MAX_NONCE_LEN: usize = 256;
/// Shortest nonce secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// A `nonce` value: `1*NQCHAR` (RFC 6749 App. A), at most [`MAX_NONCE_LEN`] bytes.
///
/// ```
/// use keybound_core::Nonce;
/// assert!(Nonce::parse("eyJ7S_zG.eyJH0-Z.HX4w-7v").is_some());
/// assert!(Nonce::parse("has\"quote").is_none());
/// assert!(Nonce::parse("").is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Nonce(String);

impl Nonce {
    /// Accepts `text` if it is a syntactically valid nonce.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let ok = !text.is_empty()
            && text.len() <= MAX_NONCE_LEN
            && text
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        ok.then(|| Self(text.to_owned()))
    }

    /// The nonce text, as sent in `DPoP-Nonce` and the `nonce` claim.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.0)
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret from which nonces are derived. Its `Debug` output is redacted.
pub struct NonceSecret(Zeroizing<Vec<u8>>);

impl NonceSecret {
    /// Wraps secret bytes; `None` if shorter than [`MIN_SECRET_LEN`].
    #[must_use]
    pub fn new(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= MIN_SECRET_LEN).then(|| Self(Zeroizing::new(bytes.to_vec())))
    }
}

impl fmt::Debug for NonceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceSecret([redacted])")
    }
}

/// Why a nonce was not accepted. Both map to `use_dpop_nonce` (with a fresh nonce).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceError {
    /// Not a nonce this server issued under any current secret and purpose.
    #[error("the nonce was not issued by this server")]
    Unknown,
    /// Issued by this server, but outside the acceptance window.
    #[error("the nonce has expired")]
    Expired,
}

/// Issues and checks nonces for one purpose (e.g. `"as"` or an RS's origin).
pub struct NonceKeyRing {
    purpose: Vec<u8>,
    current: hmac::Key,
    previous: Option<hmac::Key>,
    step_secs: u64,
    accepted_steps: u64,
}

impl fmt::Debug for NonceKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceKeyRing")
            .field("purpose", &String::from_utf8_lossy(&self.purpose))
            .field("step_secs", &self.step_secs)
            .field("accepted_steps", &self.accepted_steps)
            .finish_non_exhaustive()
    }
}

impl NonceKeyRing {
    /// Default time step: 60 s.
    pub const DEFAULT_STEP_SECS: u64 = 60;
    /// Default number of consecutive steps accepted (the current one included): 5.
    pub const DEFAULT_ACCEPTED_STEPS: u64 = 5;

    /// A key ring with the default step and window. `previous` is the secret being rotated out.
    ///
    /// ```
    /// use keybound_core::{NonceKeyRing, NonceSecret, UnixTime};
    /// let ring = NonceKeyRing::new("as", &NonceSecret::new(&[7; 32]).unwrap(), None);
    /// let now = UnixTime::from_secs(1_700_000_000);
    /// let nonce = ring.issue(now);
    /// assert!(ring.check(nonce.as_str(), now.saturating_add(200)).is_ok());
    /// assert!(ring.check(nonce.as_str(), now.saturating_add(400)).is_err());
    /// ```
    #[must_use]
    pub fn new(purpose: &str, current: &NonceSecret, previous: Option<&NonceSecret>) -> Self {
        let key = |s: &NonceSecret| hmac::Key::new(hmac::HMAC_SHA256, &s.0);
        Self {
            purpose: purpose.as_bytes().to_vec(),
            current: key(current),
            previous: previous.map(key),
            step_secs: Self::DEFAULT_STEP_SECS,
            accepted_steps: Self::DEFAULT_ACCEPTED_STEPS,
        }
    }

    /// Sets the time step (at least 1 s) and how many consecutive steps are accepted (at least 1).
    #[must_use]
    pub fn with_window(mut self, step_secs: u64, accepted_steps: u64) -> Self {
        self.step_secs = step_secs.max(1);
        self.accepted_steps = accepted_steps.max(1);
        self
    }

    fn tag(&self, key: &hmac::Key, step: u64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(LABEL);
        ctx.update(&self.purpose);
        ctx.update(&[0]);
        ctx.update(&step.to_be_bytes());
        ctx.sign()
    }

    /// The nonce for the time step containing `now`, under the current secret.
    #[must_use]
    pub fn issue(&self, now: UnixTime) -> Nonce {
        let step = now.as_secs() / self.step_secs;
        let mut raw = [0u8; NONCE_BYTES];
        raw[..8].copy_from_slice(&step.to_be_bytes());
        raw[8..].copy_from_slice(&self.tag(&self.current, step).as_ref()[..TAG_LEN]);
        Nonce(b64::encode(&raw))
    }

    /// Checks a received nonce in constant time against the current and previous secrets.
    ///
    /// # Errors
    /// [`NonceError::Unknown`] or [`NonceError::Expired`].
    pub fn check(&self, nonce: &str, now: UnixTime) -> Result<(), NonceError> {
        if nonce.len() != 43 {
            return Err(NonceError::Unknown);
        }
        let raw = b64::decode(nonce).map_err(|_| NonceError::Unknown)?;
        let (step_bytes, tag) = raw.split_at(8);
        let mut be = [0u8; 8];
        be.copy_from_slice(step_bytes);
        let step = u64::from_be_bytes(be);
        let authentic = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .any(|key| {
                let expected = self.tag(key, step);
                aws_lc_rs::constant_time::verify_slices_are_equal(
                    &expected.as_ref()[..TAG_LEN],
                    tag,
                )
                .is_ok()
            });
        if !authentic {
            return Err(NonceError::Unknown);
        }
        let now_step = now.as_secs() / self.step_secs;
        if step > now_step || now_step - step >= self.accepted_steps {
            return Err(NonceError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> NonceSecret {
        NonceSecret::new(&[b; 32]).unwrap()
    }

    #[test]
    fn previous_secret_is_accepted_during_rotation() {
        let old = NonceKeyRing::new("as", &secret(1), None);
        let rotated = NonceKeyRing::new("as", &secret(2), Some(&secret(1)));
        let fresh = NonceKeyRing::new("as", &secret(2), None);
        let now = UnixTime::from_secs(1_000_000);
        let n = old.issue(now);
        assert_eq!(rotated.check(n.as_str(), now), Ok(()));
        assert_eq!(fresh.check(n.as_str(), now), Err(NonceError::Unknown));
    }

    #[test]
    fn purposes_are_separate() {
        let as_ring = NonceKeyRing::new("as", &secret(1), None);
        let rs_ring = NonceKeyRing::new("rs", &secret(1), None);
        let now = UnixTime::from_secs(1_000_000);
        assert_eq!(
            rs_ring.check(as_ring.issue(now).as_str(), now),
            Err(NonceError::Unknown)
        );
    }

    #[test]
    fn window_bounds() {
        let ring = NonceKeyRing::new("as", &secret(1), None).with_window(60, 5);
        let t = UnixTime::from_secs(60 * 1000);
        let n = ring.issue(t);
        assert_eq!(
            ring.check(n.as_str(), t.saturating_add(4 * 60 + 59)),
            Ok(())
        );
        assert_eq!(
            ring.check(n.as_str(), t.saturating_add(5 * 60)),
            Err(NonceError::Expired)
        );
        assert_eq!(
            ring.check(n.as_str(), t.saturating_sub(1)),
            Err(NonceError::Expired)
        );
    }

    #[test]
    fn forged_and_short_secrets_are_refused() {
        let ring = NonceKeyRing::new("as", &secret(1), None);
        let now = UnixTime::from_secs(1_000_000);
        let mut n = ring.issue(now).as_str().to_owned();
        let last = if n.ends_with('A') { "B" } else { "A" };
        n.replace_range(42.., last);
        assert_eq!(ring.check(&n, now), Err(NonceError::Unknown));
        assert!(NonceSecret::new(&[0; 31]).is_none());
        assert_eq!(format!("{:?}", secret(9)), "NonceSecret([redacted])");
    }
}

//! The verified-token cache: a repeated access token costs a hash lookup, not a signature check
//! (or, in introspection mode, not a round trip to the AS).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keybound_core::{AccessTokenClaims, UnixTime};

const SHARDS: usize = 16;

type Shard = Mutex<HashMap<[u8; 32], (Arc<AccessTokenClaims>, u64)>>;

/// Verified tokens by SHA-256 of the token string, each kept until a time no later than its
/// `exp` (a JWT's `exp`; for an introspected token, also no longer than the introspection TTL).
#[derive(Debug)]
pub(crate) struct TokenCache {
    shards: Vec<Shard>,
    per_shard: usize,
}

impl TokenCache {
    pub(crate) fn new(max_entries: usize) -> Self {
        let per_shard = max_entries.div_ceil(SHARDS);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
        }
    }

    fn shard(&self, key: &[u8; 32]) -> Option<&Shard> {
        self.shards.get(usize::from(key[0]) % SHARDS)
    }

    /// The cached claims, if present and still valid at `now`.
    pub(crate) fn get(&self, key: &[u8; 32], now: UnixTime) -> Option<Arc<AccessTokenClaims>> {
        let mut map = self.shard(key)?.lock().ok()?;
        match map.get(key) {
            Some((claims, until)) if *until > now.as_secs() && claims.exp > now.as_secs() => {
                Some(claims.clone())
            }
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Caches verified claims until `until` (capped at the token's `exp`). When the shard is
    /// full, expired entries go; if it is still full, the token is simply not cached.
    pub(crate) fn insert(
        &self,
        key: [u8; 32],
        claims: Arc<AccessTokenClaims>,
        until: u64,
        now: UnixTime,
    ) {
        let Some(Ok(mut map)) = self.shard(&key).map(Mutex::lock) else {
            return;
        };
        if map.len() >= self.per_shard {
            map.retain(|_, (_, until)| *until > now.as_secs());
        }
        if map.len() < self.per_shard {
            let until = until.min(claims.exp);
            map.insert(key, (claims, until));
        }
    }

    /// Forgets every cached token (after the key set changed).
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            if let Ok(mut map) = shard.lock() {
                map.clear();
            }
        }
    }
}

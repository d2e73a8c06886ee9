//! Failed client authentications, counted per registered client in fixed windows. Past the
//! limit, the client's attempts are refused before any credential is checked, until its window
//! ends: a shared secret or a password cannot be guessed at the server's speed. Clients are
//! counted only by registered ids; usernames as sent, but at most [`MAX_TRACKED`] at once (past
//! that, ended windows are dropped, and a name that still does not fit is not counted), so
//! memory stays bounded whatever names attackers send.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use keybound_core::UnixTime;

/// The most names counted at once.
pub(crate) const MAX_TRACKED: usize = 65_536;

/// The counters of one process.
#[derive(Debug)]
pub(crate) struct FailedAuthentications {
    max_failures: u32,
    window_secs: u64,
    /// Client id → (window start, failures in it).
    counts: Mutex<HashMap<String, (u64, u32)>>,
}

impl FailedAuthentications {
    /// `max_failures` per `window_secs` (0 failures: no limit).
    pub(crate) fn new(max_failures: u32, window_secs: u64) -> Self {
        Self {
            max_failures,
            window_secs: window_secs.max(1),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `client_id` may try again, if it is over the limit now.
    pub(crate) fn locked(&self, client_id: &str, now: UnixTime) -> Option<u64> {
        if self.max_failures == 0 {
            return None;
        }
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let &(start, failures) = counts.get(client_id)?;
        let end = start.saturating_add(self.window_secs);
        (failures >= self.max_failures && now.as_secs() < end)
            .then(|| end.saturating_sub(now.as_secs()).max(1))
    }

    /// Counts one failure of the registered client `client_id`.
    pub(crate) fn failed(&self, client_id: &str, now: UnixTime) {
        if self.max_failures == 0 {
            return;
        }
        let now = now.as_secs();
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.len() >= MAX_TRACKED && !counts.contains_key(client_id) {
            let window = self.window_secs;
            counts.retain(|_, &mut (start, _)| now < start.saturating_add(window));
            if counts.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = counts.entry(client_id.to_owned()).or_insert((now, 0));
        if now >= entry.0.saturating_add(self.window_secs) {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_for_the_window_and_each_client_alone() {
        let limits = FailedAuthentications::new(3, 60);
        let t = |s: u64| UnixTime::from_secs(1_000 + s);
        for _ in 0..3 {
            assert_eq!(limits.locked("a", t(0)), None);
            limits.failed("a", t(0));
        }
        assert_eq!(limits.locked("a", t(10)), Some(50));
        assert_eq!(
            limits.locked("b", t(10)),
            None,
            "another client is not affected"
        );
        assert_eq!(limits.locked("a", t(60)), None, "a new window");
        limits.failed("a", t(60));
        assert_eq!(limits.locked("a", t(61)), None, "the count starts again");
        let off = FailedAuthentications::new(0, 60);
        for _ in 0..100 {
            off.failed("a", t(0));
        }
        assert_eq!(off.locked("a", t(0)), None);
    }

    #[test]
    fn names_past_the_bound_are_not_counted_until_windows_end() {
        let limits = FailedAuthentications::new(1, 60);
        let t = |s: u64| UnixTime::from_secs(1_000 + s);
        for i in 0..MAX_TRACKED {
            limits.failed(&i.to_string(), t(0));
        }
        limits.failed("late", t(1));
        assert_eq!(limits.locked("late", t(1)), None, "no room: not counted");
        assert_eq!(
            limits.locked("7", t(1)),
            Some(59),
            "earlier names still count"
        );
        limits.failed("late", t(60));
        assert_eq!(
            limits.locked("late", t(61)),
            Some(59),
            "ended windows made room"
        );
    }
}

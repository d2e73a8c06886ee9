//! Counters exposed at `/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The server's counters. Labels are fixed strings chosen by the code, never request data.
#[derive(Debug, Default)]
pub struct Metrics {
    tokens_issued_dpop: AtomicU64,
    tokens_issued_bearer: AtomicU64,
    proofs_accepted: AtomicU64,
    nonce_challenges: AtomicU64,
    replays: AtomicU64,
    codes_issued: AtomicU64,
    proof_rejections: Mutex<BTreeMap<&'static str, u64>>,
    token_errors: Mutex<BTreeMap<String, u64>>,
    client_auth_failures: Mutex<BTreeMap<&'static str, u64>>,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    if let Ok(mut map) = map.lock() {
        *map.entry(key).or_default() += 1;
    }
}

impl Metrics {
    pub(crate) fn code_issued(&self) {
        self.codes_issued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn token_issued(&self, dpop: bool) {
        let counter = if dpop {
            &self.tokens_issued_dpop
        } else {
            &self.tokens_issued_bearer
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn proof_accepted(&self) {
        self.proofs_accepted.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn proof_rejected(&self, reason: &'static str) {
        bump(&self.proof_rejections, reason);
        match reason {
            "nonce_required" | "nonce_rejected" => {
                self.nonce_challenges.fetch_add(1, Ordering::Relaxed)
            }
            "replayed" => self.replays.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
    pub(crate) fn token_error(&self, code: &str) {
        bump(&self.token_errors, code.to_owned());
    }
    pub(crate) fn client_auth_failed(&self, reason: &'static str) {
        bump(&self.client_auth_failures, reason);
    }

    /// The counters in the Prometheus text exposition format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        counter(
            &mut out,
            "keybound_tokens_issued_total",
            "Access tokens issued, by token_type.",
        );
        let _ = writeln!(
            out,
            "keybound_tokens_issued_total{{token_type=\"DPoP\"}} {}",
            self.tokens_issued_dpop.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "keybound_tokens_issued_total{{token_type=\"Bearer\"}} {}",
            self.tokens_issued_bearer.load(Ordering::Relaxed)
        );
        counter(
            &mut out,
            "keybound_dpop_proofs_accepted_total",
            "DPoP proofs that passed every check.",
        );
        let _ = writeln!(
            out,
            "keybound_dpop_proofs_accepted_total {}",
            self.proofs_accepted.load(Ordering::Relaxed)
        );
        counter(
            &mut out,
            "keybound_dpop_proofs_rejected_total",
            "DPoP proofs rejected, by the check that failed.",
        );
        if let Ok(map) = self.proof_rejections.lock() {
            for (reason, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "keybound_dpop_proofs_rejected_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        counter(
            &mut out,
            "keybound_dpop_nonce_challenges_total",
            "use_dpop_nonce answers.",
        );
        let _ = writeln!(
            out,
            "keybound_dpop_nonce_challenges_total {}",
            self.nonce_challenges.load(Ordering::Relaxed)
        );
        counter(
            &mut out,
            "keybound_dpop_replays_total",
            "Proofs refused because their jti was already used.",
        );
        let _ = writeln!(
            out,
            "keybound_dpop_replays_total {}",
            self.replays.load(Ordering::Relaxed)
        );
        counter(
            &mut out,
            "keybound_authorization_codes_issued_total",
            "Authorization codes issued after consent.",
        );
        let _ = writeln!(
            out,
            "keybound_authorization_codes_issued_total {}",
            self.codes_issued.load(Ordering::Relaxed)
        );
        counter(
            &mut out,
            "keybound_token_errors_total",
            "Token endpoint errors, by OAuth error code.",
        );
        if let Ok(map) = self.token_errors.lock() {
            for (code, n) in map.iter() {
                let _ = writeln!(out, "keybound_token_errors_total{{error=\"{code}\"}} {n}");
            }
        }
        counter(
            &mut out,
            "keybound_client_auth_failures_total",
            "Failed client authentications, by reason.",
        );
        if let Ok(map) = self.client_auth_failures.lock() {
            for (reason, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "keybound_client_auth_failures_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        out
    }
}

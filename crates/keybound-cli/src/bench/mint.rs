//! Minting the proofs of a run before it starts, on every core.

use keybound_client::DpopClient;
use keybound_core::dpop::MAX_PROOF_LEN;
use keybound_core::jws::UntrustedJws;
use reqwest::header::HeaderValue;

use crate::Failure;

/// The proofs of a run, in the order they are to be sent.
#[derive(Debug)]
pub(super) struct Minted {
    /// One proof per request, each with its own `jti`, ready to go in a header.
    pub(super) proofs: Vec<HeaderValue>,
    /// Threads that minted them.
    pub(super) threads: usize,
    /// The proofs carry a server nonce (the server sent one during setup).
    pub(super) nonce: bool,
}

/// Mints `count` proofs for `method` on `url` with `client`'s key, `ath` for `token`, and the
/// nonce the server gave `client` during setup. Each proof has a fresh `iat` and `jti`.
///
/// Thread `t` of `T` mints proofs `t, t + T, t + 2T, ...`, so a proof's place in the run
/// follows its minting time: at any moment of the run, the proofs being sent are about as old
/// as minting took or as the run has lasted, whichever is more, rather than their sum.
pub(super) fn mint(
    client: &DpopClient,
    method: &str,
    url: &str,
    token: Option<&str>,
    count: usize,
) -> Result<Minted, Failure> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, count.max(1));
    let mint_share = |first: usize| -> Result<Vec<HeaderValue>, Failure> {
        (first..count)
            .step_by(threads)
            .map(|_| {
                let proof = client
                    .proof(method, url, token)
                    .map_err(|e| Failure(format!("cannot mint a proof: {e}")))?;
                HeaderValue::try_from(proof)
                    .map_err(|_| Failure("a proof is not a valid header value".into()))
            })
            .collect()
    };
    let shares = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|first| scope.spawn(move || mint_share(first)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(Failure("a minting thread panicked".into())))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut shares: Vec<_> = shares.into_iter().map(Vec::into_iter).collect();
    let mut proofs = Vec::with_capacity(count);
    for i in 0..count {
        if let Some(proof) = shares.get_mut(i % threads).and_then(Iterator::next) {
            proofs.push(proof);
        }
    }
    let nonce = proofs.first().is_some_and(has_nonce);
    Ok(Minted {
        proofs,
        threads,
        nonce,
    })
}

/// Whether a proof's claims include `nonce`.
fn has_nonce(proof: &HeaderValue) -> bool {
    proof
        .to_str()
        .ok()
        .and_then(|text| UntrustedJws::parse(text, MAX_PROOF_LEN).ok())
        .is_some_and(|jws| jws.payload().contains_key("nonce"))
}

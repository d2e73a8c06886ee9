//! The timed phase: `concurrency` tasks take the next pre-minted proof from a shared index and
//! send the request with it, until the proofs run out or the deadline passes. Each task keeps
//! its own latencies and error counts; a monitor task prints a progress line about once a second.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keybound_core::ErrorCode;
use keybound_core::challenge::parse_challenges;
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, Url};

/// Distinct error kinds kept; any further kind is counted as `other`.
const MAX_KINDS: usize = 32;
/// Longest error code kept in a kind (a server's `error` is untrusted text).
const MAX_CODE_LEN: usize = 48;
/// Largest response body read (beyond it the response counts as the error `body too large`).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Bytes of a refusal's body kept to find its `error`.
const ERROR_BODY: usize = 16 * 1024;

/// The request the timed phase repeats; only the `DPoP` header changes.
#[derive(Debug)]
pub(super) struct Target {
    /// HTTP method (and the proofs' `htm`).
    pub(super) method: Method,
    /// The URL (and the proofs' `htu`).
    pub(super) url: Url,
    /// Fixed headers: `Authorization`, `Content-Type`.
    pub(super) headers: HeaderMap,
    /// The body, if any.
    pub(super) body: Option<String>,
}

/// How one phase runs.
#[derive(Debug)]
pub(super) struct Phase {
    /// Requests in flight at once.
    pub(super) concurrency: usize,
    /// No request starts after this.
    pub(super) deadline: Option<Instant>,
    /// Print a progress line on standard error.
    pub(super) progress: bool,
    /// When the oldest proofs near the server's `iat` window (a warning is printed once).
    pub(super) stale_at: Instant,
}

/// What a phase did.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Latencies of the successful requests, sorted.
    pub(super) ok: Vec<Duration>,
    /// Latencies of every request that got an answer or failed, sorted.
    pub(super) all: Vec<Duration>,
    /// Failed requests by kind (`http 400 invalid_dpop_proof`, `connect`, `timeout`, ...).
    pub(super) errors: BTreeMap<String, u64>,
    /// From the first request sent to the last answer.
    pub(super) elapsed: Duration,
    /// The deadline stopped the phase before the proofs ran out.
    pub(super) stopped_by_duration: bool,
}

/// Counters the progress line reads.
#[derive(Debug, Default)]
struct Counters {
    done: AtomicU64,
    failed: AtomicU64,
}

/// Sends the requests of one phase, one proof each, and collects the results.
pub(super) async fn run(
    http: &reqwest::Client,
    target: &Arc<Target>,
    proofs: Vec<HeaderValue>,
    phase: &Phase,
) -> Outcome {
    let proofs: Arc<[HeaderValue]> = proofs.into();
    let next = Arc::new(AtomicUsize::new(0));
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let monitor = tokio::spawn(monitor(
        counters.clone(),
        started,
        phase.stale_at,
        proofs.len(),
        phase.progress,
    ));
    let workers: Vec<_> = (0..phase.concurrency.min(proofs.len()))
        .map(|_| {
            tokio::spawn(worker(
                http.clone(),
                target.clone(),
                proofs.clone(),
                next.clone(),
                counters.clone(),
                phase.deadline,
            ))
        })
        .collect();
    let mut outcome = Outcome::default();
    for worker in workers {
        // A worker that panicked (it does not unwrap) loses only its own figures.
        if let Ok(part) = worker.await {
            outcome.ok.extend(part.ok);
            outcome.all.extend(part.all);
            for (kind, count) in part.errors {
                *outcome
                    .errors
                    .entry(bounded(&outcome.errors, kind))
                    .or_default() += count;
            }
        }
    }
    outcome.elapsed = started.elapsed();
    monitor.abort();
    let _ = monitor.await;
    if phase.progress && std::io::stderr().is_terminal() {
        eprint!("\r{:78}\r", "");
    }
    outcome.stopped_by_duration = next.load(Ordering::Relaxed) < proofs.len();
    outcome.ok.sort_unstable();
    outcome.all.sort_unstable();
    outcome
}

/// `kind`, or `other` when `errors` already holds the most kinds kept and not this one.
fn bounded(errors: &BTreeMap<String, u64>, kind: String) -> String {
    if errors.len() >= MAX_KINDS && !errors.contains_key(&kind) {
        "other".to_owned()
    } else {
        kind
    }
}

async fn worker(
    http: reqwest::Client,
    target: Arc<Target>,
    proofs: Arc<[HeaderValue]>,
    next: Arc<AtomicUsize>,
    counters: Arc<Counters>,
    deadline: Option<Instant>,
) -> Outcome {
    let mut outcome = Outcome::default();
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let Some(proof) = proofs.get(next.fetch_add(1, Ordering::Relaxed)) else {
            break;
        };
        let sent = Instant::now();
        let result = send(&http, &target, proof.clone()).await;
        let latency = sent.elapsed();
        outcome.all.push(latency);
        counters.done.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => outcome.ok.push(latency),
            Err(kind) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                *outcome
                    .errors
                    .entry(bounded(&outcome.errors, kind))
                    .or_default() += 1;
            }
        }
    }
    outcome
}

/// One request; `Err` names what went wrong.
async fn send(http: &reqwest::Client, target: &Target, proof: HeaderValue) -> Result<(), String> {
    let mut request = http
        .request(target.method.clone(), target.url.clone())
        .headers(target.headers.clone())
        .header("DPoP", proof);
    if let Some(body) = &target.body {
        request = request.body(body.clone());
    }
    let response = request.send().await.map_err(|e| transport_kind(&e))?;
    if response.status().is_success() {
        read_body(response, 0).await.map(drop)
    } else {
        Err(refusal_kind(response).await)
    }
}

/// Reads the whole body (so the connection is reused), keeping its first `keep` bytes.
async fn read_body(mut response: reqwest::Response, keep: usize) -> Result<Vec<u8>, String> {
    let mut kept = Vec::new();
    let mut read = 0;
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_kind(&e))? {
        read += chunk.len();
        if read > MAX_BODY {
            return Err("body too large".into());
        }
        let room = keep.saturating_sub(kept.len()).min(chunk.len());
        kept.extend_from_slice(chunk.get(..room).unwrap_or_default());
    }
    Ok(kept)
}

/// The kind of a request that got no answer.
fn transport_kind(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else {
        "request"
    };
    kind.to_owned()
}

/// The kind of a refusal: `http STATUS CODE`, the code from the `WWW-Authenticate` challenge
/// (a resource) or the JSON body's `error` (a token endpoint), or `http STATUS` without one.
pub(super) async fn refusal_kind(response: reqwest::Response) -> String {
    let status = response.status().as_u16();
    let challenged = response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| parse_challenges(v).ok())
        .flatten()
        .find_map(|c| c.error());
    let code = match challenged {
        Some(code) => Some(code),
        None => read_body(response, ERROR_BODY)
            .await
            .ok()
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .and_then(|json| json.get("error")?.as_str().map(ErrorCode::parse)),
    };
    match code {
        Some(code) => {
            let code: String = code
                .as_str()
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(MAX_CODE_LEN)
                .collect();
            format!("http {status} {code}")
        }
        None => format!("http {status}"),
    }
}

/// With `show`, prints `elapsed, requests done, rate over the last second, errors` about once a
/// second: rewritten in place on a terminal, one line each otherwise. Warns once (even without
/// `show`) when the proofs near the server's `iat` window.
async fn monitor(
    counters: Arc<Counters>,
    started: Instant,
    stale_at: Instant,
    planned: usize,
    show: bool,
) {
    let terminal = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(started + Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    let mut last = (started, 0u64);
    let mut warned = false;
    loop {
        let now = tick.tick().await.into_std();
        let done = counters.done.load(Ordering::Relaxed);
        let failed = counters.failed.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, done);
        let line = format!(
            "{:6.1} s  {done:>9}/{planned} requests  {rate:>9.0}/s  {failed} errors",
            now.duration_since(started).as_secs_f64()
        );
        let mut stderr = std::io::stderr().lock();
        let _ = match (show, terminal) {
            (false, _) => Ok(()),
            (true, true) => write!(stderr, "\r{line:78}"),
            (true, false) => writeln!(stderr, "{line}"),
        };
        let _ = stderr.flush();
        if !warned && now >= stale_at {
            warned = true;
            let _ = writeln!(
                stderr,
                "{}keybound: warning: the proofs were minted 50 s ago; a server with a 60 s iat \
                 window will soon refuse them",
                if show && terminal { "\n" } else { "" }
            );
        }
    }
}

//! The figures of a run, as a small table or one JSON object, and the generator's own CPU use.

use std::time::Duration;

use serde_json::{Value, json};

use super::run::Outcome;

use crate::output::{out, outln};

/// Clock ticks per second of the times in `/proc/self/stat`: Linux reports them in `USER_HZ`,
/// which is 100 on every architecture it runs on today.
const USER_HZ: f64 = 100.0;

/// What a run did, and what it cost the generator.
#[derive(Debug)]
pub(super) struct Report {
    /// `token` or `resource`.
    pub(super) mode: &'static str,
    /// The requests' method.
    pub(super) method: String,
    /// The requests' URL.
    pub(super) url: String,
    /// Requests in flight at once.
    pub(super) concurrency: usize,
    /// Requests planned for the timed phase (--requests).
    pub(super) requests: usize,
    /// Untimed requests sent before it.
    pub(super) warmup: usize,
    /// The timed phase's results.
    pub(super) outcome: Outcome,
    /// The generator's CPU use during the timed phase, where it can be read.
    pub(super) cpu: Option<Cpu>,
    /// How the proofs were made.
    pub(super) minted: MintFigures,
}

/// How the proofs were made.
#[derive(Debug)]
pub(super) struct MintFigures {
    /// Proofs minted (warmup and timed requests).
    pub(super) proofs: usize,
    /// Wall-clock time minting took.
    pub(super) seconds: f64,
    /// Threads that minted.
    pub(super) threads: usize,
    /// The proofs carry the nonce the server gave during setup.
    pub(super) nonce: bool,
}

/// User and system CPU time of this process so far, in seconds.
#[derive(Clone, Copy, Debug)]
pub(super) struct CpuTimes {
    user: f64,
    system: f64,
}

/// The generator's CPU use over a phase.
#[derive(Debug)]
pub(super) struct Cpu {
    /// User CPU seconds, all threads.
    user: f64,
    /// System CPU seconds, all threads.
    system: f64,
    /// (user + system) / wall time, in percent of one core.
    percent: f64,
    /// Cores this process may run on.
    cores: usize,
}

/// This process's CPU times from `/proc/self/stat` (Linux); `None` where there is no such file.
pub(super) fn cpu_times() -> Option<CpuTimes> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// The user and system times of a `/proc/PID/stat` line.
fn parse_stat(stat: &str) -> Option<CpuTimes> {
    // Field 2, the command name, may hold spaces and parentheses: count from the last ')'.
    // Field 3 (state) is then the first, utime (field 14) the 12th and stime (15) the 13th.
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let mut ticks = || fields.next()?.parse::<f64>().ok();
    Some(CpuTimes {
        user: ticks()? / USER_HZ,
        system: ticks()? / USER_HZ,
    })
}

impl Cpu {
    /// The CPU used between two readings, over `wall` time.
    pub(super) fn between(
        before: Option<CpuTimes>,
        after: Option<CpuTimes>,
        wall: Duration,
    ) -> Option<Self> {
        let (before, after) = (before?, after?);
        let user = (after.user - before.user).max(0.0);
        let system = (after.system - before.system).max(0.0);
        Some(Self {
            user,
            system,
            percent: 100.0 * (user + system) / wall.as_secs_f64().max(1e-9),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
        })
    }
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> Option<f64> {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1))
        .map(|d| d.as_secs_f64() * 1e3)
}

/// p50, p90, p99 and max of sorted latencies in milliseconds, or `None` when there are none.
fn latencies(sorted: &[Duration]) -> Option<[f64; 4]> {
    Some([
        percentile(sorted, 0.50)?,
        percentile(sorted, 0.90)?,
        percentile(sorted, 0.99)?,
        sorted.last()?.as_secs_f64() * 1e3,
    ])
}

/// Rounds to microseconds (of milliseconds) or thousandths, for readable JSON.
fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

impl Report {
    /// Requests of the timed phase that got an answer or failed.
    pub(super) fn total(&self) -> usize {
        self.outcome.all.len()
    }

    /// Requests of the timed phase that failed.
    pub(super) fn failed(&self) -> u64 {
        self.outcome.errors.values().sum()
    }

    /// The fraction of the timed requests that failed (0 when none were sent).
    pub(super) fn error_rate(&self) -> f64 {
        if self.total() == 0 {
            0.0
        } else {
            self.failed() as f64 / self.total() as f64
        }
    }

    fn per_second(&self, count: usize) -> f64 {
        count as f64 / self.outcome.elapsed.as_secs_f64().max(1e-9)
    }

    fn stopped_by(&self) -> &'static str {
        if self.outcome.stopped_by_duration {
            "duration"
        } else {
            "requests"
        }
    }

    /// Prints the report: one JSON object, or a table.
    pub(super) fn print(&self, as_json: bool) {
        if as_json {
            outln!("{}", self.to_json());
        } else {
            out!("{}", self.to_text());
        }
    }

    fn to_json(&self) -> Value {
        let latency = |sorted: &[Duration]| {
            latencies(sorted).map_or(Value::Null, |[p50, p90, p99, max]| {
                json!({ "p50": round3(p50), "p90": round3(p90), "p99": round3(p99), "max": round3(max) })
            })
        };
        json!({
            "mode": self.mode,
            "method": self.method,
            "url": self.url,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "warmup": self.warmup,
            "total": self.total(),
            "ok": self.outcome.ok.len(),
            "failed": self.failed(),
            "error_rate": self.error_rate(),
            "seconds": round3(self.outcome.elapsed.as_secs_f64()),
            "stopped_by": self.stopped_by(),
            "requests_per_second": round3(self.per_second(self.total())),
            "ok_per_second": round3(self.per_second(self.outcome.ok.len())),
            "latency_ms": { "ok": latency(&self.outcome.ok), "all": latency(&self.outcome.all) },
            "errors": self.outcome.errors,
            "cpu": self.cpu.as_ref().map(|cpu| json!({
                "user_seconds": round3(cpu.user),
                "system_seconds": round3(cpu.system),
                "percent": round3(cpu.percent),
                "cores": cpu.cores,
            })),
            "mint": {
                "proofs": self.minted.proofs,
                "seconds": round3(self.minted.seconds),
                "threads": self.minted.threads,
                "nonce": self.minted.nonce,
            },
        })
    }

    fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "keybound bench {}: {} {}, concurrency {}",
            self.mode, self.method, self.url, self.concurrency
        );
        let _ = writeln!(
            out,
            "  requests    {} in {:.2} s (stopped by {}), {} ok, {} failed ({:.2}%)",
            self.total(),
            self.outcome.elapsed.as_secs_f64(),
            self.stopped_by(),
            self.outcome.ok.len(),
            self.failed(),
            100.0 * self.error_rate()
        );
        let _ = writeln!(
            out,
            "  throughput  {:.1} requests/s, {:.1} ok/s",
            self.per_second(self.total()),
            self.per_second(self.outcome.ok.len())
        );
        let _ = writeln!(
            out,
            "  latency ms  {:>9} {:>9} {:>9} {:>9}",
            "p50", "p90", "p99", "max"
        );
        for (name, sorted) in [("ok", &self.outcome.ok), ("all", &self.outcome.all)] {
            match latencies(sorted) {
                Some([p50, p90, p99, max]) => {
                    let _ = writeln!(
                        out,
                        "    {name:<8}  {p50:>9.2} {p90:>9.2} {p99:>9.2} {max:>9.2}"
                    );
                }
                None => {
                    let _ = writeln!(out, "    {name:<8}  {:>9}", "-");
                }
            }
        }
        if self.outcome.errors.is_empty() {
            let _ = writeln!(out, "  errors      none");
        } else {
            let _ = writeln!(out, "  errors");
            for (kind, count) in &self.outcome.errors {
                let _ = writeln!(out, "    {count:>9}  {kind}");
            }
        }
        match &self.cpu {
            Some(cpu) => {
                let _ = writeln!(
                    out,
                    "  generator   {:.2} s user + {:.2} s system CPU = {:.0}% of one core ({} cores)",
                    cpu.user, cpu.system, cpu.percent, cpu.cores
                );
            }
            None => {
                let _ = writeln!(out, "  generator   CPU use unknown (no /proc/self/stat)");
            }
        }
        let _ = writeln!(
            out,
            "  proofs      {} minted in {:.2} s on {} threads before the run{}",
            self.minted.proofs,
            self.minted.seconds,
            self.minted.threads,
            if self.minted.nonce {
                ", with the server's nonce"
            } else {
                ""
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_ordered() {
        let sorted: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        assert_eq!(latencies(&sorted), Some([100.0, 180.0, 198.0, 200.0]));
        assert_eq!(latencies(&[Duration::from_millis(7)]), Some([7.0; 4]));
        assert_eq!(latencies(&[]), None);
    }

    #[test]
    fn stat_times_are_read_after_the_command_name() {
        // A command name with a space and a parenthesis; utime 250 and stime 40 ticks.
        let line = "4242 (key bound) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 40 0 0 20 0 9 0";
        let times = parse_stat(line).unwrap();
        assert_eq!((times.user, times.system), (2.5, 0.4));
        assert!(parse_stat("4242 (truncated) S 1 2").is_none());
        assert!(cpu_times().is_some(), "this runs on Linux");
    }
}

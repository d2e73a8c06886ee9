//! `keybound bench`: a load generator for a token endpoint (`token`) or a DPoP-protected API
//! (`resource`), against keybound or any compliant server.
//!
//! Three phases. Setup goes through `keybound-client` (discovery, the client-credentials
//! grant, one call to the API), whose nonce cache keeps any `DPoP-Nonce` the server sends, so
//! a server that answers `use_dpop_nonce` gets proofs with its nonce. Then every proof of the
//! run is minted ahead of time on all cores ([`mint`]), so the generator is not the
//! bottleneck. The timed phase ([`run`]) only sends requests; [`report`] prints the figures.

mod args;
mod mint;
mod report;
mod run;
mod setup;

use std::process::ExitCode;
use std::time::{Duration, Instant};

pub(crate) use args::BenchArgs;
use args::{ClientArgs, LoadArgs, Mode};
use report::{Cpu, MintFigures, Report};
use run::Phase;

use crate::Failure;

/// Proofs older than this (seconds since minting began) get close to keybound's default `iat`
/// window of 60 s; the generator warns.
const STALE_AFTER: Duration = Duration::from_secs(50);

/// Runs `keybound bench`: prints the report (or the setup failure) and returns the exit code.
pub(crate) fn bench(args: &BenchArgs, as_json: bool) -> ExitCode {
    let (client, load) = match &args.mode {
        Mode::Token(mode) => (&mode.client, &mode.load),
        Mode::Resource(mode) => (&mode.client, &mode.load),
    };
    match run_bench(&args.mode, client, load) {
        Ok(report) => {
            report.print(as_json);
            if report.error_rate() > load.max_error_rate {
                eprintln!(
                    "keybound: {} of {} requests failed ({:.2}%), more than --max-error-rate {}",
                    report.failed(),
                    report.total(),
                    100.0 * report.error_rate(),
                    load.max_error_rate
                );
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(failure) => failure.report(as_json),
    }
}

fn run_bench(mode: &Mode, client: &ClientArgs, load: &LoadArgs) -> Result<Report, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(format!("cannot start the runtime: {e}")))?;
    let http = setup::load_client(client, load)?;
    let prepared = runtime.block_on(setup::prepare(mode, client))?;
    let say = |text: &str| {
        if !load.quiet {
            eprintln!("{text}");
        }
    };
    let warmup = usize::try_from(load.warmup).unwrap_or(usize::MAX);
    let requests = usize::try_from(load.requests).unwrap_or(usize::MAX);
    let count = warmup.saturating_add(requests);
    say(&format!(
        "setup ok; minting {count} proofs for {} {}",
        prepared.target.method, prepared.target.url
    ));
    let minted_at = Instant::now();
    let minted = mint::mint(
        &prepared.client,
        prepared.target.method.as_str(),
        prepared.target.url.as_str(),
        prepared.token.as_deref(),
        count,
    )?;
    let mint_time = minted_at.elapsed();
    if mint_time + load.duration > STALE_AFTER {
        eprintln!(
            "keybound: warning: minting took {:.1} s and the run may last {:.1} s more: proofs may \
             be older than a server's iat window (60 s in keybound) by the end; lower --requests \
             or --duration",
            mint_time.as_secs_f64(),
            load.duration.as_secs_f64()
        );
    }
    if let Some(expires_in) = prepared.expires_in
        && Duration::from_secs(expires_in) < mint_time + load.duration
    {
        eprintln!(
            "keybound: warning: the access token expires in {expires_in} s, possibly before the \
             run ends"
        );
    }
    let concurrency = usize::try_from(load.concurrency).unwrap_or(1);
    let mut warmup_proofs = minted.proofs;
    let timed_proofs = warmup_proofs.split_off(warmup.min(warmup_proofs.len()));
    let target = std::sync::Arc::new(prepared.target);
    if !warmup_proofs.is_empty() {
        say(&format!("warming up: {warmup} requests"));
        runtime.block_on(run::run(
            &http,
            &target,
            warmup_proofs,
            &Phase {
                concurrency,
                deadline: None,
                progress: false,
                stale_at: minted_at + STALE_AFTER,
            },
        ));
    }
    let cpu_before = report::cpu_times();
    let outcome = runtime.block_on(run::run(
        &http,
        &target,
        timed_proofs,
        &Phase {
            concurrency,
            deadline: Some(Instant::now() + load.duration),
            progress: !load.quiet,
            stale_at: minted_at + STALE_AFTER,
        },
    ));
    let cpu = Cpu::between(cpu_before, report::cpu_times(), outcome.elapsed);
    Ok(Report {
        mode: match mode {
            Mode::Token(_) => "token",
            Mode::Resource(_) => "resource",
        },
        method: target.method.to_string(),
        url: target.url.to_string(),
        concurrency,
        requests,
        warmup,
        outcome,
        cpu,
        minted: MintFigures {
            proofs: count,
            seconds: mint_time.as_secs_f64(),
            threads: minted.threads,
            nonce: minted.nonce,
        },
    })
}

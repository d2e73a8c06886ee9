// Prints bench/compare.sh's results (JSON lines) as a markdown table, keybound beside node.
//
// Usage: node bench/table.mjs RESULTS.jsonl [TARGET_RATIO]
//        node bench/table.mjs --line LINE       (one run, summarised on one line)
// Each line: {"side", "round", "mode", "concurrency", "server_cpu_seconds", "server_requests",
// "bench": <the object `keybound bench --json` printed>}. With several rounds, each cell shows
// the run with the median requests/s of that side.
import { readFileSync } from 'node:fs';

const [file, targetArg] = process.argv.slice(2);
if (file === '--line') {
  summary(JSON.parse(targetArg));
  process.exit(0);
}
const target = Number(targetArg || 8);
const runs = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line));

const groups = new Map();
for (const run of runs) {
  const key = `${run.mode} ${run.concurrency}`;
  if (!groups.has(key)) groups.set(key, { mode: run.mode, concurrency: run.concurrency, keybound: [], node: [] });
  groups.get(key)[run.side].push(run);
}

const rps = (run) => run?.bench?.requests_per_second ?? 0;
function median(list) {
  const ok = list.filter((run) => run.bench && !run.bench.error);
  if (ok.length === 0) return list[0];
  const sorted = [...ok].sort((a, b) => rps(a) - rps(b));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}
const fixed = (x, digits = 0) => (x === undefined || x === null ? '-' : Number(x).toFixed(digits));
function latency(run) {
  const l = run?.bench?.latency_ms?.ok;
  return l ? `${fixed(l.p50, 2)} / ${fixed(l.p99, 2)}` : '-';
}
function cpuPerRequest(run) {
  if (!run?.server_requests) return '-';
  return fixed((1e6 * run.server_cpu_seconds) / run.server_requests);
}
function generator(run) {
  return run?.bench?.cpu ? fixed(run.bench.cpu.percent) : '-';
}
/** How busy the server's core was beyond the server's own CPU time, over the whole command. */
function foreign(run) {
  if (run?.server_core_busy_percent === undefined || !run.wall_seconds) return '-';
  const own = (100 * run.server_cpu_seconds) / run.wall_seconds;
  return fixed(Math.max(0, run.server_core_busy_percent - own));
}
/** The generator core's busy share beyond the generator's own (estimated) CPU use. */
function foreignOnGenerator(run) {
  const b = run?.bench;
  if (run?.client_core_busy_percent === undefined || !run.wall_seconds || !b?.cpu) return 0;
  const warmupSeconds = b.requests_per_second > 0 ? b.warmup / b.requests_per_second : 0;
  const own = (b.cpu.percent * (b.seconds + warmupSeconds) + 100 * b.mint.seconds) / run.wall_seconds;
  return Math.max(0, run.client_core_busy_percent - own);
}
/** Runs during which other work took a noticeable share of either core. */
const DISTURBED = 15;
function disturbed(run) {
  const server = foreign(run);
  return (server !== '-' && Number(server) > DISTURBED) || foreignOnGenerator(run) > DISTURBED;
}
function errors(run) {
  if (!run?.bench) return 'no result';
  if (run.bench.error) return `setup: ${run.bench.error}`;
  const failed = run.bench.failed ?? 0;
  const stopped = run.bench.stopped_by === 'duration' ? ` (${run.bench.total} in ${fixed(run.bench.seconds, 1)} s)` : '';
  return `${failed}${stopped}`;
}
function throughput(run) {
  if (!run?.bench || run.bench.error) return 'failed';
  return `${fixed(rps(run))}${disturbed(run) ? ' †' : ''}`;
}

const order = { token: 0, resource: 1 };
const rows = [...groups.values()].sort(
  (a, b) => (order[a.mode] ?? 9) - (order[b.mode] ?? 9) || a.concurrency - b.concurrency,
);
const rounds = Math.max(...runs.map((run) => run.round));
console.log(
  `| mode | concurrency | keybound req/s | node req/s | ratio | keybound p50 / p99 ms | node p50 / p99 ms `
    + `| server CPU µs/req keybound / node | generator CPU % keybound / node `
    + `| other load on server core % keybound / node | failed keybound / node |`,
);
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
const lowest = {};
for (const row of rows) {
  const kb = median(row.keybound);
  const nd = median(row.node);
  // Each round's two runs ran back to back, so their ratio is steadier than the ratio of the
  // medians when the machine's speed drifts (a shared host): the median of the rounds' ratios.
  const ratios = row.keybound
    .map((k) => [k, row.node.find((n) => n.round === k.round)])
    .filter(([k, n]) => rps(k) > 0 && rps(n) > 0 && !k.bench.error && !n.bench.error)
    .map(([k, n]) => rps(k) / rps(n))
    .sort((a, b) => a - b);
  const ratio = ratios.length ? ratios[Math.floor((ratios.length - 1) / 2)] : undefined;
  const spread = ratios.length > 1 ? ` (${fixed(ratios[0], 1)}–${fixed(ratios[ratios.length - 1], 1)})` : '';
  if (ratio !== undefined && (lowest[row.mode] === undefined || ratio < lowest[row.mode].ratio)) {
    lowest[row.mode] = { ratio, concurrency: row.concurrency };
  }
  console.log(
    `| ${row.mode} | ${row.concurrency} | ${throughput(kb)} | ${throughput(nd)} | `
      + `${ratio === undefined ? '-' : `${fixed(ratio, 1)}x${spread}`} | ${latency(kb)} | ${latency(nd)} | `
      + `${cpuPerRequest(kb)} / ${cpuPerRequest(nd)} | ${generator(kb)} / ${generator(nd)} | `
      + `${foreign(kb)} / ${foreign(nd)} | ${errors(kb)} / ${errors(nd)} |`,
  );
}
console.log();
console.log('req/s: requests per second of the timed phase (servers on one core each run). p50/p99: latency '
  + 'of successful requests. server CPU: the server process\'s CPU time per request served '
  + '(warmup included). generator CPU: `keybound bench`\'s own CPU during the timed phase, in % of '
  + 'its one core (near 100 means the generator, not the server, was the limit). other load: how '
  + 'busy the server\'s core was beyond the server itself (softirq, other processes).');
if (runs.some(disturbed)) {
  console.log(`† other work took more than ${DISTURBED}% of the server's or the generator's core during that run: `
    + 'the figure is low; run again on a quiet machine.');
}
console.log();
if (rounds > 1) {
  console.log(`Each cell: the run with the median requests/s of ${rounds} rounds; ratio: the median of the `
    + 'rounds\' ratios (each round runs keybound and node back to back), with their range.');
}
for (const [mode, { ratio, concurrency }] of Object.entries(lowest)) {
  const verdict = ratio >= target ? 'met' : 'NOT met';
  console.log(`${mode}: lowest ratio ${fixed(ratio, 1)}x (concurrency ${concurrency}); target ${target}x ${verdict}`);
}

/** One run on one line: what compare.sh prints as it goes. */
function summary(run) {
  const b = run.bench;
  const head = `${run.mode} c=${run.concurrency} ${run.side}:`.padEnd(24);
  if (!b || b.error) {
    console.log(`  ${head} FAILED ${b ? b.error : 'no output'}`);
    return;
  }
  const us = run.server_requests ? ((1e6 * run.server_cpu_seconds) / run.server_requests).toFixed(0) : '-';
  console.log(
    `  ${head} ${b.requests_per_second.toFixed(0).padStart(7)} req/s  p50 ${b.latency_ms.ok?.p50 ?? '-'} ms  `
      + `p99 ${b.latency_ms.ok?.p99 ?? '-'} ms  failed ${b.failed}  generator `
      + `${b.cpu ? b.cpu.percent.toFixed(0) : '?'}% of a core  server ${us} µs CPU/request  `
      + `core busy: server ${run.server_core_busy_percent}%, generator ${run.client_core_busy_percent}%`
      + `${b.stopped_by === 'duration' ? `  (stopped by --duration after ${b.total})` : ''}`,
  );
}

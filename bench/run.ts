// `npm run bench` (full) or `npm run bench -- --quick` (smaller sizes, under 2 minutes).
//
// Starts one embedded PostgreSQL 17 tuned for the benchmarks, runs each section in its own Node process
// (a fresh "container": module caches, the config and the Databricks clients start empty) and prints
// one table of figures, each measured side by side with its baseline in the same run and given as a
// ratio where the machine's speed would otherwise show. The same table goes to bench/RESULTS.md.
// `--only=cold-start,ingest` runs some sections only (handy while working on one).
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFakeTls } from '../dev/fake-tls.ts';
import { type LocalPostgres, startLocalPostgres } from '../dev/local-postgres.ts';
import { BENCH_DIR, type BenchContext, fmtMs, type Row, type SectionResult } from './lib.ts';

interface Section {
  id: string;
  file: string;
  title: string;
  needsPg: boolean;
}

const SECTIONS: Section[] = [
  { id: 'cold-start', file: 'cold-start.ts', title: '1. Cold start', needsPg: false },
  { id: 'calls', file: 'calls.ts', title: '2. Databricks calls per invocation', needsPg: true },
  { id: 'scale', file: 'scale.ts', title: '3. Job overhead at scale', needsPg: true },
  { id: 'rollups', file: 'rollups.ts', title: '4. RollUp refresh', needsPg: true },
  { id: 'ingest', file: 'ingest.ts', title: '5. Ingest overhead', needsPg: true },
  { id: 'runtime', file: 'runtime.ts', title: '6. Under the Lambda runtime client', needsPg: true },
  {
    id: 'latency',
    file: 'latency.ts',
    title: '7. Round trips over a network delay, at scale',
    needsPg: true,
  },
];

// Server settings for the bench cluster (on top of dev/local-postgres.ts: fsync, synchronous_commit
// and full_page_writes off). Autovacuum is off so that it cannot start in the middle of a timing on
// two cores; the sections VACUUM ANALYZE explicitly after loading data.
const PG_SETTINGS: Record<string, string> = {
  shared_buffers: '1GB',
  work_mem: '64MB',
  maintenance_work_mem: '512MB',
  max_wal_size: '4GB',
  checkpoint_timeout: '30min',
  max_locks_per_transaction: '1024', // the latency section drops or brings back 10,000 chunks in one statement
  autovacuum: 'off',
  // Per-statement timings for the evidence behind a missed target (a few µs per statement, both sides).
  shared_preload_libraries: 'pg_stat_statements',
  'pg_stat_statements.track_planning': 'on',
};

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const onlyArg = argv.find((a) => a.startsWith('--only='));
const only = onlyArg ? new Set(onlyArg.slice('--only='.length).split(',')) : undefined;
const unknown = argv.filter((a) => a !== '--quick' && !a.startsWith('--only='));
if (unknown.length > 0 || (only && [...only].some((id) => !SECTIONS.some((s) => s.id === id)))) {
  process.stderr.write(
    `usage: npm run bench [-- --quick] [-- --only=${SECTIONS.map((s) => s.id).join(',')}]\n`,
  );
  process.exit(2);
}
const selected = SECTIONS.filter((s) => !only || only.has(s.id));
const command = `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`;

const started = Date.now();
const loadBefore = loadavg()[0] ?? 0;
// The server's OS user (postgres, when we run as root) must read the COPY files written here.
const tmp = mkdtempSync(join(tmpdir(), 'lakets-bench-'));
chmodSync(tmp, 0o755);
let server: LocalPostgres | undefined;
let current: ReturnType<typeof spawn> | undefined;
let interrupted = false;

// The fakes' CA, in NODE_EXTRA_CA_CERTS of every section process (they inherit this environment).
const fakeCa = createFakeTls();

function cleanupSync(): void {
  rmSync(tmp, { recursive: true, force: true });
  rmSync(fakeCa.dir, { recursive: true, force: true });
}
process.on('exit', cleanupSync);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    // Stop the section we started; no further section starts, and `finally` stops Postgres.
    interrupted = true;
    if (current?.pid) process.kill(current.pid, 'SIGTERM');
  });
}

function runSection(s: Section, ctx: BenchContext): Promise<SectionResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(BENCH_DIR, s.file)], {
      env: { ...process.env, BENCH_CTX: JSON.stringify(ctx) },
      // stdout carries the handlers' Powertools log lines and EMF metrics: not ours to print.
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    current = child;
    child.on('close', (code, signal) => {
      current = undefined;
      if (existsSync(ctx.out)) {
        resolve(JSON.parse(readFileSync(ctx.out, 'utf8')) as SectionResult);
        return;
      }
      resolve({
        rows: [
          {
            section: s.id,
            measurement: `${s.title}: the section did not finish`,
            figure: signal ? `killed by ${signal}` : `exit code ${code}`,
            target: 'runs',
            met: false,
          },
        ],
        notes: [],
      });
    });
  });
}

const results: Array<{ section: Section; result: SectionResult; ms: number }> = [];
let failed = false;
try {
  for (const s of selected) {
    if (interrupted) {
      failed = true;
      break;
    }
    if (s.needsPg && !server) {
      process.stderr.write('Starting the bench PostgreSQL 17 ...\n');
      server = await startLocalPostgres({ settings: PG_SETTINGS });
    }
    process.stderr.write(`${s.title} ...\n`);
    const t0 = Date.now();
    const ctx: BenchContext = {
      quick,
      tmp,
      out: join(tmp, `${s.id}.result.json`),
      ...(server && s.needsPg
        ? {
            pg: {
              host: server.host,
              port: server.port,
              user: server.user,
              password: server.password,
              caPem: server.caPem,
            },
          }
        : {}),
    };
    const result = await runSection(s, ctx);
    results.push({ section: s, result, ms: Date.now() - t0 });
    process.stderr.write(`${s.title}: ${fmtMs(Date.now() - t0)}\n`);
  }
} catch (error) {
  failed = true;
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
} finally {
  await server?.stop().catch(() => {});
  cleanupSync();
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

const rows: Row[] = results.flatMap((r) => r.result.rows);
const metText = (m: boolean | null) => (m === null ? '-' : m ? 'yes' : 'NO');
const header = ['measurement', 'figure', 'target', 'met?'];
const body = rows.map((r) => [r.measurement, r.figure, r.target, metText(r.met)]);
const totalMs = Date.now() - started;

function textTable(head: string[], lines: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const fmt = (l: string[]) => l.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('-|-'), ...lines.map(fmt)].join('\n');
}

const md = (s: string) => s.replaceAll('|', '\\|');
// Other work on the machine shows as noise even in side-by-side ratios: the load average says how much.
const environment = `Node ${process.versions.node}, PostgreSQL 17 (embedded), ${cpus().length} CPU cores (${cpus()[0]?.model.trim() ?? 'unknown'}), ${quick ? 'quick mode' : 'full mode'}, load average ${loadBefore.toFixed(2)} at start, ${(loadavg()[0] ?? 0).toFixed(2)} at end`;
const met = rows.filter((r) => r.met === true).length;
const missed = rows.filter((r) => r.met === false).length;

const text = [
  '',
  `LakeTS Jobs for AWS benchmarks: ${command}`,
  environment,
  '',
  textTable(header, body),
  '',
  `${met} targets met, ${missed} missed; run took ${fmtMs(totalMs)} (${results.map((r) => `${r.section.id} ${fmtMs(r.ms)}`).join(', ')}).`,
  ...results.flatMap((r) =>
    r.result.notes.length > 0 ? ['', `${r.section.title}:`, ...r.result.notes.map((n) => `  ${n}`)] : [],
  ),
  '',
].join('\n');
process.stdout.write(text);

const markdown = [
  '# Benchmark results',
  '',
  `Command: \`${command}\` — ${new Date().toISOString()}; ${environment}; ${fmtMs(totalMs)}.`,
  '',
  `| ${header.join(' | ')} |`,
  `|${header.map(() => '---').join('|')}|`,
  ...body.map((l) => `| ${l.map(md).join(' | ')} |`),
  '',
  `${met} targets met, ${missed} missed.`,
  ...results.flatMap((r) =>
    r.result.notes.length > 0 ? ['', `## ${r.section.title}`, '', '```', ...r.result.notes, '```'] : [],
  ),
  '',
].join('\n');
const resultsFile = join(BENCH_DIR, 'RESULTS.md');
if (!only) {
  writeFileSync(resultsFile, markdown);
} else {
  // A partial run (--only) leaves the figures of the sections it did not run as they are: each of
  // its sections' block (table rows and notes, between markers) replaces that section's block, or is
  // appended.
  let current = existsSync(resultsFile) ? readFileSync(resultsFile, 'utf8') : '# Benchmark results\n';
  for (const r of results) {
    const begin = `<!-- section ${r.section.id}: written by ${command} -->`;
    const end = `<!-- end of section ${r.section.id} -->`;
    const sectionRows = r.result.rows.map((x) => [x.measurement, x.figure, x.target, metText(x.met)]);
    const block = [
      begin,
      `## ${r.section.title}`,
      '',
      `\`${command}\` — ${new Date().toISOString()}; ${environment}; ${fmtMs(r.ms)}.`,
      '',
      `| ${header.join(' | ')} |`,
      `|${header.map(() => '---').join('|')}|`,
      ...sectionRows.map((l) => `| ${l.map(md).join(' | ')} |`),
      ...(r.result.notes.length > 0 ? ['', '```', ...r.result.notes, '```'] : []),
      end,
    ].join('\n');
    const at = current.indexOf(`<!-- section ${r.section.id}:`);
    const stop = current.indexOf(end);
    current =
      at >= 0 && stop > at
        ? current.slice(0, at) + block + current.slice(stop + end.length)
        : `${current.trimEnd()}\n\n${block}\n`;
  }
  writeFileSync(resultsFile, current);
}

if (failed || rows.some((r) => r.target === 'runs' && r.met === false)) process.exitCode = 1;

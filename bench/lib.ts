// Shared pieces of the benchmark sections: the context the orchestrator (run.ts) hands each section
// process, result rows, timing and statistics, Postgres clients and psql runs.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createChronotable } from '../dev/chronotable.ts';
import { createDatabase, type LocalPostgresInfo } from '../dev/local-postgres.ts';
import { installLakets } from '../lib/schema/installer.ts';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BENCH_DIR = join(REPO_ROOT, 'bench');
export const PSQL = process.env['BENCH_PSQL'] ?? '/usr/bin/psql';

/** What run.ts gives every section process (JSON in BENCH_CTX). */
export interface BenchContext {
  quick: boolean;
  /** The bench cluster (absent for sections that need no Postgres). */
  pg?: LocalPostgresInfo;
  /** A scratch directory of this run, readable by the server's OS user; removed by run.ts. */
  tmp: string;
  /** Where the section writes its SectionResult as JSON. */
  out: string;
}

export interface Row {
  section: string;
  measurement: string;
  figure: string;
  target: string;
  /** null: informational, no target. */
  met: boolean | null;
}

export interface SectionResult {
  rows: Row[];
  /** Evidence printed after the table (top packages, per-statement timings, EXPLAIN output). */
  notes: string[];
}

export function context(): BenchContext {
  const raw = process.env['BENCH_CTX'];
  if (!raw) throw new Error('run the benchmarks with `npm run bench` (bench/run.ts), not this file directly');
  return JSON.parse(raw) as BenchContext;
}

export function requirePg(ctx: BenchContext): LocalPostgresInfo {
  if (!ctx.pg) throw new Error('this section needs the bench Postgres cluster');
  return ctx.pg;
}

export function writeResult(ctx: BenchContext, result: SectionResult): void {
  writeFileSync(ctx.out, JSON.stringify(result, null, 2));
}

/** Progress on stderr (stdout of section processes carries the handlers' own log lines, discarded). */
export function say(text: string): void {
  process.stderr.write(`  ${text}\n`);
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

export function fmtMs(ms: number): string {
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 100) return `${Math.round(ms)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export function fmtRatio(r: number, digits = 2): string {
  return Number.isFinite(r) ? r.toFixed(digits) : 'n/a';
}

export function fmtPct(r: number): string {
  return `${(r * 100).toFixed(r < 0.1 ? 2 : 1)}%`;
}

export function fmtInt(n: number): string {
  return n.toLocaleString('en');
}

export function dbUrl(info: LocalPostgresInfo, database: string): string {
  return `postgres://${encodeURIComponent(info.user)}:${encodeURIComponent(info.password)}@${info.host}:${info.port}/${encodeURIComponent(database)}`;
}

/**
 * A superuser client without TLS (psql runs with sslmode=disable too), session in UTC; `via` reaches
 * the cluster another way (e.g. through a proxy) or sets other session options.
 */
export async function connect(
  info: LocalPostgresInfo,
  database: string,
  via: { host?: string; port?: number; options?: string } = {},
): Promise<pg.Client> {
  const client = new pg.Client({
    host: via.host ?? info.host,
    port: via.port ?? info.port,
    user: info.user,
    password: info.password,
    database,
    options: via.options ?? '-c TimeZone=UTC',
  });
  client.on('error', () => {});
  await client.connect();
  return client;
}

export interface BenchDatabase {
  info: LocalPostgresInfo;
  database: string;
  /** Superuser client on it (the caller ends it). */
  db: pg.Client;
}

/** A new database on the bench cluster with LakeTS installed (the compatible schema), and a client on it. */
export async function benchDatabase(ctx: BenchContext, prefix: string): Promise<BenchDatabase> {
  const info = requirePg(ctx);
  const database = await createDatabase(info, prefix);
  const db = await connect(info, database);
  try {
    await installLakets(db);
  } catch (error) {
    await db.end();
    throw error;
  }
  return { info, database, db };
}

/** ChronoTable `metrics (ts, device int, value)`: 3 devices, a reading every 10 minutes for `days` days. */
export function smallMetrics(db: pg.Client, days: number): Promise<number> {
  return createChronotable(db, {
    name: 'metrics',
    columns: 'device int NOT NULL, value float8',
    partitions: { days },
    rows: {
      sql: `SELECT t, d, d FROM generate_series(now() - make_interval(days => $1), now(), interval '10 minutes') t,
                                generate_series(1, 3) d`,
      values: [days],
    },
  });
}

/**
 * Runs a psql script in one session and returns the wall time of the whole process (start, connect,
 * statements, exit). Same session settings as the jobs' connections; no TLS, like the direct handler.
 */
export function runPsql(info: LocalPostgresInfo, database: string, file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(PSQL, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-o', '/dev/null', '-f', file], {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        PGHOST: info.host,
        PGPORT: String(info.port),
        PGUSER: info.user,
        PGPASSWORD: info.password,
        PGDATABASE: database,
        PGSSLMODE: 'disable',
        PGOPTIONS: '-c statement_timeout=600000 -c lock_timeout=30000 -c TimeZone=UTC',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      if (code === 0) resolve(ms);
      else reject(new Error(`psql -f ${file} exited with ${code}: ${stderr.trim().slice(0, 500)}`));
    });
  });
}

export function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

export function errorText(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

/** Runs a section's main, writing a failure row instead of results when it throws. */
export async function section(
  name: string,
  main: (ctx: BenchContext) => Promise<SectionResult>,
): Promise<void> {
  const ctx = context();
  try {
    writeResult(ctx, await main(ctx));
  } catch (error) {
    process.stderr.write(`section ${name} failed: ${errorText(error)}\n`);
    writeResult(ctx, {
      rows: [
        {
          section: name,
          measurement: `${name}: the section failed`,
          figure: (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? 'error',
          target: 'runs',
          met: false,
        },
      ],
      notes: [],
    });
    process.exitCode = 1;
  }
}

// The reliability suite's figures: every test file counts what it tried (scenarios, faults by kind,
// job runs, rows checked, rows lost, runs ending inconsistent, inputs rejected, log lines scanned)
// and, when its tests are done, adds its part to this run's collection. Test files run in separate
// processes, so the parts meet in a directory named after the run (the harness's PostgreSQL
// cluster is new each run); the file that completes the set prints the table and, when
// RELIABILITY_FIGURES=write (as `npm run test:reliability` sets), rewrites test/reliability/FIGURES.md
// — so a plain `npm test` leaves the committed figures alone. A partial run (one file alone) prints
// its own figures.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeEach, inject } from 'vitest';

const HERE = dirname(dirname(fileURLToPath(import.meta.url))); // test/reliability
const ORDER = ['durability', 'faults', 'overlap', 'bad-input', 'security'];

export interface Part {
  runId: string;
  area: string;
  summary: string;
  tests: number;
  startedAt: number;
  finishedAt: number;
  counts: Record<string, number>;
  faults: Record<string, number>;
  extra: Record<string, number>;
  meta: Record<string, string>;
}

export interface Figures {
  /** Adds to one of the standard columns. */
  count(key: 'scenarios' | 'jobRuns' | 'rowsChecked' | 'rowsLost' | 'inconsistentRuns', n?: number): void;
  /** One injected fault of this kind (e.g. "pg_terminate_backend during retention"). */
  fault(kind: string, n?: number): void;
  /** Any other figure worth quoting (e.g. "payloads rejected"). */
  extra(label: string, n?: number): void;
  meta(key: string, value: string): void;
  readonly part: Part;
}

/** The figures of one test file; call once at module level with `import.meta.url`. */
export function figures(fileUrl: string, summary: string): Figures {
  const area = basename(fileURLToPath(fileUrl)).replace(/\.test\.ts$/, '');
  const info = inject('postgres');
  const part: Part = {
    runId: createHash('sha256').update(`${info.port}:${info.password}`).digest('hex').slice(0, 16),
    area,
    summary,
    tests: 0,
    startedAt: Date.now(),
    finishedAt: 0,
    counts: { scenarios: 0, jobRuns: 0, rowsChecked: 0, rowsLost: 0, inconsistentRuns: 0 },
    faults: {},
    extra: {},
    meta: { node: process.version },
  };
  beforeEach(() => {
    part.tests += 1;
  });
  afterAll(() => {
    part.finishedAt = Date.now();
    publish(part);
  });
  return {
    count(key, n = 1) {
      part.counts[key] = (part.counts[key] ?? 0) + n;
    },
    fault(kind, n = 1) {
      part.faults[kind] = (part.faults[kind] ?? 0) + n;
    },
    extra(label, n = 1) {
      part.extra[label] = (part.extra[label] ?? 0) + n;
    },
    meta(key, value) {
      part.meta[key] = value;
    },
    part,
  };
}

function withLock<T>(dir: string, fn: () => T): T {
  const lock = join(dir, '.lock');
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (Date.now() > deadline) break; // a crashed holder: go ahead rather than hang
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
  try {
    return fn();
  } finally {
    try {
      rmdirSync(lock);
    } catch {}
  }
}

const WRITE = process.env['RELIABILITY_FIGURES'] === 'write';

function publish(part: Part): void {
  const dir = join(tmpdir(), `lakets-reliability-${part.runId}`);
  mkdirSync(dir, { recursive: true });
  const { parts, complete } = withLock(dir, () => {
    const file = join(dir, `${part.area}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify(part));
    renameSync(`${file}.tmp`, file);
    const parts = readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Part);
    const expected = readdirSync(HERE)
      .filter((f) => f.endsWith('.test.ts'))
      .map((f) => f.replace(/\.test\.ts$/, ''));
    const complete = expected.every((a) => parts.some((p) => p.area === a));
    if (complete && WRITE) writeFileSync(join(HERE, 'FIGURES.md'), render(parts));
    return { parts, complete };
  });
  if (complete) rmSync(dir, { recursive: true, force: true });
  const lines = [`reliability figures, ${part.area}: ${oneFileLine(part)}`];
  if (complete) lines.push('', render(parts), WRITE ? '(written to test/reliability/FIGURES.md)' : '');
  // Printed after the file's own output capture has been restored.
  console.log(lines.join('\n'));
}

function sum(record: Record<string, number>): number {
  return Object.values(record).reduce((a, b) => a + b, 0);
}

function oneFileLine(p: Part): string {
  const c = p.counts;
  return `${p.tests} tests, ${c['scenarios']} scenarios, ${sum(p.faults)} faults, ${c['jobRuns']} job runs, ${c['rowsChecked']} rows checked, ${c['rowsLost']} rows lost, ${c['inconsistentRuns']} inconsistent runs`;
}

const n = (x: number) => x.toLocaleString('en');

export function render(parts: Part[]): string {
  const sorted = [...parts].sort(
    (a, b) =>
      (ORDER.indexOf(a.area) + 1 || 99) - (ORDER.indexOf(b.area) + 1 || 99) || a.area.localeCompare(b.area),
  );
  const total = (key: string) => sorted.reduce((a, p) => a + (p.counts[key] ?? 0), 0);
  const wall = Math.max(...sorted.map((p) => p.finishedAt)) - Math.min(...sorted.map((p) => p.startedAt));
  const meta = Object.assign({}, ...sorted.map((p) => p.meta)) as Record<string, string>;
  const out: string[] = [
    '# Reliability figures',
    '',
    'Written by `npm run test:reliability` (also part of `npm test`); overwritten on every complete run.',
    `Node ${meta['node'] ?? '?'}, PostgreSQL ${meta['postgres'] ?? '?'}, fast-check seed ${meta['seed'] ?? '?'}; ` +
      `${sorted.length} test files, ${sorted.reduce((a, p) => a + p.tests, 0)} tests, ${(wall / 1000).toFixed(0)} s wall time.`,
    '',
    '| area | what it tries | tests | scenarios | faults injected | job runs | rows checked | rows lost | inconsistent runs |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const p of sorted) {
    const c = p.counts;
    out.push(
      `| ${p.area} | ${p.summary} | ${p.tests} | ${n(c['scenarios'] ?? 0)} | ${n(sum(p.faults))} | ${n(c['jobRuns'] ?? 0)} | ${n(c['rowsChecked'] ?? 0)} | ${n(c['rowsLost'] ?? 0)} | ${n(c['inconsistentRuns'] ?? 0)} |`,
    );
  }
  out.push(
    `| **total** | | **${sorted.reduce((a, p) => a + p.tests, 0)}** | **${n(total('scenarios'))}** | **${n(sorted.reduce((a, p) => a + sum(p.faults), 0))}** | **${n(total('jobRuns'))}** | **${n(total('rowsChecked'))}** | **${n(total('rowsLost'))}** | **${n(total('inconsistentRuns'))}** |`,
    '',
    '## Faults injected, by kind',
    '',
    '| area | fault | count |',
    '|---|---|--:|',
  );
  for (const p of sorted) {
    for (const [kind, count] of Object.entries(p.faults).sort(([a], [b]) => a.localeCompare(b))) {
      out.push(`| ${p.area} | ${kind} | ${n(count)} |`);
    }
  }
  out.push('', '## Other figures', '', '| area | figure | count |', '|---|---|--:|');
  for (const p of sorted) {
    for (const [label, count] of Object.entries(p.extra).sort(([a], [b]) => a.localeCompare(b))) {
      out.push(`| ${p.area} | ${label} | ${n(count)} |`);
    }
  }
  out.push(
    '',
    '"Rows lost": a row the test wrote that is gone although Lakehouse Sync (the wal2delta fixture) never',
    'reported it committed while STREAMING, or gone from a chunk that was not dropped. "Inconsistent runs": a',
    'job run after which the registry and the catalog disagree, a report disagrees with what changed, or',
    'the next clean run does not converge to the state of an uninterrupted run. Both must be 0 for the suite',
    'to pass.',
    '',
  );
  return out.join('\n');
}

// Overlapping runs through the deployed handlers (two "containers" per job, each with its own
// connection, as the job role with exactly the documented grants): every job twice at once, and
// all four jobs twice at once, for many rounds, each round with fresh work (missing partitions,
// re-created expired chunks, untiered chunks, new and late rows for the RollUps). No run may fail;
// a second run either skips cleanly (the job lock) or finds nothing left. No work is done twice or
// lost: partitions created once, chunks tiered and dropped once and exactly those the dry run
// predicted, no row gone from a live chunk, RollUps equal to a from-scratch aggregate.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installWal2delta, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { unlimited } from '../../lib/jobs/budget.ts';
import { jobNamed } from '../../lib/jobs/catalog.ts';
import { runJob } from '../../lib/jobs/runner.ts';
import type { JobName, JobReport } from '../../lib/jobs/types.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { quote } from '../support/lakets-fixtures.ts';
import { captureOutput, label } from './support/capture.ts';
import { figures } from './support/figures.ts';
import {
  applyGrants,
  coldHandler,
  type Handler,
  invoke,
  noteServer,
  registryMismatches,
  setFunctionEnv,
} from './support/jobs.ts';
import { buildEstate, type Estate, lastDrift, rollupDrift } from './support/scenario.ts';

const fig = figures(
  import.meta.url,
  'each job twice at once, all four jobs twice at once, RollUp refresh racing writers',
);
const capture = captureOutput();

const ROUNDS = Number(process.env['RELIABILITY_OVERLAP_ROUNDS'] ?? 20);
const JOBS: JobName[] = ['partition-manager', 'tiering', 'retention', 'rollup-refresh'];
const SKIP_REASON = /^another [a-z-]+ run holds this database's job lock; this run changed nothing$/;

let db: TestDatabase;
let admin: pg.Client;
let e: Estate;
const role = `rel_ovl_${randomBytes(4).toString('hex')}`;
const password = randomBytes(18).toString('base64url');
let containers: Record<JobName, [Handler, Handler]>;

beforeAll(async () => {
  db = await freshDatabase({ lakets: true });
  admin = await db.connect();
  await noteServer(fig, admin);
  await installWal2delta(admin);
  await admin.query(`CREATE ROLE ${pg.escapeIdentifier(role)} LOGIN PASSWORD ${pg.escapeLiteral(password)}`);
  e = await buildEstate(admin, 'ov');
  await applyGrants(admin, role);
  setFunctionEnv({ LAKETS_DATABASE_URL: db.urlFor(role, password) });
  containers = Object.fromEntries(JOBS.map((j) => [j, [coldHandler(j, {}), coldHandler(j, {})]])) as Record<
    JobName,
    [Handler, Handler]
  >;
});

afterAll(async () => {
  await admin.query(`DROP OWNED BY ${pg.escapeIdentifier(role)}`).catch(() => {});
  await admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`).catch(() => {});
  fig.extra('log lines scanned for secrets', capture.texts.length);
  expect(capture.leaks([password, db.info.password, db.urlFor(role, password)]).map(label)).toEqual([]);
});

async function ids(): Promise<Record<string, number>> {
  const { rows } = await admin.query<{ table_name: string; id: number }>(
    'SELECT table_name, id FROM lakets._chronotable_registry',
  );
  return Object.fromEntries(rows.map((r) => [r.table_name, r.id]));
}

/** Fresh work for every job; returns how many partitions the Partition Manager must create. */
async function makeWork(round: number): Promise<number> {
  const id = await ids();
  let missing = 0;
  // Partition Manager: 1-3 of the future partitions of each table go missing.
  for (const t of [e.a, e.b, e.c]) {
    const { rows } = await admin.query<{ chunk_name: string }>(
      `SELECT chunk_name FROM lakets._chunk_metadata WHERE chronotable_id = $1 AND range_start > now()
        ORDER BY range_start DESC LIMIT $2`,
      [id[t], 1 + (round % 3)],
    );
    for (const r of rows) {
      await admin.query(`DROP TABLE public.${quote(r.chunk_name.slice('public.'.length))}`);
      await admin.query('DELETE FROM lakets._chunk_metadata WHERE chunk_name = $1', [r.chunk_name]);
      missing++;
    }
  }
  // Retention: expired ranges that were dropped come back with rows (re-created partitions).
  for (const t of [e.a, e.b]) {
    await admin.query(
      `SELECT lakets._ensure_partitions($1, p_range_start => now() - interval '8 days', p_range_end => now() - interval '5 days')`,
      [id[t]],
    );
    await admin.query(
      `INSERT INTO public.${quote(t)}
       SELECT date_trunc('day', now()) - make_interval(days => d) + make_interval(hours => h), 'r' || $1::int, d * 100 + h
         FROM generate_series(6, 8) d, generate_series(0, 23, 6) h
        WHERE EXISTS (SELECT 1 FROM lakets._chunk_metadata m WHERE m.chronotable_id = $2 AND m.status <> 'dropped'
                        AND m.range_start = date_trunc('day', now()) - make_interval(days => d))`,
      [round, id[t]],
    );
  }
  // Tiering: two tiered chunks of c go back to active.
  await admin.query(
    `SELECT lakets.untier_chunk(chunk_name) FROM (SELECT chunk_name FROM lakets._chunk_metadata
      WHERE chronotable_id = $1 AND status = 'tiered' ORDER BY range_start LIMIT 2) x`,
    [id[e.c]],
  );
  // RollUps: new rows now, and late rows under the watermarks (invalidation).
  for (const t of [e.a, e.b]) {
    await admin.query(
      `INSERT INTO public.${quote(t)} VALUES (now(), 'n' || $1::int, $1), (now() - interval '30 hours', 'l' || $1::int, $1)`,
      [round],
    );
  }
  for (const t of [e.a, e.b, e.c]) await syncCaughtUp(admin, t);
  // One late write Sync has not caught up with: deferred by both gated jobs.
  await admin.query(
    `UPDATE public.${quote(e.a)} SET value = value + 1 WHERE ts >= date_trunc('day', now()) - interval '4 days' AND ts < date_trunc('day', now()) - interval '3 days' AND device = 'd1'`,
  );
  return missing;
}

async function statuses(): Promise<Map<string, string>> {
  const { rows } = await admin.query<{ chunk_name: string; status: string }>(
    'SELECT chunk_name, status FROM lakets._chunk_metadata',
  );
  return new Map(rows.map((r) => [r.chunk_name, r.status]));
}

async function rowsPerChunk(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const t of [e.a, e.b, e.c]) {
    const { rows } = await admin.query<{ chunk: string; n: number }>(
      `SELECT format('%s.%s', n.nspname, c.relname) AS chunk, (SELECT count(*) FROM public.${quote(t)} x WHERE x.tableoid = c.oid)::int AS n
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE i.inhparent = $1::regclass`,
      [`public.${quote(t)}`],
    );
    for (const r of rows) counts.set(r.chunk, r.n);
  }
  return counts;
}

async function dryRun(job: JobName, outcome: string): Promise<string[]> {
  const report = await runJob(
    jobNamed(job),
    admin,
    { dryRun: true, force: false, trigger: 'manual' },
    unlimited,
  );
  return report.items.filter((i) => i.kind === 'chunk' && i.outcome === outcome).map((i) => i.name);
}

const chunksOf = (reports: JobReport[], job: JobName, outcome: string) =>
  reports
    .filter((r) => r.job === job)
    .flatMap((r) => r.items.filter((i) => i.kind === 'chunk' && i.outcome === outcome).map((i) => i.name));

describe('overlapping runs', () => {
  it(`${ROUNDS} rounds: each job twice at once, then all four twice at once; no error, no work done twice or lost`, async () => {
    let skipped = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      const removed = await makeWork(round);
      const pm = await runJob(
        jobNamed('partition-manager'),
        admin,
        { dryRun: true, force: false, trigger: 'manual' },
        unlimited,
      );
      const missing = pm.items.reduce((n, i) => n + (i.count ?? 0), 0);
      expect(missing).toBeGreaterThanOrEqual(removed);
      const willTier = await dryRun('tiering', 'would-tier');
      const willDrop = await dryRun('retention', 'would-drop');
      expect(willDrop.length).toBeGreaterThan(0);
      const before = await statuses();
      const rowsBefore = await rowsPerChunk();

      // Odd rounds: each job twice at once, one job after the other. Even rounds: all eight at once.
      const outcomes =
        round % 2 === 1
          ? await JOBS.reduce<Promise<Awaited<ReturnType<typeof invoke>>[]>>(
              async (done, job) => [
                ...(await done),
                ...(await Promise.all(containers[job].map((h) => invoke(h, job, capture)))),
              ],
              Promise.resolve([]),
            )
          : await Promise.all(JOBS.flatMap((job) => containers[job].map((h) => invoke(h, job, capture))));
      fig.count('scenarios');
      fig.count('jobRuns', outcomes.length);

      const problems: string[] = [];
      const reports: JobReport[] = [];
      for (const o of outcomes) {
        if (o.error) problems.push(`a handler threw: ${o.error.message}`);
        if (!o.report) continue;
        reports.push(o.report);
        if (o.report.status === 'skipped') {
          skipped++;
          if (!SKIP_REASON.test(o.report.reason ?? ''))
            problems.push(`skipped without the lock reason: ${o.report.reason}`);
        } else if (o.report.status !== 'ok') problems.push(`${o.report.job} ended ${o.report.status}`);
      }
      const after = await statuses();
      const newly = (s: string) =>
        [...after].filter(([n, v]) => v === s && before.get(n) !== s).map(([n]) => n);
      const sorted = (x: string[]) => JSON.stringify([...x].sort());
      const created = reports.reduce((n, r) => n + (r.totals['partitionsCreated'] ?? 0), 0);
      if (created !== missing) problems.push(`${created} partitions created for ${missing} missing`);
      const dropped = chunksOf(reports, 'retention', 'dropped');
      if (new Set(dropped).size !== dropped.length)
        problems.push(`a chunk was reported dropped twice: ${dropped}`);
      if (sorted(dropped) !== sorted(newly('dropped')) || sorted(dropped) !== sorted(willDrop))
        problems.push(
          `dropped ${sorted(newly('dropped'))}, reported ${sorted(dropped)}, predicted ${sorted(willDrop)}`,
        );
      const tiered = chunksOf(reports, 'tiering', 'tiered');
      if (new Set(tiered).size !== tiered.length)
        problems.push(`a chunk was reported tiered twice: ${tiered}`);
      const nowTiered = newly('tiered');
      // A chunk past drop_after may be tiered and dropped in the same round, or dropped before Tiering saw it.
      if (
        nowTiered.some((c) => !tiered.includes(c)) ||
        tiered.some((c) => !nowTiered.includes(c) && !dropped.includes(c))
      )
        problems.push(`tiered ${sorted(nowTiered)}, reported ${sorted(tiered)}`);
      if (willTier.some((c) => !tiered.includes(c) && !dropped.includes(c)))
        problems.push(`predicted to tier ${sorted(willTier)}, tiered ${sorted(tiered)}`);
      problems.push(...(await registryMismatches(admin)));
      const dup = await admin.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM (SELECT chronotable_id, range_start FROM lakets._chunk_metadata
          GROUP BY 1, 2 HAVING count(*) > 1) x`,
      );
      if (dup.rows[0]?.n) problems.push(`${dup.rows[0].n} ranges registered twice`);

      // No row gone from a chunk that was not dropped.
      const rowsAfter = await rowsPerChunk();
      let lost = 0;
      for (const [chunk, n] of rowsBefore) {
        if (after.get(chunk) === 'dropped') continue;
        if ((rowsAfter.get(chunk) ?? 0) !== n) lost += Math.abs(n - (rowsAfter.get(chunk) ?? 0));
        fig.count('rowsChecked', n);
      }
      fig.count('rowsLost', lost);
      if (lost > 0) problems.push(`${lost} rows lost from live chunks`);
      const drift = await rollupDrift(admin, e);
      if (drift !== 0)
        problems.push(`RollUps differ from a from-scratch aggregate in ${drift} rows: ${lastDrift}`);

      if (problems.length > 0) fig.count('inconsistentRuns');
      expect(problems, `round ${round}`).toEqual([]);
    }
    fig.extra('runs skipped cleanly by the job lock', skipped);
    // Nothing was left undone: quiet runs afterwards find no work.
    for (const job of JOBS) {
      const o = await invoke(containers[job][0], job, capture);
      fig.count('jobRuns');
      expect(o.report?.status).toBe('ok');
      const t = o.report?.totals ?? {};
      expect((t['partitionsCreated'] ?? 0) + (t['chunksTiered'] ?? 0) + (t['chunksDropped'] ?? 0)).toBe(0);
    }
  }, 180_000);

  it('RollUp refresh racing itself and writers (late and current rows): after one quiet refresh, equal to a from-scratch aggregate', async () => {
    const writer = await db.connect();
    for (let round = 1; round <= 10; round++) {
      const writes = (async () => {
        for (let i = 0; i < 15; i++) {
          await writer.query(
            `INSERT INTO public.${quote(e.a)} VALUES (now() - make_interval(hours => $1), 'w' || $2::int, $1), (now(), 'w', 1)`,
            [(i * 7) % 60, round],
          );
          await writer.query(
            `UPDATE public.${quote(e.b)} SET value = value + 1 WHERE ts >= now() - make_interval(hours => $1 + 1) AND ts < now() - make_interval(hours => $1)`,
            [(i * 5) % 48],
          );
        }
      })();
      const refreshes = Promise.all(
        containers['rollup-refresh'].flatMap((h) => [
          invoke(h, 'rollup-refresh', capture),
          invoke(h, 'rollup-refresh', capture),
        ]),
      );
      const [, outs] = await Promise.all([writes, refreshes]);
      fig.count('scenarios');
      fig.count('jobRuns', outs.length);
      for (const o of outs) {
        expect(o.error?.message).toBeUndefined();
        expect(['ok', 'skipped']).toContain(o.report?.status);
      }
      // The quiet refresh that follows catches up whatever the racing ones could not see.
      const quiet = await invoke(containers['rollup-refresh'][0], 'rollup-refresh', capture);
      fig.count('jobRuns');
      expect(quiet.report?.status).toBe('ok');
      const drift = await rollupDrift(admin, e);
      const { rows } = await admin.query<{ n: number }>(
        `SELECT ((SELECT count(*) FROM public.${quote(e.a)}) + (SELECT count(*) FROM public.${quote(e.b)}))::int AS n`,
      );
      fig.count('rowsChecked', rows[0]?.n ?? 0);
      if (drift !== 0) fig.count('inconsistentRuns');
      expect(drift, `round ${round}: ${lastDrift}`).toBe(0);
    }
  }, 120_000);
});

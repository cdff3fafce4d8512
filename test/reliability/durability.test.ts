// Durability, property-based: random sequences of writes, late writes, Lakehouse Sync progress and
// failures (the wal2delta fixture: committed_lsn advanced to the WAL head or part-way, stalled,
// SNAPSHOTTING / SKIPPED, the table or the job role's privileges on it gone and back) and job runs
// (Tiering, Retention, Retention from two sessions, Tiering and Retention at once, a write in flight
// during Retention, Partition Manager) in any order. The test keeps its own model: for each row it
// wrote, the WAL position right after the write committed, and the highest committed_lsn Sync has
// reported while STREAMING. A row is "proven" once that committed_lsn reached its write. After every
// step, every unproven row must still be in the ChronoTable with its last value, and every row must
// be there unless its chunk was dropped. Jobs run as the superuser in some scenarios and as a plain
// login role holding exactly the lib/grants.ts statements in the others.
//
// Sync reports progress between the test's transactions, never while one of its writes is open: a
// write's chunk stamp (last_write_lsn) is taken before its commit record, so a committed_lsn that
// falls between the two would pass the gate for a write Delta does not have yet. That is the
// contract's proof as specified (a known gap, reported, not modelled here).
// Rerun a failure with RELIABILITY_SEED=<seed>; RELIABILITY_DURABILITY_RUNS sets the number of scenarios.
// The scenarios and the model (Run) are in support/durability-model.ts.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installWal2delta } from '../../dev/fake-lakehouse-sync.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { captureOutput, label } from './support/capture.ts';
import { bindWorld, Run, scenario } from './support/durability-model.ts';
import { figures } from './support/figures.ts';
import { applyGrants, clientFor, noteServer } from './support/jobs.ts';

const fig = figures(
  import.meta.url,
  'random writes, late writes, Sync progress/failures and job runs in any order',
);
const capture = captureOutput();

const SEED = Number(process.env['RELIABILITY_SEED'] ?? 20261124);
const RUNS = Number(process.env['RELIABILITY_DURABILITY_RUNS'] ?? 60);
fig.meta('seed', String(SEED));

let db: TestDatabase;
let admin: pg.Client;
let writer: pg.Client;
const role = `rel_dur_${randomBytes(4).toString('hex')}`;
const password = randomBytes(18).toString('base64url');
const sessions = {} as Record<'admin' | 'role', [pg.Client, pg.Client]>;

beforeAll(async () => {
  db = await freshDatabase({ lakets: true });
  admin = await db.connect();
  writer = await db.connect();
  await noteServer(fig, admin);
  await installWal2delta(admin);
  await admin.query(`CREATE ROLE ${pg.escapeIdentifier(role)} LOGIN PASSWORD ${pg.escapeLiteral(password)}`);
  await applyGrants(admin, role);
  sessions.admin = [await db.connect(), await db.connect()];
  sessions.role = [await clientFor(db.urlFor(role, password)), await clientFor(db.urlFor(role, password))];
  bindWorld({ admin, writer, sessions, role, fig, capture });
});

afterAll(async () => {
  await Promise.allSettled(sessions.role?.map((c) => c.end()) ?? []);
  await admin.query(`DROP OWNED BY ${pg.escapeIdentifier(role)}`).catch(() => {});
  await admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`).catch(() => {});
  const leaks = capture.leaks([password, db.info.password]);
  fig.extra('reports scanned for secrets', capture.texts.length);
  expect(leaks.map(label)).toEqual([]);
});

describe('durability under random writes, Sync progress and job runs', () => {
  it(`never loses a row Sync has not committed (fast-check, seed ${SEED}, ${RUNS} scenarios)`, async () => {
    const property = fc.asyncProperty(scenario, async (s) => {
      fig.count('scenarios');
      if (s.asRole) fig.extra('scenarios whose jobs ran as the job role (documented grants only)');
      const run = new Run(s);
      await run.setup();
      await run.checkRows();
      try {
        for (const a of s.actions) await run.step(a);
        // Finally Sync catches up and streams: the next runs may drop what is expired, and still lose nothing.
        if (run.synced) {
          await run.step({ kind: 'w2d-table', present: true });
          await run.step({ kind: 'w2d-select', granted: true });
          await run.step({ kind: 'w2d-usage', granted: true });
          await run.step({ kind: 'sync-status', status: 'STREAMING' });
          await run.step({ kind: 'sync-head' });
          await run.step({ kind: 'tiering' });
          await run.step({ kind: 'retention' });
          const left = await admin.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM lakets._chunk_metadata
              WHERE chronotable_id = $1 AND status <> 'dropped' AND range_end <= now() - interval '4 days'`,
            [run.id],
          );
          // Everything expired and proven is gone now: the gate defers, it never blocks forever.
          if ((left.rows[0]?.n ?? 0) > 0)
            run.fail(`${left.rows[0]?.n} expired chunks left after Sync caught up`);
        }
      } finally {
        await run.teardown();
      }
    });
    try {
      await fc.assert(property, { seed: SEED, numRuns: RUNS, endOnFailure: false });
    } catch (error) {
      const cause = (error as Error).cause;
      throw new Error(
        `durability property failed; rerun with RELIABILITY_SEED=${SEED}: ${(error as Error).message}\n${cause instanceof Error ? cause.message : ''}`,
      );
    }
    expect(fig.part.counts['rowsLost']).toBe(0);
    expect(fig.part.counts['inconsistentRuns']).toBe(0);
  }, 240_000);
});

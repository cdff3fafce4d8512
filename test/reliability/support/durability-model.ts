// The model and the generators of test/reliability/durability.test.ts, moved here as they were: the
// scenarios (fast-check arbitraries of writes, Sync progress and failures, job runs) and Run, which
// plays one scenario against the database while keeping its own model of every row it wrote (the WAL
// position right after the write committed) and of the highest committed_lsn Sync reported, and checks
// after each step that no row Sync has not committed is lost. The test binds the connections it
// opened (bindWorld) before the first Run.
import fc from 'fast-check';
import pg from 'pg';
import {
  forgetDroppedShadows,
  installWal2delta,
  type SyncStatus,
  setSync,
} from '../../../dev/fake-lakehouse-sync.ts';
import { unlimited } from '../../../lib/jobs/budget.ts';
import { jobNamed } from '../../../lib/jobs/catalog.ts';
import { runJob } from '../../../lib/jobs/runner.ts';
import type { JobName, JobReport } from '../../../lib/jobs/types.ts';
import type { Capture } from './capture.ts';
import type { Figures } from './figures.ts';
import { applyGrants, lsn, registryMismatches, scheduled } from './jobs.ts';

/** What a Run works with: the test's connections, its job role, and where figures and reports go. */
export interface DurabilityWorld {
  admin: pg.Client;
  /** The session the scenario's writes go through. */
  writer: pg.Client;
  /** Two sessions each, as the superuser and as the job role (concurrent job runs). */
  sessions: Record<'admin' | 'role', [pg.Client, pg.Client]>;
  role: string;
  fig: Figures;
  capture: Capture;
}

let admin: pg.Client;
let writer: pg.Client;
let sessions: DurabilityWorld['sessions'];
let role: string;
let fig: Figures;
let capture: Capture;
let counter = 0;

/** Binds the world every Run uses (once, in the test's beforeAll). */
export function bindWorld(world: DurabilityWorld): void {
  ({ admin, writer, sessions, role, fig, capture } = world);
}

export const DAYS = 10; // rows are written into the chunks of the last DAYS days

export type Status = SyncStatus;
export type Policy =
  | 'tiered_retention'
  | 'sync+retention'
  | 'sync+retention+tiering'
  | 'tiered_retention+retention'
  | 'tiered_retention, no sync';

export type Action =
  | { kind: 'insert'; day: number; n: number }
  | { kind: 'update'; day: number }
  | { kind: 'delete'; day: number }
  | { kind: 'sync-head' }
  | { kind: 'sync-partial'; at: number }
  | { kind: 'sync-status'; status: Status }
  | { kind: 'sync-stall' }
  | { kind: 'w2d-table'; present: boolean }
  | { kind: 'w2d-select'; granted: boolean }
  | { kind: 'w2d-usage'; granted: boolean }
  | { kind: 'tiering' }
  | { kind: 'retention' }
  | { kind: 'retention-two-sessions' }
  | { kind: 'tiering-and-retention' }
  | {
      kind: 'write-during-retention';
      day: number | 'oldest-expired';
      write: 'update' | 'insert';
      caughtUpFirst: boolean;
    }
  | { kind: 'partition-manager' };

export interface Scenario {
  policy: Policy;
  asRole: boolean;
  initial: 'none' | Status;
  actions: Action[];
}

const day = fc.integer({ min: 0, max: DAYS - 1 });
const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({ kind: fc.constant('insert' as const), day, n: fc.integer({ min: 1, max: 4 }) }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('update' as const), day }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), day }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'sync-head' as const }) },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('sync-partial' as const), at: fc.integer({ min: 0, max: 99 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('sync-status' as const),
      status: fc.constantFrom<Status>('STREAMING', 'STREAMING', 'SNAPSHOTTING', 'SKIPPED'),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'sync-stall' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('w2d-table' as const), present: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('w2d-select' as const), granted: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('w2d-usage' as const), granted: fc.boolean() }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'tiering' as const }) },
  { weight: 4, arbitrary: fc.constant({ kind: 'retention' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'retention-two-sessions' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'tiering-and-retention' as const }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('write-during-retention' as const),
      // Mostly into chunks past drop_after (4 days), where Retention has something to drop; the
      // oldest of them is the one Retention locks first.
      day: fc.oneof(
        { weight: 2, arbitrary: fc.constant('oldest-expired' as const) },
        { weight: 2, arbitrary: fc.integer({ min: 4, max: DAYS - 1 }) },
        { weight: 1, arbitrary: day },
      ),
      write: fc.constantFrom<'update' | 'insert'>('update', 'insert'),
      caughtUpFirst: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'partition-manager' as const }) },
);
export const scenario: fc.Arbitrary<Scenario> = fc.record({
  policy: fc.constantFrom<Policy>(
    'tiered_retention',
    'sync+retention',
    'sync+retention+tiering',
    'tiered_retention+retention',
    'tiered_retention, no sync',
  ),
  asRole: fc.boolean(),
  initial: fc.constantFrom<'none' | Status>('none', 'SNAPSHOTTING', 'STREAMING', 'STREAMING'),
  actions: fc.array(action, { minLength: 4, maxLength: 30 }),
});

const fmt = (v: bigint) =>
  `${(v >> 32n).toString(16).toUpperCase()}/${(v & 0xffffffffn).toString(16).toUpperCase()}`;

export interface Row {
  day: number;
  /** Its chunk, named when the row was first written. */
  chunk: string;
  v: number;
  /** WAL insert position right after the transaction that last wrote the row committed. */
  lsn: bigint;
}

export class Run {
  readonly name: string;
  readonly rows = new Map<number, Row>();
  readonly writes: bigint[] = [];
  nextId = 1;
  sync: { status: Status | null; lsn: bigint | null } = { status: null, lsn: null };
  proven = 0n;
  w2d = { present: true, select: true, usage: true };
  synced: boolean;
  log: string[] = [];
  id = 0;

  readonly s: Scenario;

  constructor(s: Scenario) {
    this.s = s;
    this.name = `dur_${++counter}`;
    this.synced = s.policy !== 'tiered_retention, no sync';
  }

  get clients(): [pg.Client, pg.Client] {
    return this.s.asRole ? sessions.role : sessions.admin;
  }

  fail(message: string): never {
    throw new Error(
      `${this.name} (${this.s.policy}, ${this.s.asRole ? 'job role' : 'superuser'}): ${message}\n  steps: ${this.log.join(' → ')}`,
    );
  }

  async setup(): Promise<void> {
    // Whatever an earlier scenario left of Sync's table and the role's privileges is undone.
    await installWal2delta(admin);
    await admin.query(
      `GRANT USAGE ON SCHEMA wal2delta TO ${pg.escapeIdentifier(role)}; GRANT SELECT ON wal2delta.tables TO ${pg.escapeIdentifier(role)}`,
    );
    const t = pg.escapeIdentifier(this.name);
    await admin.query(`CREATE TABLE public.${t} (ts timestamptz NOT NULL, id int NOT NULL, v int NOT NULL)`);
    this.id = (
      await admin.query<{ id: number }>(
        `SELECT lakets.create_chronotable($1, 'ts', interval '1 day') AS id`,
        [this.name],
      )
    ).rows[0]?.id as number;
    await admin.query(
      `SELECT lakets._ensure_partitions($1, p_range_start => now() - make_interval(days => $2))`,
      [this.id, DAYS + 1],
    );
    const p = this.s.policy;
    if (p.startsWith('tiered_retention'))
      await admin.query(
        `SELECT lakets.add_tiered_retention_policy($1, interval '2 days', interval '4 days')`,
        [this.name],
      );
    if (p.includes('retention') && !p.startsWith('tiered_retention'))
      await admin.query(`SELECT lakets.add_retention_policy($1, interval '4 days')`, [this.name]);
    if (p === 'tiered_retention+retention')
      await admin.query(`SELECT lakets.add_retention_policy($1, interval '3 days')`, [this.name]);
    if (p.includes('tiering'))
      await admin.query(`SELECT lakets.add_tiering_policy($1, interval '2 days')`, [this.name]);
    if (this.synced) await admin.query(`SELECT lakets.enable_sync($1)`, [this.name]);
    // Two rows per day, written after sync was enabled (Sync snapshots the shadow from here on).
    for (let d = 0; d < DAYS; d++) await this.insert(d, 2);
    if (this.s.initial !== 'none') {
      this.sync = { status: this.s.initial, lsn: await this.head() };
      await this.publish();
    }
  }

  async teardown(): Promise<void> {
    await installWal2delta(admin);
    await admin.query(`SELECT lakets.drop_chronotable($1)`, [this.name]);
    await forgetDroppedShadows(admin);
  }

  async head(): Promise<bigint> {
    return lsn(
      (await writer.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0]?.l ??
        '0/0',
    );
  }

  dayRange(d: number): string {
    return `ts >= date_trunc('day', now()) - make_interval(days => ${d}) AND ts < date_trunc('day', now()) - make_interval(days => ${d - 1})`;
  }

  /** Writes Sync's view into wal2delta.tables, as Lakehouse Sync would (when its table exists). */
  async publish(): Promise<void> {
    if (!this.synced || !this.w2d.present || this.sync.status === null) return;
    await setSync(admin, this.name, this.sync.status, this.sync.lsn === null ? null : fmt(this.sync.lsn));
    if (this.sync.status === 'STREAMING' && this.sync.lsn !== null && this.sync.lsn > this.proven)
      this.proven = this.sync.lsn;
  }

  async insert(d: number, n: number, client = writer): Promise<void> {
    const ids = Array.from({ length: n }, () => this.nextId++);
    try {
      await client.query(
        `INSERT INTO public.${pg.escapeIdentifier(this.name)} (ts, id, v)
         SELECT date_trunc('day', now()) - make_interval(days => $1) + make_interval(mins => (x * 397) % 1440), x, 0
           FROM unnest($2::int[]) x`,
        [d, ids],
      );
    } catch (error) {
      if ((error as { code?: string }).code !== '23514') throw error; // no partition: its chunk was dropped
      fig.extra('late writes refused (chunk already dropped)');
      return;
    }
    const at = await this.head();
    this.writes.push(at);
    for (const id of ids) this.rows.set(id, { day: d, chunk: this.chunkOf(d), v: 0, lsn: at });
  }

  /** Records the effect of a committed UPDATE/DELETE on the model. */
  async wrote(ids: number[], deleted: boolean): Promise<void> {
    const at = await this.head();
    this.writes.push(at);
    for (const id of ids) {
      const row = this.rows.get(id);
      if (!row) this.fail(`the database changed row ${id}, which the test never wrote`);
      if (deleted) this.rows.delete(id);
      else this.rows.set(id, { ...row, v: row.v + 1, lsn: at });
    }
  }

  async statuses(): Promise<Map<string, string>> {
    const { rows } = await admin.query<{ chunk_name: string; status: string }>(
      'SELECT chunk_name, status FROM lakets._chunk_metadata WHERE chronotable_id = $1',
      [this.id],
    );
    return new Map(rows.map((r) => [r.chunk_name, r.status]));
  }

  chunkOf(d: number): string {
    const start = new Date(Date.UTC(...utcDay(d)));
    const p = (x: number) => String(x).padStart(2, '0');
    return `public.${this.name}_${start.getUTCFullYear()}${p(start.getUTCMonth() + 1)}${p(start.getUTCDate())}_000000`;
  }

  /** The whole check: no unproven row lost, no row gone from a live chunk, no row that was not written. */
  async checkRows(): Promise<void> {
    const { rows } = await admin.query<{ id: number; v: number }>(
      `SELECT id, v FROM public.${pg.escapeIdentifier(this.name)}`,
    );
    const present = new Map(rows.map((r) => [r.id, r.v]));
    const statuses = await this.statuses();
    let lost = 0;
    const problems: string[] = [];
    for (const [id, row] of this.rows) {
      const v = present.get(id);
      if (v === undefined) {
        const chunkDropped = statuses.get(row.chunk) === 'dropped';
        if (row.lsn > this.proven || !chunkDropped) {
          lost++;
          problems.push(
            `row ${id} (day -${row.day}, written at ${fmt(row.lsn)}) is gone; Sync proved up to ${fmt(this.proven)}; chunk ${statuses.get(row.chunk)}`,
          );
        }
      } else if (v !== row.v) {
        lost++;
        problems.push(`row ${id} has value ${v}, the last write gave it ${row.v}`);
      }
    }
    for (const id of present.keys())
      if (!this.rows.has(id)) problems.push(`row ${id} exists but was never written (or was deleted)`);
    fig.count('rowsChecked', this.rows.size);
    fig.count('rowsLost', lost);
    if (problems.length > 0) this.fail(problems.slice(0, 5).join('; '));
  }

  /** Checks after a job run; returns nothing, throws (counted as an inconsistent run) on a problem. */
  async checkRun(
    job: string,
    before: Map<string, string>,
    reports: JobReport[],
    sqlDropped = 0,
  ): Promise<void> {
    fig.count('jobRuns', reports.length + (sqlDropped > 0 ? 1 : 0));
    const after = await this.statuses();
    const problems = await registryMismatches(admin);
    const newly = (status: string) =>
      [...after].filter(([n, s]) => s === status && before.get(n) !== status).map(([n]) => n);
    // Fail-closed: without a shadow, or when Sync's progress cannot be read (no table, or the job role
    // lacks a privilege on it), nothing is proven, so nothing is tiered or dropped.
    const blind =
      this.synced && (!this.w2d.present || (this.s.asRole && (!this.w2d.select || !this.w2d.usage)));
    for (const r of reports) {
      // Blind, Tiering and Retention warn (status `warning`, SyncStateUnreadable) instead of a bare ok.
      const warnedBlind =
        r.status === 'warning' &&
        blind &&
        r.items.every((i) => !i.warning || i.warning.code === 'SyncStateUnreadable');
      if (r.status !== 'ok' && !warnedBlind)
        problems.push(
          `${r.job} ended ${r.status}: ${r.reason ?? JSON.stringify(r.items.filter((i) => i.outcome === 'failed'))}`,
        );
      const evaluated = r.items.some((i) => i.kind === 'table' && i.outcome !== 'skipped');
      if (blind && r.status === 'ok' && evaluated && (r.job === 'tiering' || r.job === 'retention'))
        problems.push(`${r.job} ended a bare ok although it could not read Sync's state`);
    }
    const reported = (job: JobName, outcome: string) =>
      reports
        .filter((r) => r.job === job)
        .flatMap((r) =>
          r.items.filter((i) => i.kind === 'chunk' && i.outcome === outcome).map((i) => i.name),
        );
    const tiered = newly('tiered');
    const dropped = newly('dropped');
    if (!job.includes('retention') && dropped.length > 0)
      problems.push(`${job} dropped ${dropped.join(', ')}`);
    if (job.includes('tiering')) {
      const said = reported('tiering', 'tiered');
      // With Retention at the same time, a chunk may be tiered and then dropped within the step.
      const wrong = said.filter(
        (n) => !tiered.includes(n) && !(job.includes('retention') && dropped.includes(n)),
      );
      const unreported = tiered.filter((n) => !said.includes(n));
      if (wrong.length + unreported.length > 0)
        problems.push(
          `tiering reported ${said.join(', ') || 'none'} tiered, the registry says ${tiered.join(', ') || 'none'}`,
        );
      for (const name of said) {
        const unproven = [...this.rows.values()].filter((r) => r.chunk === name && r.lsn > this.proven);
        if (unproven.length > 0)
          problems.push(`${name} was tiered with ${unproven.length} rows Sync never committed`);
      }
    }
    if (job.includes('retention')) {
      const counted = reports
        .filter((r) => r.job === 'retention')
        .reduce(
          (n, r) => n + r.items.filter((i) => i.kind === 'table').reduce((m, i) => m + (i.count ?? 0), 0),
          0,
        );
      if (counted + sqlDropped !== dropped.length)
        problems.push(
          `retention said it dropped ${counted + sqlDropped} chunks, the registry shows ${dropped.length} newly dropped`,
        );
      if (!job.includes('two-sessions')) {
        const said = reported('retention', 'dropped');
        if (JSON.stringify([...said].sort()) !== JSON.stringify([...dropped].sort()))
          problems.push(
            `retention reported ${said.join(', ') || 'none'} dropped, the registry says ${dropped.join(', ') || 'none'}`,
          );
      }
    }
    if ((blind || !this.synced) && tiered.length + dropped.length > 0)
      problems.push(
        `the job role cannot read wal2delta.tables, yet ${[...tiered, ...dropped].join(', ')} changed`,
      );
    if (problems.length > 0) {
      fig.count('inconsistentRuns');
      this.fail(`after ${job}: ${problems.join('; ')}`);
    }
  }

  async job(job: JobName, client: pg.Client): Promise<JobReport> {
    const report = await runJob(jobNamed(job), client, scheduled, unlimited);
    capture.note(JSON.stringify(report));
    return report;
  }

  async step(a: Action): Promise<void> {
    this.log.push(JSON.stringify(a));
    const [A, B] = this.clients;
    const t = `public.${pg.escapeIdentifier(this.name)}`;
    switch (a.kind) {
      case 'insert':
        await this.insert(a.day, a.n);
        break;
      case 'update':
      case 'delete': {
        const sql =
          a.kind === 'update'
            ? `UPDATE ${t} SET v = v + 1 WHERE ${this.dayRange(a.day)} RETURNING id`
            : `DELETE FROM ${t} WHERE id = (SELECT min(id) FROM ${t} WHERE ${this.dayRange(a.day)}) RETURNING id`;
        const { rows } = await writer.query<{ id: number }>(sql);
        await this.wrote(
          rows.map((r) => r.id),
          a.kind === 'delete',
        );
        break;
      }
      case 'sync-head':
      case 'sync-partial': {
        if (this.sync.status === null) this.sync.status = 'STREAMING';
        const target =
          a.kind === 'sync-head'
            ? await this.head()
            : (this.writes[Math.floor((a.at / 100) * this.writes.length)] ?? 0n);
        // Sync's committed_lsn only moves forward.
        this.sync.lsn = this.sync.lsn === null || target > this.sync.lsn ? target : this.sync.lsn;
        await this.publish();
        fig.fault(a.kind === 'sync-head' ? 'Sync caught up to the WAL head' : 'Sync advanced part-way');
        break;
      }
      case 'sync-status':
        if (this.sync.status !== a.status) fig.fault(`Sync status → ${a.status}`);
        this.sync.status = a.status;
        await this.publish();
        break;
      case 'sync-stall':
        fig.fault('Sync stalled (writes go on, no progress)');
        break;
      case 'w2d-table':
        if (a.present && !this.w2d.present) {
          await installWal2delta(admin);
          await applyGrants(admin, role); // the documented fix: run `npm run grants` again
          this.w2d = { present: true, select: true, usage: true };
          await this.publish();
          fig.fault('wal2delta.tables back (grants re-run)');
        } else if (!a.present && this.w2d.present) {
          await admin.query('DROP TABLE wal2delta.tables');
          this.w2d.present = false;
          fig.fault('wal2delta.tables disappeared');
        }
        break;
      case 'w2d-select':
      case 'w2d-usage': {
        if (!this.w2d.present && a.kind === 'w2d-select') break;
        const what = a.kind === 'w2d-select' ? 'SELECT ON wal2delta.tables' : 'USAGE ON SCHEMA wal2delta';
        const r = pg.escapeIdentifier(role);
        const had = a.kind === 'w2d-select' ? this.w2d.select : this.w2d.usage;
        await admin.query(a.granted ? `GRANT ${what} TO ${r}` : `REVOKE ${what} FROM ${r}`);
        if (a.kind === 'w2d-select') this.w2d.select = a.granted;
        else this.w2d.usage = a.granted;
        if (had !== a.granted) fig.fault(`job role ${a.granted ? 'regains' : 'loses'} ${what}`);
        break;
      }
      case 'tiering':
      case 'retention':
      case 'partition-manager': {
        const before = await this.statuses();
        await this.checkRun(a.kind, before, [await this.job(a.kind, A)]);
        break;
      }
      case 'retention-two-sessions': {
        const before = await this.statuses();
        const [report, direct] = await Promise.all([
          this.job('retention', A),
          B.query<{ n: number }>('SELECT lakets.execute_retention($1) AS n', [this.name]),
        ]);
        await this.checkRun(a.kind, before, [report], Number(direct.rows[0]?.n ?? 0));
        break;
      }
      case 'tiering-and-retention': {
        const before = await this.statuses();
        const reports = await Promise.all([this.job('tiering', A), this.job('retention', B)]);
        await this.checkRun(a.kind, before, reports);
        break;
      }
      case 'write-during-retention': {
        // A late write holds its locks while Retention runs; it commits once Retention waits on it.
        // With caughtUpFirst, Sync has just committed everything before the write: the chunk passes
        // the gate on its old stamp, and only the stamp re-read under the lock can defer it.
        if (a.caughtUpFirst && this.synced) await this.step({ kind: 'sync-head' });
        const before = await this.statuses();
        let d: number;
        if (a.day === 'oldest-expired') {
          const { rows } = await admin.query<{ d: number }>(
            `SELECT (extract(epoch FROM date_trunc('day', now()) - range_start) / 86400)::int AS d
               FROM lakets._chunk_metadata
              WHERE chronotable_id = $1 AND status <> 'dropped' AND range_end <= now() - interval '4 days'
              ORDER BY range_start LIMIT 1`,
            [this.id],
          );
          d = rows[0]?.d ?? DAYS - 1;
        } else d = a.day;
        let ids: number[] = [];
        await writer.query('BEGIN');
        try {
          if (a.write === 'insert') {
            ids = [this.nextId++];
            await writer.query(
              `INSERT INTO ${t} (ts, id, v) VALUES (date_trunc('day', now()) - make_interval(days => $1) + interval '7 hours', $2, 0)`,
              [d, ids[0]],
            );
          } else {
            ids = (
              await writer.query<{ id: number }>(
                `UPDATE ${t} SET v = v + 1 WHERE ${this.dayRange(d)} RETURNING id`,
              )
            ).rows.map((r) => r.id);
          }
        } catch (error) {
          await writer.query('ROLLBACK');
          if ((error as { code?: string }).code !== '23514') throw error;
          fig.extra('late writes refused (chunk already dropped)');
          await this.checkRun(a.kind, before, [await this.job('retention', A)]);
          break;
        }
        const pid = (await A.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
        let settled = false;
        const running = this.job('retention', A).finally(() => {
          settled = true;
        });
        for (let i = 0; i < 40 && !settled; i++) {
          const { rows } = await admin.query<{ waiting: boolean }>(
            `SELECT wait_event_type = 'Lock' AS waiting FROM pg_stat_activity WHERE pid = $1`,
            [pid],
          );
          if (rows[0]?.waiting) {
            fig.extra('Retention seen waiting on an in-flight late write');
            break;
          }
          await new Promise((r) => setTimeout(r, 5));
        }
        await writer.query('COMMIT');
        if (a.write === 'insert') {
          const at = await this.head();
          this.writes.push(at);
          for (const id of ids) this.rows.set(id, { day: d, chunk: this.chunkOf(d), v: 0, lsn: at });
        } else await this.wrote(ids, false);
        fig.fault('late write in flight during Retention');
        await this.checkRun(a.kind, before, [await running]);
        break;
      }
    }
    await this.checkRows();
  }
}

function utcDay(daysAgo: number): [number, number, number] {
  const now = new Date();
  const d = new Date(
    Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - daysAgo * 86_400_000,
  );
  return [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()];
}

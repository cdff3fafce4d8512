// Runs one job against a connected client: the per-database job lock, the job's logic, and the
// report with its status and totals. The handler, the CLI, the demo and the tests all call this.
import { errorLine } from './errors.ts';
import { partitionManager } from './partition-manager.ts';
import { PayloadError } from './payload.ts';
import { retention } from './retention.ts';
import { rollupRefresh } from './rollup-refresh.ts';
import { tiering } from './tiering.ts';
import type {
  Budget,
  ItemResult,
  JobLogic,
  JobName,
  JobOptions,
  JobReport,
  Queryable,
  RunStatus,
} from './types.ts';

const LOGIC: Record<JobName, JobLogic> = {
  'partition-manager': partitionManager,
  tiering,
  retention,
  'rollup-refresh': rollupRefresh,
};

// Session advisory lock (74170100, n) per job: one run of a job at a time per database. Released
// on unlock or when the connection closes, so a crashed run never leaves it held.
const JOB_LOCK_CLASS = 74170100;
const JOB_LOCK_KEY: Record<JobName, number> = {
  'partition-manager': 1,
  tiering: 2,
  retention: 3,
  'rollup-refresh': 4,
};

export async function runJob(
  job: JobName,
  db: Queryable,
  options: JobOptions,
  budget: Budget,
): Promise<JobReport> {
  const started = new Date();
  const finish = (status: RunStatus, items: ItemResult[], reason?: string): JobReport => {
    const finished = new Date();
    const left = items.filter((i) => i.outcome === 'not-started').map((i) => i.name);
    const warnings = [...new Set(items.flatMap((i) => (i.warning ? [i.warning.message] : [])))];
    return {
      job,
      status,
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      durationMs: finished.getTime() - started.getTime(),
      trigger: options.trigger,
      dryRun: options.dryRun,
      ...(reason ? { reason } : {}),
      items,
      totals: totals(job, items),
      ...(left.length > 0 ? { leftForNextRun: left } : {}),
      ...(warnings.length > 0 ? { warnings } : {}),
    };
  };

  // A dry run changes nothing, so it neither needs nor blocks the lock.
  if (!options.dryRun) {
    const { rows } = await db.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [
      JOB_LOCK_CLASS,
      JOB_LOCK_KEY[job],
    ]);
    if (!rows[0]?.locked) {
      return finish(
        'skipped',
        [],
        `another ${job} run holds this database's job lock; this run changed nothing`,
      );
    }
  }
  try {
    const items = await LOGIC[job]({ db, options, budget });
    return finish(statusOf(items, options.dryRun), items);
  } catch (error) {
    if (error instanceof PayloadError) throw error;
    return finish('failed', [], errorLine(error));
  } finally {
    if (!options.dryRun) {
      await db
        .query('SELECT pg_advisory_unlock($1, $2)', [JOB_LOCK_CLASS, JOB_LOCK_KEY[job]])
        .catch(() => {});
    }
  }
}

function statusOf(items: ItemResult[], dryRun: boolean): RunStatus {
  const failed = items.filter((i) => i.outcome === 'failed').length;
  const attempted = items.filter((i) => i.outcome !== 'not-started').length;
  if (failed > 0) return failed === attempted ? 'failed' : 'partial';
  if (items.some((i) => i.outcome === 'not-started')) return 'incomplete';
  if (dryRun) return 'dry-run';
  // Nothing failed, but for some items nothing could be proven: not a bare `ok`.
  return items.some((i) => i.warning) ? 'warning' : 'ok';
}

function totals(job: JobName, items: ItemResult[]): Record<string, number> {
  const chunks = (outcome: ItemResult['outcome']) =>
    items.filter((i) => i.kind === 'chunk' && i.outcome === outcome).length;
  const rollups = (outcome: ItemResult['outcome']) =>
    items.filter((i) => i.kind === 'rollup' && i.outcome === outcome).length;
  const unreadable = items.filter((i) => i.warning?.code === 'SyncStateUnreadable').length;
  const created = items
    .filter((i) => i.kind === 'table' && i.outcome === 'created')
    .reduce((n, i) => n + (i.count ?? 0), 0);
  return {
    items: items.length,
    failed: items.filter((i) => i.outcome === 'failed').length,
    notStarted: items.filter((i) => i.outcome === 'not-started').length,
    ...(job === 'partition-manager' ? { partitionsCreated: created } : {}),
    ...(job === 'tiering'
      ? {
          chunksTiered: chunks('tiered'),
          chunksDeferred: chunks('deferred'),
          syncStateUnreadable: unreadable,
        }
      : {}),
    ...(job === 'retention'
      ? {
          chunksDropped: chunks('dropped'),
          chunksDeferred: chunks('deferred'),
          syncStateUnreadable: unreadable,
        }
      : {}),
    ...(job === 'rollup-refresh'
      ? {
          rollupsRefreshed: rollups('refreshed'),
          rollupsSkipped: rollups('skipped'),
          rollupsFailed: rollups('failed'),
        }
      : {}),
  };
}

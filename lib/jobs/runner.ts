// Runs one job against a connected client: the per-database job lock, the job's logic, and the
// report with its status and totals. The handler, the CLI, the demo and the tests all call this.

import type { Queryable } from '../queryable.ts';
import { uncapStatements } from './deadline.ts';
import type { Job } from './definition.ts';
import { errorLine } from './errors.ts';
import { type NoticeLog, noticeLog } from './notices.ts';
import { PayloadError } from './payload.ts';
import type { Budget, ItemResult, JobOptions, JobReport, RunStatus } from './types.ts';

// Session advisory lock (74170100, the job's lockKey): one run of a job at a time per database.
// Released on unlock or when the connection closes, so a crashed run never leaves it held.
const JOB_LOCK_CLASS = 74170100;

export async function runJob(
  job: Job,
  db: Queryable,
  options: JobOptions,
  budget: Budget,
): Promise<JobReport> {
  const started = new Date();
  const notices: NoticeLog = noticeLog(db);
  const finish = (status: RunStatus, items: ItemResult[], reason?: string): JobReport => {
    const finished = new Date();
    const unfiled = notices.unfiled();
    const left = items.filter((i) => i.outcome === 'not-started').map((i) => i.name);
    const warnings = [...new Set(items.flatMap((i) => (i.warning ? [i.warning.message] : [])))];
    return {
      job: job.name,
      status,
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      durationMs: finished.getTime() - started.getTime(),
      trigger: options.trigger,
      dryRun: options.dryRun,
      ...(reason ? { reason } : {}),
      items,
      totals: {
        items: items.length,
        failed: items.filter((i) => i.outcome === 'failed').length,
        notStarted: left.length,
        ...job.totals(items),
      },
      ...(left.length > 0 ? { leftForNextRun: left } : {}),
      ...(warnings.length > 0 ? { warnings } : {}),
      ...(unfiled.length > 0 ? { notices: unfiled } : {}),
    };
  };

  try {
    return await locked(job, db, options, budget, notices, finish);
  } finally {
    notices.close();
  }
}

/** The run under the job lock (none for a dry run). */
async function locked(
  job: Job,
  db: Queryable,
  options: JobOptions,
  budget: Budget,
  notices: NoticeLog,
  finish: (status: RunStatus, items: ItemResult[], reason?: string) => JobReport,
): Promise<JobReport> {
  // A dry run changes nothing, so it neither needs nor blocks the lock.
  if (!options.dryRun) {
    const { rows } = await db.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [
      JOB_LOCK_CLASS,
      job.lockKey,
    ]);
    if (!rows[0]?.locked) {
      return finish(
        'skipped',
        [],
        `another ${job.name} run holds this database's job lock; this run changed nothing`,
      );
    }
  }
  try {
    const items = await job.run({ db, options, budget, notices });
    return finish(statusOf(items, options.dryRun), items);
  } catch (error) {
    if (error instanceof PayloadError) throw error;
    return finish('failed', [], errorLine(error));
  } finally {
    await uncapStatements(db).catch(() => {});
    if (!options.dryRun) {
      await db.query('SELECT pg_advisory_unlock($1, $2)', [JOB_LOCK_CLASS, job.lockKey]).catch(() => {});
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

// The Lambda handler body shared by the four functions: parse the event, connect (a fresh
// credential per connection), run the job within the invocation's time budget, log and measure
// the report, close the connection. A run with a failed item ends as a Lambda error after the
// report is logged, so alarms and the on-failure destination fire. Every invocation that fails, before
// its report exists or with it, writes one error record with a stable `errorCode` and counts one
// RunFailed by that code: the dashboard sees runs that never started too.
// The event names its target (one database of the estate); its log records carry `target`, its report
// too, and its metrics a `target` dimension besides `service`. Connectors (and with them credentials,
// resolved hosts and caches) are kept per target; only the service principal's secret is shared, by id.
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { timeBudget } from './jobs/budget.ts';
import { type CheckReport, loginFailed, preflight } from './jobs/check.ts';
import type { Job } from './jobs/definition.ts';
import type { CheckedJob } from './jobs/needs.ts';
import { invocationTarget, PayloadError, parseInvocation } from './jobs/payload.ts';
import { runJob } from './jobs/runner.ts';
import type { JobReport } from './jobs/types.ts';
import { type Connector, type ConnectorDeps, getConnector } from './lakebase/index.ts';
import {
  type Observability,
  observability,
  publish,
  publishRunFailed,
  TARGET_DIMENSION,
  UNRESOLVED_TARGET,
} from './observability.ts';
import { type ReportPart, reportRecords } from './report-log.ts';
import { type TargetResolver, targetResolver } from './target.ts';

const partMessage = (message: string, p: ReportPart): string =>
  `${message}: report part ${p.reportPart.part} of ${p.reportPart.of}`;

export class JobFailed extends Error {
  override name = 'JobFailed';
  readonly report: JobReport;
  constructor(report: JobReport) {
    const failed = report.items.filter((i) => i.outcome === 'failed');
    const first = failed[0];
    super(
      first
        ? `${report.job} ${report.status}: ${failed.length} of ${report.items.length} items failed; first: ${first.name}: ${first.reason}`
        : `${report.job} failed: ${report.reason ?? 'unknown error'}`,
    );
    this.report = report;
  }
}

/** How many failing items the error of a failed check lists, and how long each line may be. */
export const CHECK_ERROR_ITEMS = 10;
export const CHECK_ERROR_LINE_CHARS = 600;

/**
 * A preflight check (`{"check": true}`) that found something missing; its report is logged first.
 * The message is what `aws lambda invoke` puts in out.json: every failing item with its fix, one a
 * line, the first CHECK_ERROR_ITEMS of them (each cut at CHECK_ERROR_LINE_CHARS), so it stays a few KB.
 */
export class CheckFailed extends Error {
  override name = 'CheckFailed';
  readonly report: CheckReport;
  constructor(report: CheckReport) {
    super(checkFailureMessage(report));
    this.report = report;
  }
}

function checkFailureMessage(report: CheckReport): string {
  const failed = report.items.filter((i) => i.status === 'fail');
  const jobs = report.jobs.join(', ');
  const cut = (line: string) =>
    line.length > CHECK_ERROR_LINE_CHARS ? `${line.slice(0, CHECK_ERROR_LINE_CHARS - 1)}…` : line;
  const lines = failed
    .slice(0, CHECK_ERROR_ITEMS)
    .map((i, n) => cut(`${n + 1}. ${i.check}: ${i.detail}${i.fix ? `; fix: ${i.fix}` : ''}`));
  const more = failed.length - lines.length;
  return [
    `${jobs} check failed: ${failed.length} of ${report.items.length} checks failed, each with its fix:`,
    ...lines,
    ...(more > 0
      ? [
          `… and ${more} more: the full report is in the log record "${report.jobs[0]} check fail" (its report field)`,
        ]
      : []),
  ].join('\n');
}

/** The run report of a handler result (scripts that invoke a handler on a scheduled event). */
export function jobReport(result: JobReport | CheckReport): JobReport {
  if ('check' in result)
    throw new Error(`expected a run report, got a check report (status ${result.status})`);
  return result;
}

export interface HandlerDeps {
  /** Connection-library dependencies (tests point them at local fakes). */
  connector?: ConnectorDeps;
  /** Where LAKETS_TARGETS (or, without it, the single target's variables) is read. Default: process.env. */
  env?: Record<string, string | undefined>;
}

/** The target of one invocation, once resolved. */
interface At {
  target?: string;
}

/** A report (or check report) with the target it is for. */
export type TargetReport<R> = R & { target: string };

/** The stable code a failed invocation is logged and counted under. */
export function failureCode(error: unknown): string {
  if (error instanceof JobFailed) return `JOB_${error.report.status.toUpperCase()}`; // JOB_FAILED, JOB_PARTIAL
  if (error instanceof CheckFailed) return 'CHECK_FAILED';
  if (error instanceof PayloadError) return 'PAYLOAD_INVALID';
  const code = (error as { code?: unknown } | null)?.code;
  // LakebaseError's and ConfigError's codes; not SQLSTATEs or Node's errno codes.
  return typeof code === 'string' && /^[A-Z][A-Z]+_[A-Z_]+$/.test(code) ? code : 'UNEXPECTED_ERROR';
}

export function jobHandler(job: Job, { logger, metrics }: Observability, deps: HandlerDeps = {}) {
  const resolve: TargetResolver = targetResolver(deps.env);
  // Connectors (and their caches) are kept per deps object: one object per target, for the
  // container's life, so no credential, resolved host or cache ever serves another target. The
  // secret sources are one map for all: a secret shared by targets is read once.
  const secretSources = deps.connector?.secretSources ?? new Map();
  const perTarget = new Map<string, ConnectorDeps>();
  const connectorDepsOf = (target: string): ConnectorDeps => {
    let d = perTarget.get(target);
    if (!d) {
      d = { log: logger, ...deps.connector, secretSources };
      perTarget.set(target, d);
    }
    return d;
  };
  // Parse, connect, run (or check): what can fail before a report exists. `at` records the
  // invocation's target once resolved (the failure record and RunFailed name it).
  const run = async (event: unknown, context: Context, at: At): Promise<JobReport | CheckReport> => {
    const { name, config } = resolve(invocationTarget(event));
    at.target = name;
    logger.appendKeys({ target: name });
    metrics.addDimension(TARGET_DIMENSION, name);
    const options = parseInvocation(job, event);
    const connector = getConnector(config, connectorDepsOf(name));
    if (options.check) return checkConnection([job], connector, config.kind === 'databricks');
    // The run files every NOTICE/WARNING with its item (or the report): the connection's own
    // notice log line would say each one twice.
    // A Provisioned instance that is starting is waited for only while the invocation has time left.
    const db = await connector.connect({
      applicationName: `lakets-${job.name}`,
      onNotice: () => {},
      remainingMs: () => context.getRemainingTimeInMillis(),
    });
    try {
      return await runJob(
        job,
        db,
        options,
        timeBudget(() => context.getRemainingTimeInMillis()),
      );
    } finally {
      await db.end().catch(() => {});
    }
  };
  // Logs and counts one failed invocation under its stable code, then rethrows it.
  const fail = (
    at: At,
    error: unknown,
    message: string,
    extra: Record<string, unknown>,
    parts: readonly ReportPart[] = [],
  ): never => {
    const code = failureCode(error);
    if (at.target === undefined) {
      logger.appendKeys({ target: UNRESOLVED_TARGET });
      metrics.addDimension(TARGET_DIMENSION, UNRESOLVED_TARGET);
    }
    logger.error(message, { errorCode: code, ...extra });
    for (const p of parts) logger.error(partMessage(message, p), { errorCode: code, ...p });
    publishRunFailed(metrics, code, at.target ?? UNRESOLVED_TARGET);
    throw error;
  };
  const withTarget = <R extends object>(at: At, result: R): TargetReport<R> => ({
    ...result,
    target: at.target ?? UNRESOLVED_TARGET,
  });
  const invoke = async (event: unknown, context: Context, at: At): Promise<JobReport | CheckReport> => {
    let result: JobReport | CheckReport;
    try {
      result = await run(event, context, at);
    } catch (error) {
      // No report: this record and RunFailed are all that say the run never happened.
      return fail(
        at,
        error,
        `${job.name} failed: ${error instanceof Error ? error.message : String(error)}`,
        {
          error,
        },
      );
    }
    if ('check' in result) {
      const checked = withTarget(at, result);
      if (checked.status !== 'pass')
        return fail(at, new CheckFailed(checked), `${job.name} check ${checked.status}`, { report: checked });
      logger.info(`${job.name} check ${checked.status}`, { report: checked });
      return checked;
    }
    const report = withTarget(at, result);
    for (const item of report.items) {
      if (item.notices || item.outcome === 'failed' || item.outcome === 'deferred') {
        const level = item.outcome === 'failed' ? 'warn' : 'info';
        logger[level](`${item.kind} ${item.name}: ${item.outcome}`, { item });
      }
    }
    publish(metrics, job, report);
    // A report too large for one log event is logged as its head and parts (lib/report-log.ts); the
    // invocation still returns it whole.
    const records = reportRecords(report);
    const message = `${job.name} ${report.status}`;
    if (report.status === 'failed' || report.status === 'partial') {
      return fail(at, new JobFailed(report), message, { report: records.report }, records.parts);
    }
    const level = report.status === 'warning' ? 'warn' : 'info';
    logger[level](message, { report: records.report });
    for (const p of records.parts) logger[level](partMessage(message, p), { ...p });
    return report;
  };
  return async (event: unknown, context: Context): Promise<JobReport | CheckReport> => {
    // Request dimensions are cleared when the metrics are flushed; cleared here too so that a caller
    // that never flushes (tests driving jobHandler) cannot carry one target's dimension into the next.
    metrics.clearDimensions();
    try {
      return await invoke(event, context, {});
    } finally {
      // A warm container's next invocation may be another target's: its key must not leak there.
      logger.removeKeys(['target']);
    }
  };
}

/**
 * Runs no job: connects exactly as the jobs do (the connector of their configuration) and checks what
 * they need. A failed login is the report's first and only item. Used by `{"check": true}`, `npm run
 * check` and the demo.
 */
export async function checkConnection(
  jobs: readonly CheckedJob[],
  connector: Connector,
  tlsRequired: boolean,
  applicationName = jobs.length === 1 ? `lakets-${jobs[0]?.name}` : 'lakets-check',
): Promise<CheckReport> {
  let db: Awaited<ReturnType<Connector['connect']>>;
  try {
    db = await connector.connect({ applicationName });
  } catch (error) {
    return loginFailed(
      jobs.map((j) => j.name),
      error,
    );
  }
  const to = connector.lastConnection;
  const via = to?.instance
    ? `on Lakebase instance ${to.instance} (${to.host})`
    : to?.endpoint
      ? `through Lakebase endpoint ${to.endpoint} (${to.host})`
      : undefined;
  try {
    return await preflight(db, jobs, { tlsRequired, ...(via ? { via } : {}) });
  } finally {
    await db.end().catch(() => {});
  }
}

/**
 * The deployed handler of a job: the body above with Powertools context and metrics flushing. Takes
 * the job's definition, so a function's bundle holds its own job only.
 */
export function makeHandler(job: Job, deps: HandlerDeps = {}) {
  const tools = observability(job.name);
  return middy(jobHandler(job, tools, deps))
    .use(injectLambdaContext(tools.logger))
    .use(logMetrics(tools.metrics, { captureColdStartMetric: true }));
}

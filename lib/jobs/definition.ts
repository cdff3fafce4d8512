// The shape of one job's definition: everything about a job in one object (its spec for infra/, its
// payload fields, logic, lock key, totals, metrics, what the preflight check looks at, and how the
// report renderer counts). Each lib/jobs/<job>.ts exports one; the runner, the handler, observability,
// the report renderer and infra/ read it. Type-only imports: a job definition pulls in no other job.
import type { JobNeeds } from './needs.ts';
import type { JobName, JobSpec, MetricName, PayloadField } from './spec.ts';
import type { ItemResult, JobLogic } from './types.ts';

/** One job-specific metric, read from the job's own totals. */
export interface JobMetric<T> {
  readonly name: MetricName;
  readonly value: (totals: T) => number;
  /** Also for a dry run (what the role cannot read is true of a dry run too); work counts are not. */
  readonly dryRunToo?: boolean;
}

interface JobParts<N extends JobName, T extends Record<string, number>>
  extends Omit<JobSpec, 'name' | 'metrics'> {
  readonly name: N;
  /** Fields a manual payload may carry, in the order the error message lists them. */
  readonly payload: readonly PayloadField[];
  /** Second key of the per-database job lock (the runner's advisory lock class is shared). */
  readonly lockKey: number;
  readonly run: JobLogic;
  /** The job's own totals of a run's items (the runner adds items, failed and notStarted). */
  readonly totals: (items: ItemResult[]) => T;
  /** Job-specific metrics, in dashboard order (RunDuration and the outcome metrics are everyone's). */
  readonly emits: readonly JobMetric<T>[];
  /** What an item's `count` counts, for the report as text ("partitions created"). */
  readonly counted: string;
  /** What the preflight check looks at for this job. */
  readonly needs: JobNeeds;
}

/** A job definition as the runner, handler, observability and infra/ read it. */
export interface Job<N extends JobName = JobName> extends JobSpec {
  readonly name: N;
  readonly payload: readonly PayloadField[];
  readonly lockKey: number;
  readonly run: JobLogic;
  readonly totals: (items: ItemResult[]) => Record<string, number>;
  /** The job-specific metrics of a report's totals (as made by `totals`); work counts only when `work`. */
  readonly workMetrics: (
    totals: Record<string, number>,
    work: boolean,
  ) => Partial<Record<MetricName, number>>;
  readonly counted: string;
  readonly needs: JobNeeds;
}

/** Checks a job's parts against each other (its metrics read its own typed totals) and erases T. */
export function defineJob<N extends JobName, T extends Record<string, number>>(
  parts: JobParts<N, T>,
): Job<N> {
  const { emits, ...rest } = parts;
  return {
    ...rest,
    metrics: emits.map((m) => m.name),
    workMetrics: (totals, work) =>
      Object.fromEntries(
        // The report's totals came from this job's `totals`, so they are a T.
        emits.filter((m) => work || m.dryRunToo).map((m) => [m.name, m.value(totals as T)]),
      ),
  };
}

/** How many items of `kind` ended with `outcome` (the usual job total). */
export function countItems(
  items: ItemResult[],
  kind: ItemResult['kind'],
  outcome: ItemResult['outcome'],
): number {
  return items.filter((i) => i.kind === kind && i.outcome === outcome).length;
}

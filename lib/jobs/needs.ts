// What a job definition says of itself for the preflight check (lib/jobs/check.ts): what it needs,
// and its own checks, each a named step of the same shape as the check's built-in steps. Types only,
// so a job definition does not import the preflight.
import type { Queryable } from '../queryable.ts';
import type { JobName } from './spec.ts';

export type CheckStatus = 'pass' | 'warn' | 'fail';

/** What a step of the check gets: the connection, a way to add an item, and how LakeTS runs DDL. */
export interface PreflightContext {
  db: Queryable;
  add: (check: string, status: CheckStatus, detail: string, fix?: string) => void;
  /** LakeTS runs partition DDL with the caller's rights (_ensure_partitions is not SECURITY DEFINER). */
  callerRights: boolean;
}

/**
 * One named step of the check: it adds its items through the context. A step that throws fails under
 * its name ("could not be checked"); one that returns 'stop' ends the check (nothing after it can be known).
 */
export interface PreflightStep<C extends PreflightContext = PreflightContext> {
  readonly name: string;
  // biome-ignore lint/suspicious/noConfusingVoidType: a step that stops nothing just returns (a job's own checks are Promise<void>)
  readonly run: (ctx: C) => Promise<void | 'stop'>;
}

/** What a job needs, for the preflight check; each job definition says it of itself. */
export interface JobNeeds {
  /** The LakeTS functions the job calls, with the contract's argument types. */
  readonly functions: ReadonlyArray<readonly [name: string, args: string]>;
  /** Registry privileges it uses (directly, or through LakeTS functions with the caller's rights). */
  readonly tables: ReadonlyArray<readonly [table: string, privileges: readonly string[]]>;
  /** It works on ChronoTables: USAGE on their schemas. */
  readonly chronoTables?: boolean;
  /** It creates partitions in the ChronoTables' schemas (CREATE there, with the caller's rights). */
  readonly createsPartitions?: boolean;
  /** It creates or drops partitions (ownership, with the caller's rights). */
  readonly partitionDdl?: boolean;
  /** It reads Lakehouse Sync's state for the shadows (the durability gate). */
  readonly syncState?: boolean;
  /** It refreshes RollUps (the schemas of their tables and sources). */
  readonly rollups?: boolean;
  /** Its own checks, run after the built-in ones. */
  readonly checks?: ReadonlyArray<PreflightStep>;
}

/** The jobs a check covers: their names and what they need. */
export type CheckedJob = { readonly name: JobName; readonly needs: JobNeeds };

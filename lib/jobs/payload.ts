// Parses the invocation event into JobOptions, once, at the edge. A scheduled event (from
// EventBridge Scheduler, or an empty `{}` from a bare `aws lambda invoke`) runs the job with
// defaults; anything else is a manual payload, validated strictly: an unknown field or a wrong
// type is an error and nothing runs. Every payload, scheduled or manual, may name its target (the
// database of an estate it is for): `{"target": "<name>", ...}`; the handler resolves the name.
import { displayIdentifier, identifierProblem } from '../identifier.ts';
import { oneLine } from '../one-line.ts';
import type { JobName, PayloadField } from './spec.ts';
import type { JobOptions, TableRef } from './types.ts';

export class PayloadError extends Error {
  override name = 'PayloadError';
  constructor(message: string) {
    super(oneLine(message)); // echoed input may hold U+2028 and the like
  }
}

const SCHEDULER_FIELDS = new Set(['source', 'scheduleArn', 'scheduledTime', 'executionId', 'attemptNumber']);
// The envelope of an EventBridge event: any other key is an option, so the event is not a plain
// schedule (before, any extra key passed: {"source": "aws.events", ..., "dryRun": true} ran for real).
const EVENTBRIDGE_FIELDS = new Set([
  'version',
  'id',
  'detail-type',
  'source',
  'account',
  'time',
  'region',
  'resources',
  'detail',
]);
const MAX_TABLES = 1000;

function isScheduled(event: Record<string, unknown>): boolean {
  if (event['source'] === 'aws.scheduler') return Object.keys(event).every((k) => SCHEDULER_FIELDS.has(k));
  // A classic EventBridge rule event (scheduled rule), should anyone wire one up.
  return (
    event['source'] === 'aws.events' &&
    event['detail-type'] === 'Scheduled Event' &&
    Object.keys(event).every((k) => EVENTBRIDGE_FIELDS.has(k))
  );
}

/** The payload a job takes: its name and its fields (from the job's definition). */
export interface PayloadSpec {
  readonly name: JobName;
  readonly payload: readonly PayloadField[];
}

/** The field naming the target, accepted beside every job's own fields. */
export const TARGET_FIELD = 'target';

/** The options of an invocation, and the target it names (absent when it names none). */
export type Invocation = JobOptions & { target?: string };

export function parseInvocation(job: PayloadSpec, event: unknown): Invocation {
  const defaults: JobOptions = { dryRun: false, force: false, trigger: 'schedule' };
  if (event === undefined || event === null) return defaults;
  if (typeof event !== 'object' || Array.isArray(event)) {
    throw new PayloadError(`payload must be a JSON object such as {"dryRun": true}, not ${describe(event)}`);
  }
  const { [TARGET_FIELD]: rawTarget, ...payload } = event as Record<string, unknown>;
  const named = TARGET_FIELD in event ? { target: targetName(rawTarget) } : {};
  // A schedule's event is {"target": "<name>"} alone (or with Scheduler's context attributes).
  if (Object.keys(payload).length === 0 || isScheduled(payload)) return { ...defaults, ...named };
  return { ...manual(job, payload), ...named };
}

/**
 * The target an event names, or undefined: read before the rest of the payload is checked, so that a
 * bad payload for a known target is logged and counted under that target.
 */
export function invocationTarget(event: unknown): string | undefined {
  if (typeof event !== 'object' || event === null || Array.isArray(event) || !(TARGET_FIELD in event))
    return undefined;
  return targetName((event as Record<string, unknown>)[TARGET_FIELD]);
}

function targetName(value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new PayloadError(
      `"${TARGET_FIELD}" must be a target's name (a non-empty string), not ${describe(value)}`,
    );
  }
  return value.trim();
}

function manual(job: PayloadSpec, payload: Record<string, unknown>): JobOptions {
  const defaults: JobOptions = { dryRun: false, force: false, trigger: 'schedule' };
  const allowed: readonly string[] = [...job.payload, TARGET_FIELD];
  const unknown = Object.keys(payload).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw new PayloadError(
      `unknown field ${JSON.stringify(truncate(unknown[0] ?? ''))} in the ${job.name} payload; allowed: ${allowed.join(', ')}`,
    );
  }
  const options: JobOptions = { ...defaults, trigger: 'manual' };
  if ('check' in payload && boolean(payload['check'], 'check')) {
    // The preflight check runs no job, so options for one would be silently ignored: refused instead.
    const other = Object.keys(payload).find((k) => k !== 'check');
    if (other !== undefined) {
      throw new PayloadError(
        `"check" runs no job, so it takes no other field but "${TARGET_FIELD}" (got ${JSON.stringify(truncate(other))}); send {"check": true} alone`,
      );
    }
    return { ...options, check: true };
  }
  if ('dryRun' in payload) options.dryRun = boolean(payload['dryRun'], 'dryRun');
  if ('force' in payload) options.force = boolean(payload['force'], 'force');
  if ('tables' in payload) options.tables = tables(payload['tables']);
  if ('rollup' in payload) options.rollup = rollupName(payload['rollup']);
  if (options.force && !options.tables) {
    throw new PayloadError(
      '"force" skips the durability gate, so it needs "tables" naming the tables to force',
    );
  }
  return options;
}

function boolean(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean')
    throw new PayloadError(`"${field}" must be true or false, not ${describe(value)}`);
  return value;
}

function tables(value: unknown): TableRef[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new PayloadError(
      `"tables" must be a non-empty array of "schema.table" strings, not ${describe(value)}`,
    );
  }
  if (value.length > MAX_TABLES)
    throw new PayloadError(`"tables" lists ${value.length} tables; at most ${MAX_TABLES}`);
  const seen = new Map<string, TableRef>();
  for (const item of value) {
    if (typeof item !== 'string')
      throw new PayloadError(`"tables" entries must be strings, not ${describe(item)}`);
    const ref = parseTableName(item);
    seen.set(JSON.stringify([ref.schema, ref.table]), ref);
  }
  return [...seen.values()];
}

function rollupName(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new PayloadError(`"rollup" must be a RollUp name (a non-empty string), not ${describe(value)}`);
  }
  checkIdentifier(value, 'rollup');
  return value;
}

/**
 * `table`, `schema.table`, or with double quotes for names holding dots or quotes:
 * `"my.schema"."odd ""name"""`. Unquoted parts are taken as written (they are compared with the
 * registry's stored names, not folded to lower case).
 */
export function parseTableName(text: string): TableRef {
  const parts: string[] = [];
  let i = 0;
  while (i <= text.length) {
    let part = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length)
          throw new PayloadError(`table name ${JSON.stringify(truncate(text))} has an unclosed quote`);
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i++];
      }
    } else {
      while (i < text.length && text[i] !== '.') {
        if (text[i] === '"')
          throw new PayloadError(
            `table name ${JSON.stringify(truncate(text))}: quote a whole name part, as in "schema"."table"`,
          );
        part += text[i++];
      }
    }
    parts.push(part);
    if (i === text.length) break;
    if (text[i] !== '.')
      throw new PayloadError(
        `table name ${JSON.stringify(truncate(text))}: expected "." after a quoted part`,
      );
    i++;
  }
  if (parts.length > 2) {
    throw new PayloadError(
      `table name ${JSON.stringify(truncate(text))} has more than two parts; write "schema.table" (quote parts with dots)`,
    );
  }
  const [schema, table] = parts.length === 2 ? parts : ['public', parts[0]];
  checkIdentifier(schema ?? '', 'schema');
  checkIdentifier(table ?? '', 'table');
  return { schema: schema ?? '', table: table ?? '' };
}

function checkIdentifier(name: string, what: string): void {
  const problem = identifierProblem(name);
  if (problem === 'empty') throw new PayloadError(`a ${what} name is empty`);
  if (problem === 'too long') {
    throw new PayloadError(
      `${what} name ${JSON.stringify(truncate(name))} is longer than Postgres allows (63 bytes)`,
    );
  }
  if (problem === 'control characters') {
    throw new PayloadError(`${what} name ${JSON.stringify(truncate(name))} contains control characters`);
  }
}

export function formatTable(ref: TableRef): string {
  return `${displayIdentifier(ref.schema)}.${displayIdentifier(ref.table)}`;
}

function truncate(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(truncate(value))}`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

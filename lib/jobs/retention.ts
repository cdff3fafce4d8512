// Retention: one execute_retention() per table with an enabled retention-kind policy (the public
// job calls it once per policy row, so a table with two rows ran twice), least recently run first.
// p_force only from a manual payload that names its tables.
//
// Outcomes come from state read before and after the call, never from LakeTS's wording: a chunk
// that was live before and is `dropped` after was dropped; a chunk past the cut-off that is still
// live after was deferred when the durability gate holds it back (its reason computed from its
// last_write_lsn and Lakehouse Sync's state for the shadow), and failed otherwise. NOTICE and
// WARNING text is filed with the chunk it names, as evidence.
import { attempt, decided } from './attempt.ts';
import { defineJob } from './definition.ts';
import { errorLine } from './errors.ts';
import { DAILY_DELIVERY, gatedParts } from './gated.ts';
import { noticesNaming } from './notices.ts';
import {
  notDurableReason,
  readChunks,
  readShadows,
  type ShadowRow,
  type ShadowState,
  type SyncAccess,
  shadowSql,
  shadowState,
  syncAccess,
} from './sync-state.ts';
import { type ChronoTable, policyTables } from './targets.ts';
import type { ItemResult, ItemWarning, JobContext, JobLogic } from './types.ts';

const KINDS = ['retention', 'tiered_retention'];

interface Chunk {
  id: number;
  name: string;
  status: string;
  last_write_lsn: string | null;
  /** range_end <= now() - drop_after, with the longest drop_after of the table's policies. */
  expired: boolean;
}

interface TableState {
  /** Gated on UC durability: the table is synced or has a tiered_retention policy (before p_force). */
  gated: boolean;
  /**
   * execute_retention has something to consider: a live chunk past the cut-off of any of its enabled
   * policies (the public function uses either row, so the shorter drop_after decides), or a drop_after
   * it cannot read. Otherwise a call would drop nothing and only stamp last_run_at.
   */
  due: boolean;
  shadow: ShadowState;
  chunks: Chunk[];
}

type StateRow = ShadowRow & { id: number; gated: boolean; due: boolean; chunks: Chunk[] };

// The live chunks of each table, with what the gate needs. With two retention-kind
// policies the public execute_retention uses either row: a chunk past the longer drop_after is
// past the cut-off whichever it uses.
function stateSql(access: SyncAccess): string {
  const { joins, columns } = shadowSql(access);
  return `
  SELECT r.id, r.shadow_table_name, r.sync_enabled OR coalesce(pol.tiered, false) AS gated, ${columns},
         pol.drop_after IS NULL OR EXISTS (
           SELECT 1 FROM lakets._chunk_metadata m
            WHERE m.chronotable_id = r.id AND m.status IN ('active', 'tiered')
              AND m.range_end <= now() - pol.min_drop_after) AS due,
         coalesce((SELECT json_agg(json_build_object(
                            'id', m.id, 'name', m.chunk_name, 'status', m.status,
                            'last_write_lsn', m.last_write_lsn::text,
                            'expired', coalesce(m.range_end <= now() - pol.drop_after, false))
                          ORDER BY m.range_start)
                     FROM lakets._chunk_metadata m
                    WHERE m.chronotable_id = r.id
                      AND m.status IN ('active', 'tiered')), '[]') AS chunks
    FROM lakets._chronotable_registry r
   CROSS JOIN LATERAL (
     SELECT max((p.config ->> 'drop_after')::interval) AS drop_after,
            min((p.config ->> 'drop_after')::interval) AS min_drop_after, bool_or(p.policy_type = 'tiered_retention') AS tiered
       FROM lakets._policy_registry p
      WHERE p.chronotable_id = r.id AND p.enabled AND p.policy_type IN ('retention', 'tiered_retention')) pol
   ${joins}
   WHERE r.id = ANY ($1::int[])`;
}

function tableState(row: StateRow, access: SyncAccess): TableState {
  return { gated: row.gated, due: row.due, shadow: shadowState(row, access), chunks: row.chunks };
}

/** One execute_retention() call, its table item and the chunk items still to settle from state. */
interface Call {
  t: ChronoTable;
  before: TableState;
  dropped: number;
  /** The call's table item; attempt() files the call's NOTICEs on it, settle() hands them to the chunks. */
  table: ItemResult;
  /** The table's items in report order: its table item first, then its chunks once settled. */
  group: ItemResult[];
}

// The policies execute_retention stamps when it runs (lib/schema/sql/0001_core/11_retention.sql), for
// the tables of a run ($1, in run order): a millisecond apart (the precision the order is read with),
// the last now(), so the next run orders them as it would after one call each, one after the other.
const STAMP_SQL = `
  UPDATE lakets._policy_registry p
     SET last_run_at = now() - (u.n - u.ord) * interval '1 millisecond'
    FROM (SELECT id, ord, count(*) OVER () AS n FROM unnest($1::int[]) WITH ORDINALITY AS x(id, ord)) u
   WHERE p.chronotable_id = u.id AND p.enabled AND p.policy_type IN ('retention', 'tiered_retention')`;

/**
 * A run. Every table's state is read in one round trip before, and the chunks' (and, where needed,
 * Sync's) state in one or two after all the calls. A table with nothing past its cut-off gets no
 * call: the call would drop nothing, so its item is the one the call would have made (unchanged, 0)
 * and the stamp the call would have made (last_run_at) is made in one statement after the loop. Each table with chunks to consider costs its execute_retention() call. `everyItem`
 * calls every table as the jobs did before: the reference the equivalence test compares this with.
 */
function retentionRun(everyItem: boolean): JobLogic {
  return async (ctx) => {
    const items: ItemResult[] = [];
    const tables = await policyTables(ctx, KINDS, items);
    const access = await syncAccess(ctx.db);
    const { rows } = await ctx.db.query<StateRow>(stateSql(access), [tables.map((t) => t.id)]);
    const before = new Map(rows.map((r) => [r.id, tableState(r, access)]));
    // A manual run naming its tables calls each of them: LakeTS's own answer is what was asked for.
    const callAll = everyItem || ctx.options.dryRun || ctx.options.tables !== undefined;
    const groups: ItemResult[][] = [];
    const calls: Call[] = [];
    const quiet: ItemResult[] = [];
    // The tables this run processed, in order: those it decided and those whose call returned.
    const ran: number[] = [];
    for (const t of tables) {
      const group: ItemResult[] = [];
      groups.push(group);
      const state = before.get(t.id);
      if (state && !state.due && !callAll) {
        const item = decided(ctx, group, tableItem(ctx, t, state, 0));
        if (item) {
          quiet.push(item);
          ran.push(t.id);
        }
        continue;
      }
      await attempt(ctx, group, { kind: 'table', name: t.name }, async () => {
        if (!state) throw new Error(`${t.name} is no longer a ChronoTable`);
        if (ctx.options.dryRun) return plan(ctx, t, state);
        const c = await call(ctx, t, state, group);
        calls.push(c);
        ran.push(t.id);
        return c.table;
      });
    }
    if (quiet.length > 0) await stamp(ctx, ran, quiet);
    await settle(ctx, access, calls);
    return [...items, ...groups.flat()];
  };
}

const run = retentionRun(false);

/** The same run calling execute_retention for every table: the reference. */
export const runCallingEveryTable = retentionRun(true);

/**
 * Stamps last_run_at of the tables that needed no call, as their calls would have, in one statement.
 * It stamps every table the run processed (`ran`, in order), those whose call stamped them too: so
 * the stamps keep the run's order, and the next run takes the tables in the same order as after one
 * call each. Never throws past the run's items: when it fails, the items of the tables without a
 * call say so (the calls' own stamps stand).
 */
async function stamp({ db }: JobContext, ran: number[], quiet: ItemResult[]): Promise<void> {
  try {
    await db.query(STAMP_SQL, [ran]);
  } catch (error) {
    for (const item of quiet) {
      delete item.count;
      Object.assign(item, { outcome: 'failed', reason: `last_run_at not stamped: ${errorLine(error)}` });
    }
  }
}

/** A gated table whose Sync state this role cannot read: nothing can be proven, whatever the chunks. */
function unreadable(state: TableState, force: boolean): ItemWarning | undefined {
  if (!state.gated || force || !state.shadow.unreadable) return undefined;
  return {
    code: 'SyncStateUnreadable',
    message: `${state.shadow.reason}: Retention cannot prove any chunk durable, so expired chunks stay (run npm run grants, or grant it)`,
  };
}

/** Why the gate holds this chunk back, or NULL when it may be dropped. */
function gateReason(state: TableState, chunk: Pick<Chunk, 'last_write_lsn'>, force: boolean): string | null {
  if (!state.gated || force) return null;
  return notDurableReason(state.shadow, chunk.last_write_lsn);
}

function plan({ options }: JobContext, t: ChronoTable, state: TableState): ItemResult[] {
  const expired = state.chunks.filter((c) => c.expired);
  const chunks = expired.map((c): ItemResult => {
    const reason = gateReason(state, c, options.force);
    return reason === null
      ? { kind: 'chunk', name: c.name, outcome: 'would-drop' }
      : { kind: 'chunk', name: c.name, outcome: 'deferred', reason };
  });
  const count = chunks.filter((c) => c.outcome === 'would-drop').length;
  const warning = unreadable(state, options.force);
  return [
    {
      kind: 'table',
      name: t.name,
      outcome: count > 0 ? 'would-drop' : 'unchanged',
      count,
      ...(warning ? { warning, reason: warning.message } : {}),
    },
    ...chunks,
  ];
}

/** The table item of a call that dropped `dropped` chunks (0 for a table that needed no call). */
function tableItem({ options }: JobContext, t: ChronoTable, before: TableState, dropped: number): ItemResult {
  const warning = unreadable(before, options.force);
  return {
    kind: 'table',
    name: t.name,
    outcome: dropped > 0 ? 'dropped' : 'unchanged',
    count: dropped,
    ...(options.force ? { reason: 'forced: the durability gate was skipped' } : {}),
    ...(warning ? { warning, reason: warning.message } : {}),
  };
}

async function call(ctx: JobContext, t: ChronoTable, before: TableState, group: ItemResult[]): Promise<Call> {
  const result = await ctx.db.query<{ dropped: number }>(
    'SELECT lakets.execute_retention($1, $2, $3) AS dropped',
    [t.table, t.schema, ctx.options.force],
  );
  // What this call dropped; the chunks are what the registry shows (another session's
  // execute_retention at the same time may have dropped some of them).
  const dropped = Number(result.rows[0]?.dropped ?? 0);
  return { t, before, dropped, table: tableItem(ctx, t, before, dropped), group };
}

/**
 * Each call's chunk outcomes from the registry after all the calls: live before and `dropped` now
 * is dropped; past the cut-off and still live is deferred when the gate holds it back (by Sync's
 * state before the call or now), failed otherwise. Calls with nothing past the cut-off and nothing
 * dropped need no look.
 */
async function settle({ db, options }: JobContext, access: SyncAccess, calls: Call[]): Promise<void> {
  const look = calls.filter((c) => c.dropped > 0 || c.before.chunks.some((x) => x.expired));
  if (look.length === 0) return;
  try {
    const now = await readChunks(
      db,
      look.flatMap((c) => c.before.chunks.map((x) => x.id)),
    );
    const heldBack = (c: Call) =>
      c.before.gated &&
      !options.force &&
      c.before.chunks.some((x) => x.expired && now.get(x.id) && now.get(x.id)?.status !== 'dropped');
    const gated = look.filter(heldBack).map((c) => c.t.id);
    const shadows = gated.length > 0 ? await readShadows(db, access, gated) : new Map<number, ShadowState>();
    for (const c of look) c.group.push(...chunkItems(c, now, shadows.get(c.t.id), options.force));
  } catch (error) {
    // Never throw past collected items: the calls' table items stand, with what is unknown.
    for (const { table } of look) {
      table.outcome = 'failed';
      table.reason = `the chunks' state after execute_retention could not be read: ${errorLine(error)}`;
    }
  }
}

function chunkItems(
  { before, table }: Call,
  now: Map<number, { status: string; last_write_lsn: string | null }>,
  shadowNow: ShadowState | undefined,
  force: boolean,
): ItemResult[] {
  const notices = table.notices ?? [];
  const filed = new Set<string>();
  const evidence = (name: string) => {
    const mine = noticesNaming(notices, name);
    for (const n of mine) filed.add(n);
    return mine.length > 0 ? { notices: mine } : {};
  };
  const after: TableState | undefined = shadowNow && { ...before, shadow: shadowNow };
  const chunks: ItemResult[] = [];
  for (const c of before.chunks) {
    const state = now.get(c.id);
    if (state?.status === 'dropped') {
      chunks.push({ kind: 'chunk', name: c.name, outcome: 'dropped', ...evidence(c.name) });
      continue;
    }
    if (!c.expired) continue;
    if (!state) {
      chunks.push({
        kind: 'chunk',
        name: c.name,
        outcome: 'skipped',
        reason: 'the chunk is no longer in lakets._chunk_metadata',
      });
      continue;
    }
    // Held back by the gate, by Sync's state now or before the call (it may move in between).
    const reason = (after ? gateReason(after, state, force) : null) ?? gateReason(before, c, force);
    const mine = evidence(c.name);
    if (reason !== null) {
      chunks.push({ kind: 'chunk', name: c.name, outcome: 'deferred', reason, ...mine });
    } else {
      const said = mine.notices?.find((n) => n.startsWith('WARNING'));
      chunks.push({
        kind: 'chunk',
        name: c.name,
        outcome: 'failed',
        reason: `execute_retention left it in place although it is past drop_after and ${before.gated && !force ? 'proven durable' : 'not gated on durability'}${said ? `; LakeTS said: ${said}` : ''}`,
        ...mine,
      });
    }
  }
  // The table item keeps only the text that names none of its chunks.
  const rest = notices.filter((n) => !filed.has(n));
  if (rest.length > 0) table.notices = rest;
  else delete table.notices;
  if (chunks.some((x) => x.outcome === 'dropped')) table.outcome = 'dropped';
  return chunks;
}

const parts = gatedParts(
  { total: 'chunksDropped', outcome: 'dropped', metric: 'ChunksDropped' },
  'ChunksRetentionDeferred',
  [['execute_retention', 'text, text, boolean']],
);

export const retention = defineJob({
  name: 'retention',
  title: 'Retention',
  summary: 'Drops expired Lakebase partitions once they are durable in Unity Catalog',
  schedule: 'cron(0 3 * * ? *)',
  periodMinutes: 24 * 60,
  timeoutMinutes: 15,
  delivery: DAILY_DELIVERY,
  payload: ['dryRun', 'tables', 'force', 'check'],
  lockKey: 3,
  run,
  totals: parts.totals,
  emits: parts.emits,
  counted: 'chunks dropped',
  // Behind execute_retention, LakeTS drops partitions.
  needs: { ...parts.needs, partitionDdl: true },
});

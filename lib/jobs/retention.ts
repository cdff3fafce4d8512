// Retention: one execute_retention() per table with an enabled retention-kind policy (the public
// job calls it once per policy row, so a table with two rows ran twice), least recently run first.
// p_force only from a manual payload that names its tables.
//
// Outcomes come from state read before and after the call, never from LakeTS's wording: a chunk
// that was live before and is `dropped` after was dropped; a chunk past the cut-off that is still
// live after was deferred when the durability gate holds it back (its reason computed from its
// last_write_lsn and Lakehouse Sync's state for the shadow), and failed otherwise. NOTICE and
// WARNING text is filed with the chunk it names, as evidence.
import { mayStart } from './budget.ts';
import { errorLine } from './errors.ts';
import { noticesNaming, withNotices } from './notices.ts';
import {
  notDurableReason,
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
  shadow: ShadowState;
  chunks: Chunk[];
}

type StateRow = ShadowRow & { id: number; gated: boolean; chunks: Chunk[] };

// Live chunks (or the given ones) of each table, with what the gate needs. With two retention-kind
// policies the public execute_retention uses either row: a chunk past the longer drop_after is
// past the cut-off whichever it uses.
function stateSql(access: SyncAccess, only: 'live' | 'given'): string {
  const { joins, columns } = shadowSql(access);
  return `
  SELECT r.id, r.shadow_table_name, r.sync_enabled OR coalesce(pol.tiered, false) AS gated, ${columns},
         coalesce((SELECT json_agg(json_build_object(
                            'id', m.id, 'name', m.chunk_name, 'status', m.status,
                            'last_write_lsn', m.last_write_lsn::text,
                            'expired', coalesce(m.range_end <= now() - pol.drop_after, false))
                          ORDER BY m.range_start)
                     FROM lakets._chunk_metadata m
                    WHERE m.chronotable_id = r.id
                      AND ${only === 'live' ? "m.status IN ('active', 'tiered')" : 'm.id = ANY ($2::int[])'}), '[]') AS chunks
    FROM lakets._chronotable_registry r
   CROSS JOIN LATERAL (
     SELECT max((p.config ->> 'drop_after')::interval) AS drop_after, bool_or(p.policy_type = 'tiered_retention') AS tiered
       FROM lakets._policy_registry p
      WHERE p.chronotable_id = r.id AND p.enabled AND p.policy_type IN ('retention', 'tiered_retention')) pol
   ${joins}
   WHERE r.id = ANY ($1::int[])`;
}

function tableState(row: StateRow, access: SyncAccess): TableState {
  return { gated: row.gated, shadow: shadowState(row, access), chunks: row.chunks };
}

export const retention: JobLogic = async (ctx) => {
  const items: ItemResult[] = [];
  const tables = await policyTables(ctx, KINDS, items);
  const access = await syncAccess(ctx.db);
  // Every table's state in one round trip, so each table then costs its execute_retention() call
  // and, only when it had something to do, one read of the state after it.
  const { rows } = await ctx.db.query<StateRow>(stateSql(access, 'live'), [tables.map((t) => t.id)]);
  const before = new Map(rows.map((r) => [r.id, tableState(r, access)]));
  for (const t of tables) {
    if (!mayStart(ctx.budget, items, 'table', t.name)) continue;
    const started = Date.now();
    const state = before.get(t.id);
    try {
      if (!state) throw new Error(`${t.name} is no longer a ChronoTable`);
      items.push(...(ctx.options.dryRun ? plan(ctx, t, state) : await enforce(ctx, access, t, state)));
    } catch (error) {
      items.push({ kind: 'table', name: t.name, outcome: 'failed', reason: errorLine(error) });
    }
    ctx.budget.spent(Date.now() - started);
  }
  return items;
};

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

async function enforce(
  { db, options }: JobContext,
  access: SyncAccess,
  t: ChronoTable,
  before: TableState,
): Promise<ItemResult[]> {
  const started = Date.now();
  const { result, notices } = await withNotices(db, () =>
    db.query<{ dropped: number }>('SELECT lakets.execute_retention($1, $2, $3) AS dropped', [
      t.table,
      t.schema,
      options.force,
    ]),
  );
  const durationMs = Date.now() - started;
  // Nothing expired and nothing dropped: nothing to report, no need to look again. Otherwise what
  // happened to each chunk is read from the registry.
  let after: TableState | undefined;
  if (before.chunks.some((c) => c.expired) || Number(result.rows[0]?.dropped ?? 0) > 0) {
    const { rows } = await db.query<StateRow>(stateSql(access, 'given'), [
      [t.id],
      before.chunks.map((c) => c.id),
    ]);
    const row = rows[0];
    if (!row) throw new Error(`${t.name} is no longer a ChronoTable`);
    after = tableState(row, access);
  }
  const now = new Map((after?.chunks ?? []).map((c) => [c.id, c]));
  const filed = new Set<string>();
  const evidence = (name: string) => {
    const mine = noticesNaming(notices, name);
    for (const n of mine) filed.add(n);
    return mine.length > 0 ? { notices: mine } : {};
  };
  const chunks: ItemResult[] = [];
  for (const c of before.chunks) {
    const state = now.get(c.id);
    if (state?.status === 'dropped') {
      chunks.push({ kind: 'chunk', name: c.name, outcome: 'dropped', ...evidence(c.name) });
      continue;
    }
    if (!c.expired || !after) continue;
    if (!state) {
      chunks.push({
        kind: 'chunk',
        name: c.name,
        outcome: 'skipped',
        reason: 'the chunk is no longer in lakets._chunk_metadata',
      });
      continue;
    }
    // Held back by the gate, by the state read after the call or before it (Sync may move between).
    const reason = gateReason(after, state, options.force) ?? gateReason(before, c, options.force);
    const mine = evidence(c.name);
    if (reason !== null) {
      chunks.push({ kind: 'chunk', name: c.name, outcome: 'deferred', reason, ...mine });
    } else {
      const said = mine.notices?.find((n) => n.startsWith('WARNING'));
      chunks.push({
        kind: 'chunk',
        name: c.name,
        outcome: 'failed',
        reason: `execute_retention left it in place although it is past drop_after and ${before.gated && !options.force ? 'proven durable' : 'not gated on durability'}${said ? `; LakeTS said: ${said}` : ''}`,
        ...mine,
      });
    }
  }
  // The chunks are what the registry shows; the count is what this call dropped (another session's
  // execute_retention at the same time may have dropped some of them).
  const count = Number(result.rows[0]?.dropped ?? 0);
  const rest = notices.filter((n) => !filed.has(n));
  const warning = unreadable(after ?? before, options.force);
  const table: ItemResult = {
    kind: 'table',
    name: t.name,
    outcome: count > 0 || chunks.some((c) => c.outcome === 'dropped') ? 'dropped' : 'unchanged',
    count,
    durationMs,
    ...(options.force ? { reason: 'forced: the durability gate was skipped' } : {}),
    ...(warning ? { warning, reason: warning.message } : {}),
    ...(rest.length > 0 ? { notices: rest } : {}),
  };
  return [table, ...chunks];
}

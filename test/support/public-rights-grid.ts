// Makes the compatible schema behave like the public LakeTS 0.1.3 on two points the jobs can observe
// (docs/lakets-contract.md, "Where the public LakeTS 0.1.3 differs, and how the jobs cope"), so that
// the jobs are tested against both behaviours on one real PostgreSQL. The compatible schema's default is left as
// it is; each switch applies to one test database and returns a function that puts ours back.
//
// - callerRights: no LakeTS function is SECURITY DEFINER, so _ensure_partitions, execute_retention
//   and refresh_rollup run their DDL with the caller's rights.
// - sessionGrid: _ensure_partitions bins on '2000-01-01'::timestamptz read in the *session* time zone,
//   and PL/pgSQL caches that origin in its plans for the rest of the session (until DISCARD PLANS).
import type pg from 'pg';

export type Restore = () => Promise<void>;

/** Every lakets function that runs with its definer's rights now runs with the caller's. */
export async function callerRights(admin: pg.Client): Promise<Restore> {
  const { rows } = await admin.query<{ fn: string }>(
    `SELECT p.oid::regprocedure::text AS fn FROM pg_proc p
      WHERE p.pronamespace = 'lakets'::regnamespace AND p.prosecdef`,
  );
  if (rows.length === 0) throw new Error('callerRights: no SECURITY DEFINER function in schema lakets');
  for (const { fn } of rows) await admin.query(`ALTER FUNCTION ${fn} SECURITY INVOKER`);
  return async () => {
    for (const { fn } of rows) await admin.query(`ALTER FUNCTION ${fn} SECURITY DEFINER`);
  };
}

const CREATE_PARTITIONS = 'lakets._create_partitions(integer,integer,integer,timestamptz,timestamptz)';
const CREATE_CHRONOTABLE = 'lakets.create_chronotable(text,text,interval,text,boolean)';
const CHUNK_ORIGIN = 'lakets._chunk_origin(integer)';

/**
 * Partitions are binned on the origin 2000-01-01 00:00 in the session's time zone, as the public
 * LakeTS does: a session in Europe/Berlin lays out daily chunks starting 23:00 UTC. The origin is a
 * string-bodied SQL function, so it is parsed (in the session's time zone) when PL/pgSQL first plans
 * the call, and that plan is cached for the session, as with the public function's literal.
 */
export async function sessionGrid(admin: pg.Client): Promise<Restore> {
  const { rows } = await admin.query<{ def: string }>(`SELECT pg_get_functiondef($1::regprocedure) AS def`, [
    CHUNK_ORIGIN,
  ]);
  const original = rows[0]?.def;
  if (!original) throw new Error('sessionGrid: lakets._chunk_origin is missing (migration 0003)');
  for (const fn of [CREATE_PARTITIONS, CREATE_CHRONOTABLE])
    await admin.query(`ALTER FUNCTION ${fn} RESET TimeZone`);
  await admin.query(
    `CREATE OR REPLACE FUNCTION lakets._chunk_origin(p_chronotable_id int) RETURNS timestamptz
     LANGUAGE sql STABLE AS $$ SELECT '2000-01-01'::timestamptz $$`,
  );
  return async () => {
    await admin.query(original);
    for (const fn of [CREATE_PARTITIONS, CREATE_CHRONOTABLE])
      await admin.query(`ALTER FUNCTION ${fn} SET TimeZone = 'UTC'`);
  };
}

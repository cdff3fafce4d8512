// Makes an installed compatible schema behave like the public LakeTS 0.1.3 where a job can tell the
// two apart (docs/lakets-contract.md, "Where the public LakeTS 0.1.3 differs, and how the jobs cope"),
// so the jobs are tested against both. Only the points named here; the compatible schema's defaults stay
// as they are. Test support only: never part of the schema a user installs.
//
//  - wording: the public NOTICE/WARNING text of tier_chunk, execute_retention and refresh_rollup,
//    and no NOTICE at all for a refresh_lag skip. Each function is rewritten from its own installed
//    definition with only its RAISE lines replaced, so every decision stays the compatible one.
//  - nullableRefreshLag: `refresh_lag` may be NULL ("never wait"); its default stays 1 hour.
import type pg from 'pg';

export interface PublicBehaviour {
  wording?: boolean;
  nullableRefreshLag?: boolean;
}

/** One RAISE statement of the compatible schema and what the public LakeTS raises instead. */
interface Rewrite {
  /** Matches the whole compatible statement, up to and including its `;`. */
  compatible: RegExp;
  publicText: string;
}

const REWRITES: Record<string, Rewrite[]> = {
  'lakets.tier_chunk(text)': [
    {
      compatible: /RAISE NOTICE 'lakets: tiering skipped chunk %: unknown chunk', p_chunk_name;/g,
      publicText: `RAISE NOTICE 'tier_chunk: % not found or not active', p_chunk_name;`,
    },
    {
      compatible:
        /RAISE NOTICE 'lakets: tiering skipped chunk %: status is %, only active chunks are tiered', c\.chunk_name, c\.status;/g,
      publicText: `RAISE NOTICE 'tier_chunk: % not found or not active', p_chunk_name;`,
    },
    {
      compatible: /RAISE NOTICE 'lakets: tiering deferred chunk %: %', c\.chunk_name, v_reason;/g,
      publicText: `IF v_committed IS NULL THEN
      RAISE NOTICE 'tier_chunk: % skipped — shadow not STREAMING', p_chunk_name;
    ELSIF c.last_write_lsn IS NULL THEN
      RAISE NOTICE 'tier_chunk: % skipped — no recorded write position (cannot prove durable)', p_chunk_name;
    ELSE
      RAISE NOTICE 'tier_chunk: % deferred — CDF has not flushed the chunk yet (committed=%, chunk_last_write=%)',
        p_chunk_name, v_committed, c.last_write_lsn;
    END IF;`,
    },
  ],
  'lakets.execute_retention(text,text,boolean)': [
    {
      compatible: /RAISE NOTICE 'lakets: retention deferred chunk %: %', c\.chunk_name, v_reason;/g,
      publicText: `RAISE NOTICE 'execute_retention: % deferred — not yet durable in UC (pass p_force => TRUE to drop anyway)', c.chunk_name;`,
    },
    {
      compatible:
        /RAISE WARNING 'lakets: retention could not drop chunk %: % \(SQLSTATE %\)', c\.chunk_name, SQLERRM, SQLSTATE;/g,
      publicText: `RAISE WARNING 'Failed to drop chunk %: %', c.chunk_name, SQLERRM;`,
    },
  ],
  'lakets._drop_chunk(integer,boolean,pg_lsn)': [
    {
      compatible:
        /RAISE NOTICE 'lakets: retention deferred chunk %: %', c\.chunk_name,\s+lakets\._not_durable_reason\([^;]*\);/g,
      publicText: `RAISE NOTICE 'execute_retention: % deferred — not yet durable in UC (pass p_force => TRUE to drop anyway)', c.chunk_name;`,
    },
  ],
  'lakets.refresh_rollup(text)': [
    {
      compatible: /RAISE NOTICE 'lakets: RollUp % skipped: another session is refreshing it', r\.name;/g,
      publicText: `RAISE NOTICE 'refresh_rollup: % is already being refreshed by another session, skipping', r.name;`,
    },
    {
      // The public function says nothing when refresh_lag has not passed: FALSE only.
      compatible:
        /RAISE NOTICE 'lakets: RollUp % skipped: refreshed at % and refresh_lag is %', r\.name, r\.last_refreshed_at, r\.refresh_lag;/g,
      publicText: '',
    },
  ],
};

/**
 * Applies the public behaviours asked for to the LakeTS-compatible schema installed in the
 * client's database (the client must own the LakeTS functions, e.g. the admin that installed it).
 * Throws when the compatible schema no longer has a statement this rewrites: the test would
 * otherwise silently run against the compatible wording.
 */
export async function applyPublicBehaviour(admin: pg.Client, behaviour: PublicBehaviour): Promise<void> {
  if (behaviour.wording) {
    for (const [fn, rewrites] of Object.entries(REWRITES)) {
      const { rows } = await admin.query<{ def: string }>(
        'SELECT pg_get_functiondef($1::regprocedure) AS def',
        [fn],
      );
      let def = rows[0]?.def as string;
      for (const r of rewrites) {
        const found = def.match(r.compatible)?.length ?? 0;
        if (found !== 1)
          throw new Error(`public-lakets: expected one ${r.compatible} in ${fn}, found ${found}`);
        def = def.replace(r.compatible, () => r.publicText);
      }
      await admin.query(def);
    }
  }
  if (behaviour.nullableRefreshLag) {
    await admin.query('ALTER TABLE lakets._rollup_registry ALTER COLUMN refresh_lag DROP NOT NULL');
  }
}

/** The two behaviours the jobs are tested against: this project's schema, and the public one. */
export const BEHAVIOURS: ReadonlyArray<{ name: string; behaviour: PublicBehaviour }> = [
  { name: 'the compatible schema', behaviour: {} },
  { name: 'the public LakeTS 0.1.3 behaviour', behaviour: { wording: true, nullableRefreshLag: true } },
];

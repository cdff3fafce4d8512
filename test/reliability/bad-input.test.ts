// Bad input, generated (fast-check, fixed seeds): malformed and hostile invocation payloads through
// the deployed handlers, environment values through parseConfig, secret contents through the fake
// Secrets Manager, and hostile object names that really exist in the database. Every bad input gets
// one clear, one-line error that names the field or variable at fault and changes nothing; hostile
// names that exist are just names: every job works on them and nothing else is touched. The generated
// cases are in support/bad-input-cases.ts.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { ConfigError, parseConfig } from '../../lib/config.ts';
import { JobFailed } from '../../lib/job-handler.ts';
import type { JobName } from '../../lib/jobs/types.ts';
import { LakebaseError } from '../../lib/lakebase/index.ts';
import type { World } from '../lakebase/world.ts';
import { metricsTable, quote, stateFingerprint } from '../support/lakets-fixtures.ts';
import {
  envCases,
  HOSTILE_ROLLUPS,
  HOSTILE_TABLES,
  JOBS,
  jsonSafe,
  LINE_BREAK,
  markers,
  payloadCases,
  SEED,
} from './support/bad-input-cases.ts';
import { captureOutput, label } from './support/capture.ts';
import { figures } from './support/figures.ts';
import { coldHandler, type Handler, handlerDeps, invoke, warmJobWorld } from './support/jobs.ts';

const fig = figures(
  import.meta.url,
  'generated hostile payloads, environment values, secret contents; hostile names that exist',
);
const capture = captureOutput();

let world: World;
let warm: Record<JobName, Handler>;

beforeAll(async () => {
  ({ world, warm } = await warmJobWorld(fig, JOBS));
  fig.meta('seed', String(SEED));
  const admin = world.admin;
  await admin.query('CREATE TABLE public.y (id int); INSERT INTO public.y VALUES (42)');
  for (const [i, name] of HOSTILE_TABLES.entries()) {
    await metricsTable(admin, name, 8, 2);
    if (i % 2 === 0)
      await admin.query(
        `SELECT lakets.add_tiered_retention_policy($1, interval '2 days', interval '5 days')`,
        [name],
      );
    else await admin.query(`SELECT lakets.add_retention_policy($1, interval '5 days')`, [name]);
    await admin.query('SELECT lakets.add_tiering_policy($1, interval $$3 days$$)', [name]);
    await admin.query('SELECT lakets.enable_sync($1)', [name]);
    await syncCaughtUp(admin, name);
  }
  const src = HOSTILE_TABLES[0] as string;
  const [r1, r2, r3] = HOSTILE_ROLLUPS as [string, string, string];
  await admin.query(`SELECT lakets.create_rollup($1, $2, '1 hour', $3)`, [
    r1,
    `SELECT lakets.time_bucket('1 hour', ts) AS bucket, device, sum(value) AS v FROM public.${quote(src)} GROUP BY 1, 2`,
    src,
  ]);
  await admin.query(`SELECT lakets.create_rollup($1, $2, '1 day', NULL, 'public', $3)`, [
    r2,
    `SELECT lakets.time_bucket('1 day', bucket) AS bucket, sum(v) AS v FROM public.${quote(`_rollup_${r1}`)} GROUP BY 1`,
    [r1],
  ]);
  await admin.query(`SELECT lakets.create_rollup($1, $2, '1 day', $3)`, [
    r3,
    `SELECT lakets.time_bucket('1 day', ts) AS bucket, count(*) AS n FROM public.${quote(HOSTILE_TABLES[5] as string)} GROUP BY 1`,
    HOSTILE_TABLES[5],
  ]);
  await admin.query("UPDATE lakets._rollup_registry SET refresh_lag = interval '0'");
});

afterAll(async () => {
  await world.close();
  fig.extra('log lines and messages scanned for secrets', capture.texts.length);
  expect(capture.leaks([...world.secrets(), ...markers]).map(label)).toEqual([]);
});

async function yIntact(): Promise<boolean> {
  const { rows } = await world.admin.query<{ ok: boolean }>(
    "SELECT to_regclass('public.y') IS NOT NULL AND (SELECT array_agg(id) FROM public.y) = ARRAY[42] AS ok",
  );
  return rows[0]?.ok === true;
}

describe('malformed and hostile payloads', () => {
  it('each is refused by the handler with a one-line PayloadError naming the field, and changes nothing', async () => {
    const cases = payloadCases();
    expect(cases.length).toBeGreaterThan(500);
    const before = await stateFingerprint(world.admin);
    const problems: string[] = [];
    const byKind: Record<string, number> = {};
    for (const c of cases) {
      const event = JSON.parse(c.json) as unknown;
      const out = await invoke(warm[c.job], c.job, capture, event);
      const m = out.error?.message ?? '';
      const show = `${c.job} ${c.kind} ${c.json.slice(0, 120)}`;
      if (!out.error) problems.push(`${show}: accepted (${out.report?.status})`);
      else if (out.error.name !== 'PayloadError')
        problems.push(`${show}: ${out.error.name}: ${m.slice(0, 200)}`);
      else if (LINE_BREAK.test(m))
        problems.push(`${show}: message has a line break: ${JSON.stringify(m.slice(0, 200))}`);
      else if (m.length > 400) problems.push(`${show}: message is ${m.length} characters`);
      else if (
        !/"(dryRun|force|tables|rollup)"|unknown field|payload must be|table name|schema name|is not a ChronoTable|RollUp .* does not exist|rollup name/.test(
          m,
        )
      )
        problems.push(`${show}: message names no field: ${m}`);
      byKind[c.kind] = (byKind[c.kind] ?? 0) + 1;
      if (/is not a ChronoTable|does not exist/.test(m) && (await stateFingerprint(world.admin)) !== before)
        problems.push(`${show}: the database changed`);
    }
    for (const [kind, n] of Object.entries(byKind)) fig.extra(`payloads refused: ${kind}`, n);
    fig.count('scenarios', cases.length);
    fig.count('jobRuns', cases.length);
    expect(problems.slice(0, 10), `seed ${SEED}`).toEqual([]);
    expect(await stateFingerprint(world.admin)).toBe(before);
    expect(await yIntact()).toBe(true);
  }, 120_000);
});

describe('environment values', () => {
  it('each bad value is a one-line ConfigError naming its variable, never echoing a secret; good ones pass', () => {
    const problems: string[] = [];
    let refused = 0;
    const cases = envCases();
    for (const c of cases) {
      let error: unknown;
      try {
        parseConfig(c.env);
      } catch (e) {
        error = e;
      }
      const show = `${c.variable}=${JSON.stringify(c.env[c.variable] ?? '').slice(0, 80)}`;
      if (c.valid) {
        if (error) problems.push(`${show}: refused: ${(error as Error).message}`);
        continue;
      }
      refused++;
      if (!(error instanceof ConfigError)) {
        problems.push(
          `${show}: ${error ? `${(error as Error).name}: ${(error as Error).message}` : 'accepted'}`,
        );
        continue;
      }
      capture.note(error.message);
      if (error.variable !== c.variable) problems.push(`${show}: blames ${error.variable}`);
      if (!error.message.includes(c.variable)) problems.push(`${show}: message does not name ${c.variable}`);
      if (LINE_BREAK.test(error.message))
        problems.push(`${show}: message has a line break: ${JSON.stringify(error.message)}`);
      if (error.message.length > 400) problems.push(`${show}: message is ${error.message.length} characters`);
      if (c.secret && error.message.includes(c.secret)) problems.push(`${show}: message echoes the secret`);
    }
    fig.extra('environment values refused', refused);
    fig.extra('environment values accepted (valid by the documented rules)', cases.length - refused);
    fig.count('scenarios', cases.length);
    expect(problems.slice(0, 10), `seed ${SEED}`).toEqual([]);
    expect(refused).toBeGreaterThan(200);
  });
});

// ---------------------------------------------------------------------------------------------
// Secret contents
// ---------------------------------------------------------------------------------------------

describe('secret contents in Secrets Manager', () => {
  it('each bad shape is a one-line SECRET_INVALID naming the key (or, well-formed but wrong, OAUTH_INVALID_CLIENT); nothing changes, nothing leaks', async () => {
    const good = { client_id: world.appId, client_secret: world.clientSecret };
    const mark = () => {
      const m = `dose${randomBytes(12).toString('hex')}`;
      markers.push(m);
      return m;
    };
    const raws: string[] = [];
    const sample = <T>(arb: fc.Arbitrary<T>, n: number, salt: number) =>
      fc.sample(arb, { seed: SEED + 2000 + salt, numRuns: n });
    // Any JSON at all (mostly the wrong shape), and the right shape with one key damaged.
    for (const v of sample(fc.jsonValue(), 60, 1)) raws.push(JSON.stringify(v));
    const damage = fc.oneof(
      fc.constant(undefined),
      fc.constantFrom('', '   ', 0, 1, true, null, [], {}, ['x'], { nested: 'x' }),
      fc.anything().filter((x) => typeof x !== 'string' && x !== undefined),
    );
    for (const [key, value] of sample(
      fc.tuple(fc.constantFrom('client_id', 'client_secret'), damage),
      60,
      2,
    )) {
      const secret: Record<string, unknown> = { ...good, client_secret: mark() };
      if (value === undefined) delete secret[key];
      else secret[key] = value;
      raws.push(JSON.stringify(secret, jsonSafe));
    }
    // Not JSON, or cut short (the text holds a secret that must not be quoted back).
    for (const cut of sample(fc.integer({ min: 1, max: 60 }), 20, 3)) {
      raws.push(JSON.stringify({ ...good, client_secret: mark() }).slice(0, cut));
    }
    raws.push(
      `client_id=${world.appId}\nclient_secret=${mark()}`,
      '',
      ' ',
      '\u0000',
      `{"client_secret": "${mark()}", "client_id": }`,
    );
    // Well-formed, extra keys, prototype keys, wrong values: parsed fine, refused by OAuth.
    raws.push(
      `{"__proto__": {"client_id": "x"}, "client_id": ${JSON.stringify(world.appId)}, "client_secret": ${JSON.stringify(mark())}}`,
      JSON.stringify({ client_id: 'someone-else', client_secret: mark(), extra: mark() }),
      `${JSON.stringify({ client_id: world.appId, client_secret: mark() })}`,
      JSON.stringify({ client_id: world.appId, client_secret: mark(), pad: 'p'.repeat(60_000) }),
    );

    const before = await stateFingerprint(world.admin);
    const problems: string[] = [];
    const codes: Record<string, number> = {};
    for (const raw of raws) {
      world.sm.setSecret(world.secretId, raw);
      // A new container: the secret is read on its first connection.
      const out = await invoke(
        coldHandler('partition-manager', handlerDeps(world)),
        'partition-manager',
        capture,
      );
      const e = out.error;
      const show = JSON.stringify(raw.slice(0, 80));
      if (!(e instanceof LakebaseError)) {
        problems.push(`${show}: ${e ? `${e.name}: ${e.message}` : `ran (${out.report?.status})`}`);
        continue;
      }
      codes[e.code] = (codes[e.code] ?? 0) + 1;
      if (LINE_BREAK.test(e.message)) problems.push(`${show}: line break in ${JSON.stringify(e.message)}`);
      if (e.code === 'SECRET_INVALID') {
        if (!e.message.includes(world.secretId)) problems.push(`${show}: message does not name the secret`);
        if (/has no|not a non-empty string/.test(e.message) && !/"client_(id|secret)"/.test(e.message))
          problems.push(`${show}: message does not name the key: ${e.message}`);
      } else if (e.code !== 'OAUTH_INVALID_CLIENT') problems.push(`${show}: ${e.code}: ${e.message}`);
    }
    world.sm.setSecret(world.secretId, JSON.stringify(good));
    for (const [code, n] of Object.entries(codes)) fig.extra(`bad secret contents refused: ${code}`, n);
    fig.count('scenarios', raws.length);
    fig.count('jobRuns', raws.length);
    fig.fault('Secrets Manager returned a bad secret', raws.length);
    expect(problems.slice(0, 10)).toEqual([]);
    expect(codes['SECRET_INVALID']).toBeGreaterThan(100);
    expect(await stateFingerprint(world.admin)).toBe(before);
    // And with the real secret back, a cold container works again.
    const healed = await invoke(
      coldHandler('partition-manager', handlerDeps(world)),
      'partition-manager',
      capture,
    );
    fig.count('jobRuns');
    expect(healed.report?.status).toBe('ok');
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------
// Hostile names that exist
// ---------------------------------------------------------------------------------------------

describe('ChronoTables and RollUps with hostile names', () => {
  it('every job works on them, scheduled and named in a payload, and table y survives', async () => {
    const problems: string[] = [];
    const chunkCount = async (status: string) =>
      (
        await world.admin.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
            WHERE r.table_name = ANY ($1) AND m.status = $2`,
          [HOSTILE_TABLES, status],
        )
      ).rows[0]?.n ?? 0;
    // The newest partition of each table removed, so that the Partition Manager has work on every table.
    for (const t of HOSTILE_TABLES) {
      const { rows } = await world.admin.query<{ chunk_name: string; rel: string }>(
        `SELECT m.chunk_name, format('%I.%I', r.schema_name, substr(m.chunk_name, length(r.schema_name) + 2)) AS rel
           FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
          WHERE r.table_name = $1 ORDER BY m.range_start DESC LIMIT 1`,
        [t],
      );
      for (const r of rows) {
        await world.admin.query(`DROP TABLE ${r.rel}`);
        await world.admin.query('DELETE FROM lakets._chunk_metadata WHERE chunk_name = $1', [r.chunk_name]);
      }
    }
    for (const job of JOBS) {
      const out = await invoke(warm[job], job, capture);
      fig.count('jobRuns');
      if (out.error || out.report?.status !== 'ok')
        problems.push(`${job} scheduled: ${out.error?.message ?? out.report?.status}`);
      const names = (out.report?.items ?? []).map((i) => i.name);
      if (job !== 'rollup-refresh' && job !== 'tiering' && !names.some((n) => n.includes('drop table y')))
        problems.push(`${job}: the report does not name the hostile table: ${names.slice(0, 3)}`);
    }
    if ((await chunkCount('dropped')) < HOSTILE_TABLES.length) problems.push('retention dropped too little');
    if ((await chunkCount('tiered')) < HOSTILE_TABLES.length) problems.push('tiering tiered too little');
    // Named in manual payloads, quoted as documented.
    const named = HOSTILE_TABLES.map((t) => `"public"."${t.replaceAll('"', '""')}"`);
    for (const job of ['partition-manager', 'tiering', 'retention'] as const) {
      const out = await invoke(warm[job], job, capture, { tables: named, dryRun: job === 'retention' });
      fig.count('jobRuns');
      const tables = (out.report?.items ?? []).filter((i) => i.kind === 'table').length;
      if (
        out.error ||
        !['ok', 'dry-run'].includes(out.report?.status ?? '') ||
        tables < (job === 'tiering' ? 0 : HOSTILE_TABLES.length)
      )
        problems.push(`${job} named: ${out.error?.message ?? `${out.report?.status}, ${tables} tables`}`);
    }
    await world.admin.query(
      `INSERT INTO public.${quote(HOSTILE_TABLES[0] as string)} VALUES (now(), 'h', 1)`,
    );
    for (const r of HOSTILE_ROLLUPS) {
      const out = await invoke(warm['rollup-refresh'], 'rollup-refresh', capture, { rollup: r });
      fig.count('jobRuns');
      const refreshed = out.report?.items.filter((i) => i.outcome === 'refreshed').map((i) => i.name) ?? [];
      if (out.error || out.report?.status !== 'ok' || !refreshed.includes(r))
        problems.push(`rollup ${r}: ${out.error?.message ?? JSON.stringify(out.report?.items)}`);
    }
    const drift = await world.admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM (
         (SELECT lakets.time_bucket('1 hour', ts) AS bucket, device, sum(value) AS v FROM public.${quote(HOSTILE_TABLES[0] as string)} GROUP BY 1, 2
          EXCEPT SELECT * FROM public.${quote(`_rollup_${HOSTILE_ROLLUPS[0]}`)})
         UNION ALL
         (SELECT * FROM public.${quote(`_rollup_${HOSTILE_ROLLUPS[0]}`)}
          EXCEPT SELECT lakets.time_bucket('1 hour', ts), device, sum(value) FROM public.${quote(HOSTILE_TABLES[0] as string)} GROUP BY 1, 2)) d
        WHERE bucket >= (SELECT min(range_start) FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
                          WHERE r.table_name = $1 AND m.status <> 'dropped')`,
      [HOSTILE_TABLES[0]],
    );
    if (drift.rows[0]?.n)
      problems.push(`RollUp ${HOSTILE_ROLLUPS[0]} differs from its query in ${drift.rows[0].n} rows`);
    fig.count('scenarios', HOSTILE_TABLES.length + HOSTILE_ROLLUPS.length);
    if (problems.length > 0) fig.count('inconsistentRuns');
    expect(problems).toEqual([]);
    expect(await yIntact()).toBe(true);
    // Nothing outside LakeTS's own objects was created or dropped in public.
    const { rows } = await world.admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
          AND c.relname <> 'y' AND c.relname NOT LIKE '\\_rollup\\_%'
          AND NOT EXISTS (SELECT 1 FROM lakets._chronotable_registry r WHERE r.table_name = c.relname)
          AND NOT EXISTS (SELECT 1 FROM lakets._chunk_metadata m WHERE m.chunk_name = 'public.' || c.relname)`,
    );
    expect(rows[0]?.n).toBe(0);
  }, 60_000);

  it('a failing run names the hostile table in one line: the report and the Lambda error', async () => {
    const t = HOSTILE_TABLES[0] as string;
    // The registry still names it, but the table is gone (renamed away).
    await world.admin.query(`ALTER TABLE public.${quote(t)} RENAME TO moved_away`);
    try {
      const out = await invoke(warm['partition-manager'], 'partition-manager', capture);
      fig.count('jobRuns');
      fig.fault('ChronoTable missing behind its registry row');
      expect(out.error).toBeInstanceOf(JobFailed);
      expect(out.report?.status).toBe('partial');
      const failed = out.report?.items.find((i) => i.outcome === 'failed');
      expect(failed?.name).toBe(`public."x""; drop table y; --"`);
      expect(failed?.reason).toMatch(/is registered but the table is missing/);
      expect(LINE_BREAK.test(out.error?.message ?? '\n')).toBe(false);
      expect(out.error?.message).toContain('public."x""; drop table y; --"');
    } finally {
      await world.admin.query(`ALTER TABLE public.moved_away RENAME TO ${quote(t)}`);
    }
    expect(await yIntact()).toBe(true);
  });
});

// The generators of test/reliability/bad-input.test.ts, moved here as they were: the seeded cases of
// malformed and hostile payloads and environment values, the hostile names of objects that exist, and
// the secret-looking markers planted in bad input (which must never be printed).
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { parseTableName } from '../../../lib/jobs/payload.ts';
import type { JobName } from '../../../lib/jobs/types.ts';

export const SEED = Number(process.env['RELIABILITY_SEED'] ?? 20261124);
export const JOBS: JobName[] = ['partition-manager', 'tiering', 'retention', 'rollup-refresh'];
const ALLOWED: Record<JobName, string[]> = {
  'partition-manager': ['dryRun', 'tables'],
  tiering: ['dryRun', 'tables'],
  retention: ['dryRun', 'tables', 'force'],
  'rollup-refresh': ['dryRun', 'rollup'],
};
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are the point
const CONTROL = /[\u0000-\u001f\u007f]/;
/** Control characters, and the line breaks of the next one, refused in a role or database name. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are the point
const CONTROL_OR_BREAK = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
/** Line breaks a log viewer may honour: none may appear in an error message. */
export const LINE_BREAK = /[\r\n\u0085\u2028\u2029]/;

export const markers: string[] = []; // secret-looking values planted in bad input: must never be printed

/** Hostile names of objects that exist: ChronoTables (with policies and sync) and RollUps. */
export const HOSTILE_TABLES = [
  'x"; drop table y; --',
  "Robert'); DROP TABLE y;--",
  'dot.ted',
  '$$; drop table y; $$',
  '%s%I%L\\',
  '名前テーブル',
  'With Space',
  '📈metrics',
];
export const HOSTILE_ROLLUPS = ['r"; drop table y; --', "r'$$x", 'r.dot %s'];

// ---------------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------------

export interface PayloadCase {
  kind: string;
  job: JobName;
  /** The JSON text Lambda would receive (parsed as Lambda does, so "__proto__" is an own key). */
  json: string;
}

const HOSTILE_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'valueOf',
  'hasOwnProperty',
  '__defineGetter__',
  'Dryrun',
  'DRYRUN',
  'dry_run',
  'table',
  'Tables',
  'rollups',
  ' dryRun',
  'dryRun ',
  'dryRun\u0000',
  'dr\u0443Run',
  '',
  'k'.repeat(5000),
  '\n',
  'dryRun\u2028',
  '\u2029',
  '"; drop table y; --',
];

const anyString = fc.string({ unit: 'binary', maxLength: 40 });
const nonBoolean = fc.anything().filter((v) => typeof v !== 'boolean' && v !== undefined);
const deep = (depth: number, leaf: unknown, asObject: boolean) => {
  let text = JSON.stringify(leaf);
  for (let i = 0; i < depth; i++) text = asObject ? `{"k":${text}}` : `[${text}]`;
  return text;
};

/** Table names that cannot be parsed (by construction), each a reason of its own. */
const badTableName = fc.oneof(
  fc.tuple(fc.stringMatching(/^[a-z]{1,8}$/), fc.stringMatching(/^[a-z]{0,8}$/)).map(([a, b]) => `${a}"${b}`), // quote inside
  anyString.map((s) => `"${s.replaceAll('"', '')}`), // unclosed
  fc
    .tuple(
      fc.stringMatching(/^[a-z]{1,5}$/),
      fc.stringMatching(/^[a-z]{1,5}$/),
      fc.stringMatching(/^[a-z]{1,5}$/),
    )
    .map((p) => p.join('.')),
  fc.constantFrom('', '.x', 'x.', '.', '""', '"".x', 'a.""'),
  fc.integer({ min: 64, max: 100_000 }).map((n) => 'x'.repeat(n)),
  fc.integer({ min: 22, max: 200 }).map((n) => '名'.repeat(n)), // 3 bytes each: over 63 bytes
  fc
    .tuple(fc.stringMatching(/^[a-z]{1,8}$/), fc.integer({ min: 0, max: 31 }))
    .map(([s, c]) => `${s}${String.fromCharCode(c)}x`),
  fc.stringMatching(/^[a-z]{1,8}$/).map((s) => `${s}\u007f`),
);

/** Valid-looking names of tables that do not exist (SQL injection, format strings, unicode). */
const unknownTableName = fc.oneof(
  fc.constantFrom(
    '"x""; drop table y; --"',
    'y; DROP TABLE y',
    "Robert'); DROP TABLE y;--",
    '"%s%I"',
    'pg_catalog.pg_class',
    'lakets._chronotable_registry',
    'public.y',
    '"public"."y"',
    "'; SELECT pg_sleep(10); --",
    '$$',
    'information_schema.tables',
    'line\u2028separator',
    '"para\u2029graph"."x\u0085y"',
  ),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).map((s) => `"${s.replaceAll('"', '""')}"`),
  fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_ $;'()-]{0,30}$/),
);

export function payloadCases(): PayloadCase[] {
  const cases: PayloadCase[] = [];
  const add = (kind: string, job: JobName, json: string) => cases.push({ kind, job, json });
  const sample = <T>(arb: fc.Arbitrary<T>, n: number, salt: number) =>
    fc.sample(arb, { seed: SEED + salt, numRuns: n });
  const exists = (name: string) => {
    try {
      const ref = parseTableName(name);
      return ref.schema === 'public' && HOSTILE_TABLES.includes(ref.table);
    } catch {
      return false;
    }
  };
  for (const [j, job] of JOBS.entries()) {
    const allowed = ALLOWED[job];
    const salt = j * 100;
    // Unknown fields, hostile keys first, then random ones.
    for (const key of HOSTILE_KEYS)
      add('unknown field', job, JSON.stringify(Object.fromEntries([[key, true]])));
    for (const key of sample(
      anyString.filter((k) => !allowed.includes(k)),
      25,
      salt + 1,
    ))
      add('unknown field', job, `{"dryRun": true, ${JSON.stringify(key)}: ${JSON.stringify(key)}}`);
    // Wrong types.
    for (const field of allowed.filter((f) => f === 'dryRun' || f === 'force'))
      for (const v of sample(nonBoolean, 15, salt + 2))
        add('wrong type', job, JSON.stringify({ [field]: v }, jsonSafe));
    if (allowed.includes('tables')) {
      for (const v of sample(
        fc.anything().filter((x) => !Array.isArray(x) && x !== undefined),
        12,
        salt + 3,
      ))
        add('wrong type', job, JSON.stringify({ tables: v }, jsonSafe));
      add('wrong type', job, '{"tables": []}');
      for (const v of sample(
        fc.array(
          fc.anything().filter((x) => typeof x !== 'string' && x !== undefined),
          { minLength: 1, maxLength: 4 },
        ),
        12,
        salt + 4,
      ))
        add('wrong type', job, JSON.stringify({ tables: ['m', ...v] }, jsonSafe));
      for (const name of sample(badTableName, 30, salt + 5))
        add('bad table name', job, JSON.stringify({ tables: ['ok_name', name] }));
      for (const name of sample(
        unknownTableName.filter((n) => !exists(n)),
        12,
        salt + 6,
      ))
        add('table that is not a ChronoTable', job, JSON.stringify({ tables: [name] }));
      add('huge array', job, JSON.stringify({ tables: Array.from({ length: 1001 }, (_, i) => `t${i}`) }));
      add('huge array', job, JSON.stringify({ tables: Array.from({ length: 50_000 }, () => 'x') }));
      add('deep nesting', job, `{"tables": ${deep(3000, 'x', false)}}`);
      add('very long string', job, JSON.stringify({ tables: [`${'a'.repeat(200_000)}`] }));
    }
    if (allowed.includes('rollup')) {
      for (const v of sample(
        fc.anything().filter((x) => typeof x !== 'string' && x !== undefined),
        15,
        salt + 7,
      ))
        add('wrong type', job, JSON.stringify({ rollup: v }, jsonSafe));
      add('wrong type', job, '{"rollup": ""}');
      for (const name of sample(
        fc.oneof(
          fc.integer({ min: 64, max: 50_000 }).map((n) => 'r'.repeat(n)),
          badTableName.filter((s) => CONTROL.test(s)),
        ),
        10,
        salt + 8,
      ))
        add('bad RollUp name', job, JSON.stringify({ rollup: name }));
      for (const name of sample(
        unknownTableName.filter((n) => !HOSTILE_ROLLUPS.includes(n) && Buffer.byteLength(n) <= 63),
        12,
        salt + 9,
      ))
        add('RollUp that does not exist', job, JSON.stringify({ rollup: name }));
      add('deep nesting', job, `{"rollup": ${deep(3000, 'r', true)}}`);
    }
    add('deep nesting', job, `{"dryRun": ${deep(3000, true, false)}}`);
    add('deep nesting', job, `{"unknown": ${deep(3000, null, true)}}`);
    for (const v of sample(
      fc.jsonValue().filter((x) => x !== null && (typeof x !== 'object' || Array.isArray(x))),
      10,
      salt + 10,
    ))
      add('not an object', job, JSON.stringify(v));
    // A scheduled-looking event must not smuggle options in (a dry run that runs for real, a force).
    for (const extra of [
      '"dryRun": true',
      '"force": true, "tables": ["m"]',
      '"tables": ["m"]',
      '"rollup": "r"',
    ])
      add(
        'scheduled event with options',
        job,
        `{"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}, ${extra}}`,
      );
    add(
      'scheduled event with options',
      job,
      '{"source": "aws.scheduler", "scheduleArn": "arn:x", "dryRun": true}',
    );
    if (job === 'retention') add('force without tables', job, '{"force": true}');
    else add('unknown field', job, '{"force": true, "tables": ["m"]}');
  }
  return cases;
}

export function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

const BASE = {
  LAKETS_PROJECT: 'lakets-prod',
  DATABRICKS_HOST: 'https://dbc-1234.cloud.databricks.com',
  LAKETS_SP_SECRET_ID: 'lakets/sp',
};
const RESOURCE_ID = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export interface EnvCase {
  variable: string;
  env: Record<string, string>;
  /** Whether the value is acceptable (by this test's own reading of the documented rules). */
  valid: boolean;
  secret?: string;
}

export function envCases(): EnvCase[] {
  const cases: EnvCase[] = [];
  const sample = <T>(arb: fc.Arbitrary<T>, n: number, salt: number) =>
    fc.sample(arb, { seed: SEED + 1000 + salt, numRuns: n });
  const text = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 80 }),
    fc.stringMatching(/^[a-z0-9-]{0,70}$/),
    fc.constantFrom(
      'Prod',
      'lakets_prod',
      '-lead',
      'trail-',
      'projects/',
      'projects/a/b',
      'a'.repeat(64),
      'x\ny',
      'x\u2028y',
      '../etc',
    ),
  );
  for (const value of sample(text, 120, 1)) {
    const trimmed = value.trim();
    const name = trimmed.startsWith('projects/') ? trimmed.slice('projects/'.length) : trimmed;
    cases.push({
      variable: 'LAKETS_PROJECT',
      env: { ...BASE, LAKETS_PROJECT: value },
      valid: trimmed !== '' && RESOURCE_ID.test(name),
    });
  }
  const endpoint = fc.oneof(
    text,
    fc
      .tuple(
        fc.stringMatching(/^[a-z0-9-]{1,10}$/),
        fc.stringMatching(/^[a-z0-9-]{1,10}$/),
        fc.stringMatching(/^[a-z0-9-]{1,10}$/),
      )
      .map(([p, b, e]) => `projects/${p}/branches/${b}/endpoints/${e}`),
  );
  for (const value of sample(endpoint, 80, 2)) {
    const m = /^projects\/([^/]+)\/branches\/([^/]+)\/endpoints\/([^/]+)$/.exec(value.trim());
    const valid =
      value.trim() === '' || (!!m && m.slice(1).every((p) => RESOURCE_ID.test(p)) && m[1] === 'lakets-prod');
    cases.push({
      variable: 'LAKETS_LAKEBASE_ENDPOINT',
      env: { ...BASE, LAKETS_LAKEBASE_ENDPOINT: value },
      valid,
    });
  }
  const hosts = fc.oneof(
    fc.constantFrom(
      'ftp://dbc.cloud.databricks.com',
      'http://dbc.cloud.databricks.com',
      'https://dbc.cloud.databricks.com/path',
      'https://dbc.cloud.databricks.com/?q=1',
      'https://user:pass@dbc.cloud.databricks.com',
      'https://',
      'https://exa mple.com',
      'javascript:alert(1)',
      'file:///etc/passwd',
      'http://169.254.169.254',
      '%00',
      'https://[::1',
    ),
    fc
      .string({ unit: 'binary', minLength: 1, maxLength: 60 })
      .filter((s) => s.trim() !== '')
      .map((s) => `https://x${s}`),
  );
  for (const value of sample(hosts, 60, 3)) {
    let valid = false;
    try {
      const raw = value.trim();
      const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `https://${raw}`);
      valid =
        url.protocol === 'https:' &&
        !url.username &&
        !url.password &&
        (url.pathname === '/' || url.pathname === '') &&
        !url.search;
    } catch {
      valid = false;
    }
    cases.push({ variable: 'DATABRICKS_HOST', env: { ...BASE, DATABRICKS_HOST: value }, valid });
  }
  const identifiers = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 70 }),
    fc.integer({ min: 60, max: 300 }).map((n) => 'r'.repeat(n)),
    fc.integer({ min: 20, max: 40 }).map((n) => 'ß'.repeat(n)),
    fc.constantFrom(
      'a\u0000b',
      'role\nname',
      'tab\tname',
      'bell\u0007',
      'nel\u0085x',
      'ls\u2028x',
      'ok-role',
      '"; DROP ROLE x; --',
    ),
  );
  for (const variable of ['LAKETS_PG_ROLE', 'LAKETS_DATABASE']) {
    for (const value of sample(identifiers, 60, variable.length)) {
      const trimmed = value.trim();
      const valid = trimmed === '' || (Buffer.byteLength(trimmed) <= 63 && !CONTROL_OR_BREAK.test(trimmed));
      cases.push({ variable, env: { ...BASE, [variable]: value }, valid });
    }
  }
  for (const value of sample(fc.string({ unit: 'binary', minLength: 1, maxLength: 60 }), 40, 7)) {
    const valid = /^[A-Za-z0-9/_+=.@:-]{1,2048}$/.test(value.trim()) || value.trim() === '';
    cases.push({
      variable: 'LAKETS_SP_SECRET_ID',
      env: { ...BASE, LAKETS_SP_SECRET_ID: value },
      valid: valid && value.trim() !== '',
    });
  }
  // Database URLs carry passwords: refused ones must not be echoed.
  for (const value of sample(
    fc.oneof(text, fc.constantFrom('mysql://u:p@h/d', 'postgres://', 'http://u:p@h/d', 'postgres:/nohost')),
    40,
    8,
  )) {
    const secret = `pw${randomBytes(8).toString('hex')}`;
    markers.push(secret);
    const raw = `${value}${secret}`;
    let valid = false;
    try {
      const url = new URL(raw.trim());
      valid = (url.protocol === 'postgres:' || url.protocol === 'postgresql:') && !!url.hostname;
    } catch {}
    cases.push({ variable: 'LAKETS_DATABASE_URL', env: { LAKETS_DATABASE_URL: raw }, valid, secret });
  }
  // Half a pair of client credentials.
  const secret = `dose${randomBytes(16).toString('hex')}`;
  markers.push(secret);
  cases.push({
    variable: 'DATABRICKS_CLIENT_ID',
    env: { LAKETS_PROJECT: 'p', DATABRICKS_HOST: 'https://h', DATABRICKS_CLIENT_SECRET: secret },
    valid: false,
    secret,
  });
  cases.push({
    variable: 'DATABRICKS_CLIENT_SECRET',
    env: { LAKETS_PROJECT: 'p', DATABRICKS_HOST: 'https://h', DATABRICKS_CLIENT_ID: 'id' },
    valid: false,
  });
  cases.push({
    variable: 'LAKETS_PROJECT',
    env: { DATABRICKS_HOST: 'https://h', LAKETS_SP_SECRET_ID: 's' },
    valid: false,
  });
  cases.push({
    variable: 'DATABRICKS_HOST',
    env: { LAKETS_PROJECT: 'p', LAKETS_SP_SECRET_ID: 's' },
    valid: false,
  });
  return cases;
}

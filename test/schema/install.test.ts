// The installer (lib/schema/installer.ts) and its CLI: idempotent, one transaction per migration,
// versioned in lakets._version, refusing to touch a LakeTS it did not make, safe to run concurrently;
// and the release rule: released migrations are frozen, joined from their parts byte for byte.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { FLAVOR, InstallRefused, installLakets, LAKETS_COMPAT_VERSION } from '../../lib/schema/installer.ts';
import { loadMigrations, MigrationLayoutError } from '../../lib/schema/migrations.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { expectError } from '../support/pg-assert.ts';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '..', '..');
const SQL_DIR = join(REPO, 'lib', 'schema', 'sql');

const tempDirs: string[] = [];
afterAll(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/** A migrations directory: the package's own parts plus `extra` (file name → SQL). */
function migrationsDir(extra: Record<string, string>, options: { withPackaged?: boolean } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'lakets-migrations-'));
  chmodSync(dir, 0o755);
  tempDirs.push(dir);
  if (options.withPackaged ?? true) {
    for (const part of loadMigrations().flatMap((m) => m.parts)) {
      mkdirSync(dirname(join(dir, part)), { recursive: true });
      copyFileSync(join(SQL_DIR, part), join(dir, part));
    }
  }
  for (const [file, sql] of Object.entries(extra)) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), sql);
  }
  return dir;
}

/**
 * Everything an install could change: LakeTS schemas (lakets*, with ACLs), relations, columns, defaults,
 * constraints, indexes, triggers, functions (definition, ACL and oid, so a drop-and-recreate shows)
 * and the _version rows.
 */
async function fingerprint(client: pg.Client): Promise<string> {
  const { rows } = await client.query<{ fp: string | null; items: string }>(`
    WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname ~ '^lakets'),
    items AS (
      SELECT 'n ' || nspname || ' ' || coalesce(n.nspacl::text, '') AS x FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM ns)
      UNION ALL
      SELECT 'f ' || p.oid::regprocedure::text || ' ' || p.oid || ' ' || coalesce(p.proacl::text, '') || ' '
             || pg_get_functiondef(p.oid)
        FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM ns)
      UNION ALL
      SELECT 'c ' || c.oid::regclass::text || ' ' || c.oid || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '')
        FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns)
      UNION ALL
      SELECT 'a ' || a.attrelid::regclass::text || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
             || ' ' || a.attnotnull || ' ' || a.attidentity::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE c.relnamespace IN (SELECT oid FROM ns) AND a.attnum > 0 AND NOT a.attisdropped
      UNION ALL
      SELECT 'k ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ns)
      UNION ALL
      SELECT 'i ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       WHERE c.relnamespace IN (SELECT oid FROM ns)
      UNION ALL
      SELECT 't ' || t.tgrelid::regclass::text || ' ' || pg_get_triggerdef(t.oid) FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace IN (SELECT oid FROM ns)
    )
    SELECT md5(string_agg(x, E'\\n' ORDER BY x)) AS fp, count(*)::text AS items FROM items`);
  let versions = '';
  if ((await client.query("SELECT to_regclass('lakets._version') AS r")).rows[0].r) {
    const v = await client.query('SELECT * FROM lakets._version ORDER BY 1');
    versions = JSON.stringify(v.rows);
  }
  return `${rows[0]!.items}:${rows[0]!.fp}:${versions}`;
}

async function emptyDatabase(): Promise<{ db: TestDatabase; client: pg.Client }> {
  const db = await freshDatabase();
  return { db, client: await db.connect() };
}

async function cli(url: string | undefined): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['LAKETS_DATABASE_URL'];
  if (url) env['LAKETS_DATABASE_URL'] = url;
  try {
    const { stdout, stderr } = await run('npm', ['run', '-s', 'lakets:install'], { cwd: REPO, env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function laketsObjects(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: string }>(
    `SELECT ((SELECT count(*) FROM pg_namespace WHERE nspname ~ '^lakets')
           + (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname ~ '^lakets')
           + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname ~ '^lakets'))::text AS n`,
  );
  return Number(rows[0]!.n);
}

const packaged = loadMigrations();
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const packagedSql = (version: string) => packaged.find((m) => m.version === version)!.sql;

describe('installLakets', () => {
  it('installs every packaged migration once, records them, and a second run changes nothing', async () => {
    expect(packaged.map((m) => m.version)).toContain('0001_core');
    const { client } = await emptyDatabase();
    expect(await laketsObjects(client)).toBe(0);

    const first = await installLakets(client);
    expect(first.applied).toEqual(packaged.map((m) => m.version));
    expect(first.installed).toEqual(packaged.map((m) => m.version));
    expect(first.laketsVersion).toBe(LAKETS_COMPAT_VERSION);
    const { rows } = await client.query(
      'SELECT version, lakets_version, flavor, checksum FROM lakets._version ORDER BY version',
    );
    expect(rows).toEqual(
      packaged.map((m) => ({
        version: m.version,
        lakets_version: '0.1.3',
        flavor: FLAVOR,
        checksum: m.checksum,
      })),
    );
    // The checksum of the source: the parts of the migration's folder, concatenated in name order.
    const coreDir = join(SQL_DIR, '0001_core');
    const checksumOfSource = sha256(
      readdirSync(coreDir)
        .sort()
        .map((part) => readFileSync(join(coreDir, part), 'utf8'))
        .join(''),
    );
    expect(rows.find((r) => r.version === '0001_core')?.checksum).toBe(checksumOfSource);

    const before = await fingerprint(client);
    const second = await installLakets(client);
    expect(second.applied).toEqual([]);
    expect(second.installed).toEqual(first.installed);
    expect(await fingerprint(client)).toBe(before);
    // The installer leaves the client usable, outside any transaction.
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
  });

  it('runs each migration in its own transaction: a failing one leaves nothing of itself behind', async () => {
    const { client } = await emptyDatabase();
    const dir = migrationsDir({
      '9999_broken.sql': `CREATE TABLE lakets.broken_marker (x int);
        CREATE FUNCTION lakets.broken_fn() RETURNS int LANGUAGE sql RETURN 1;
        SELECT 1 / 0;`,
    });
    await expectError(
      () => installLakets(client, loadMigrations(dir)),
      /9999_broken failed, nothing of it was kept: division by zero/,
    );
    // The earlier migrations committed; the broken one left no table, function or version row.
    const { rows } = await client.query('SELECT version FROM lakets._version ORDER BY version');
    expect(rows.map((r) => r.version)).toEqual(packaged.map((m) => m.version));
    const left = await client.query(
      "SELECT to_regclass('lakets.broken_marker') AS t, to_regprocedure('lakets.broken_fn()') AS f",
    );
    expect(left.rows[0]).toEqual({ t: null, f: null });
    // The session is usable and the regular install sees a current schema.
    expect((await installLakets(client)).applied).toEqual([]);
  });

  it('records a migration in the transaction that ran it: if recording fails, the migration is undone', async () => {
    const { client } = await emptyDatabase();
    const dir = migrationsDir({
      '9999_unrecorded.sql': `CREATE TABLE lakets.half_marker (x int);
        CREATE FUNCTION lakets.refuse_version() RETURNS trigger LANGUAGE plpgsql
          AS $$ BEGIN RAISE EXCEPTION 'cannot record %', NEW.version; END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON lakets._version FOR EACH ROW EXECUTE FUNCTION lakets.refuse_version();`,
    });
    await expectError(() => installLakets(client, loadMigrations(dir)), 'cannot record 9999_unrecorded');
    const left = await client.query(
      `SELECT to_regclass('lakets.half_marker') AS t, to_regprocedure('lakets.refuse_version()') AS f,
              (SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'lakets._version'::regclass AND NOT tgisinternal) AS triggers`,
    );
    expect(left.rows[0]).toEqual({ t: null, f: null, triggers: 0 });
  });

  it('a failing first migration leaves the database without any LakeTS object', async () => {
    const { client } = await emptyDatabase();
    const core = packagedSql('0001_core');
    const dir = migrationsDir({ '0001_core.sql': `${core}\nSELECT 1 / 0;\n` }, { withPackaged: false });
    await expectError(() => installLakets(client, loadMigrations(dir)), '0001_core failed');
    expect(await laketsObjects(client)).toBe(0);
    // And a correct install afterwards still works from scratch.
    expect((await installLakets(client)).applied).toEqual(packaged.map((m) => m.version));
  });

  it('installs and works as a role that is not a superuser (as on Lakebase)', async () => {
    const db = await freshDatabase();
    const admin = await db.connect();
    const role = `installer_${db.name}`;
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'inst';
      GRANT CREATE ON DATABASE ${db.name} TO ${role}; GRANT CREATE ON SCHEMA public TO ${role};`);
    const client = await db.connect({ user: role, password: 'inst' });
    expect((await installLakets(client)).applied).toEqual(packaged.map((m) => m.version));
    await client.query(`CREATE TABLE m (ts timestamptz NOT NULL, v int);
      INSERT INTO m SELECT now() - g * interval '1 day', g FROM generate_series(1, 10) g;
      SELECT lakets.create_chronotable('m', 'ts', '1 day');
      SELECT lakets.add_retention_policy('m', '3 days');`);
    // Rows 1..10 days ago: the chunks of days -10..-4 end at least 3 days ago.
    expect((await client.query("SELECT lakets.execute_retention('m') AS n")).rows[0].n).toBe(7);
    const owner = await admin.query(
      "SELECT nspowner::regrole::text AS o FROM pg_namespace WHERE nspname = 'lakets'",
    );
    expect(owner.rows[0].o).toBe(role);
  });

  it('concurrent installers queue: one installs, the other finds it done', async () => {
    const db = await freshDatabase();
    const [gate, a, b] = await Promise.all([db.connect(), db.connect(), db.connect()]);
    // Hold the installers' lock until both are waiting on it, so they really start together.
    await gate.query('SELECT pg_advisory_lock(7117001913)');
    const both = Promise.all([installLakets(a), installLakets(b)]);
    let waiting = 0;
    for (let i = 0; i < 200 && waiting < 2; i++) {
      const { rows } = await gate.query<{ n: string }>(
        "SELECT count(*)::text AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
      );
      waiting = Number(rows[0]!.n);
      if (waiting < 2) await new Promise((r) => setTimeout(r, 10));
    }
    expect(waiting).toBe(2);
    await gate.query('SELECT pg_advisory_unlock(7117001913)');
    const results = await both;
    const applied = results.map((r) => r.applied.length).sort();
    expect(applied).toEqual([0, packaged.length]);
    const { rows } = await gate.query('SELECT version FROM lakets._version ORDER BY version');
    expect(rows.map((r) => r.version)).toEqual(packaged.map((m) => m.version));
  });
});

describe('installLakets refuses to change a LakeTS it did not make', () => {
  it('refuses a lakets schema with objects but no lakets._version, and changes nothing', async () => {
    const { client } = await emptyDatabase();
    await client.query(`CREATE SCHEMA lakets;
      CREATE TABLE lakets._chronotable_registry (id serial PRIMARY KEY, table_name text);
      INSERT INTO lakets._chronotable_registry (table_name) VALUES ('theirs');`);
    const before = await fingerprint(client);
    const error = await expectError(() => installLakets(client), 'did not make');
    expect(error).toBeInstanceOf(InstallRefused);
    expect(await fingerprint(client)).toBe(before);
    expect((await client.query('SELECT table_name FROM lakets._chronotable_registry')).rows).toEqual([
      { table_name: 'theirs' },
    ]);
  });

  it('refuses a lakets._version without a flavor column', async () => {
    const { client } = await emptyDatabase();
    await client.query(`CREATE SCHEMA lakets;
      CREATE TABLE lakets._version (version text PRIMARY KEY, installed_at timestamptz DEFAULT now());
      INSERT INTO lakets._version (version) VALUES ('0.1.3');`);
    const before = await fingerprint(client);
    await expectError(() => installLakets(client), 'no lakets._version with a flavor column');
    expect(await fingerprint(client)).toBe(before);
  });

  it('refuses a _version row of another flavor', async () => {
    const { client } = await emptyDatabase();
    await installLakets(client);
    await client.query("UPDATE lakets._version SET flavor = 'databricks-lakets' WHERE version = '0001_core'");
    const before = await fingerprint(client);
    await expectError(() => installLakets(client), 'a different LakeTS is installed');
    expect(await fingerprint(client)).toBe(before);
  });

  it('refuses an installed migration whose checksum differs from the package (another build)', async () => {
    const { client } = await emptyDatabase();
    const core = packagedSql('0001_core');
    const other = migrationsDir({ '0001_core.sql': `${core}\n-- another build\n` }, { withPackaged: false });
    await installLakets(client, loadMigrations(other));
    const before = await fingerprint(client);
    const error = await expectError(() => installLakets(client), 'differs from this package');
    expect(error).toBeInstanceOf(InstallRefused);
    expect(await fingerprint(client)).toBe(before);
  });

  it('refuses an unknown (newer) installed migration and applies none of its own pending ones', async () => {
    const { client } = await emptyDatabase();
    await installLakets(client);
    await client.query(
      "INSERT INTO lakets._version (version, lakets_version, flavor, checksum) VALUES ('9999_future', '0.2.0', $1, 'x')",
      [FLAVOR],
    );
    const dir = migrationsDir({ '9000_extra.sql': 'CREATE TABLE lakets.extra_marker (x int);' });
    const before = await fingerprint(client);
    await expectError(
      () => installLakets(client, loadMigrations(dir)),
      'which this package does not know: it is newer',
    );
    expect(await fingerprint(client)).toBe(before);
    expect((await client.query("SELECT to_regclass('lakets.extra_marker') AS t")).rows[0].t).toBeNull();
  });
});

describe('npm run lakets:install', () => {
  it('installs into an empty database, then says nothing changed', async () => {
    const { db, client } = await emptyDatabase();
    const first = await cli(db.url);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(
      `installed LakeTS-compatible schema ${LAKETS_COMPAT_VERSION}: applied 0001_core`,
    );
    const { rows } = await client.query('SELECT version, flavor FROM lakets._version ORDER BY version');
    expect(rows).toEqual(packaged.map((m) => ({ version: m.version, flavor: FLAVOR })));
    const before = await fingerprint(client);

    const second = await cli(db.url);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('is already installed');
    expect(second.stdout).toContain('nothing changed');
    expect(await fingerprint(client)).toBe(before);
  });

  it('exits non-zero with "refused" next to a foreign LakeTS, and without a URL', async () => {
    const { db, client } = await emptyDatabase();
    await client.query('CREATE SCHEMA lakets; CREATE TABLE lakets._chunk_metadata (id int);');
    const refused = await cli(db.url);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('lakets:install: refused:');
    expect(
      await client.query("SELECT to_regclass('lakets._version') AS v").then((r) => r.rows[0].v),
    ).toBeNull();

    const noUrl = await cli(undefined);
    expect(noUrl.code).toBe(2);
    expect(noUrl.stderr).toContain('set LAKETS_DATABASE_URL');
  });
});

// The sha256 of each released migration, computed from the single files they were released as
// (before their source was split into parts). Installs made since record these in lakets._version.
// Releasing a migration adds its line here; a released line never changes.
const RELEASED: Record<string, string> = {
  '0001_core': '449fb864d8723999fccd5b3f6aafeba043faa53a5743a1d051c58452e8d894d9',
  '0002_rollups': '1ca4216d0667f1b3fe0219c7cca83daf4225abf6d75b598e920ce6fa80df0c6c',
  '0003_chunk_grid': '7acdb47506de85062696c3d18f8de4287ae2646d2a1c7abf854b4f28fee543f3',
};

describe('released migrations are frozen', () => {
  it('every packaged migration is released, and its parts joined are the released text', () => {
    expect(packaged.map((m) => m.version)).toEqual(Object.keys(RELEASED));
    for (const m of packaged) {
      expect(sha256(m.sql), m.version).toBe(RELEASED[m.version]);
      expect(m.checksum, m.version).toBe(RELEASED[m.version]);
      // Split by concern into parts numbered 01, 02, ... without gaps, joined in that order.
      expect(
        m.parts.map((part) => part.replace(/^\d{4}_[a-z0-9_]+\/(\d{2})_[a-z0-9_]+\.sql$/, '$1')),
        m.version,
      ).toEqual(m.parts.map((_, i) => String(i + 1).padStart(2, '0')));
    }
    expect(packaged.find((m) => m.version === '0001_core')?.parts.length).toBeGreaterThan(8);
    expect(packaged.find((m) => m.version === '0002_rollups')?.parts.length).toBeGreaterThan(8);
  });

  it('an install made from the released single files is accepted as it is: nothing re-runs, nothing changes', async () => {
    const { db, client } = await emptyDatabase();
    // The layout they were released in: one NNNN_name.sql file each, with the released text.
    const old = migrationsDir(Object.fromEntries(packaged.map((m) => [`${m.version}.sql`, m.sql])), {
      withPackaged: false,
    });
    const first = await installLakets(client, loadMigrations(old));
    expect(first.applied).toEqual(Object.keys(RELEASED));
    const recorded = await client.query('SELECT version, checksum FROM lakets._version ORDER BY version');
    expect(Object.fromEntries(recorded.rows.map((r) => [r.version, r.checksum]))).toEqual(RELEASED);
    const before = await fingerprint(client);

    const again = await installLakets(client);
    expect(again.applied).toEqual([]);
    expect(again.installed).toEqual(Object.keys(RELEASED));
    expect(await fingerprint(client)).toBe(before);

    const viaCli = await cli(db.url);
    expect(viaCli.code, viaCli.stderr).toBe(0);
    expect(viaCli.stdout).toContain('nothing changed');
    expect(await fingerprint(client)).toBe(before);
  });

  it('a change to any part of a released migration is refused against its installs, by checksum', async () => {
    const { client } = await emptyDatabase();
    await installLakets(client);
    const before = await fingerprint(client);
    const fixed = migrationsDir({});
    appendFileSync(join(fixed, '0001_core', '07_policies.sql'), '-- a fix made in place\n');
    const changed = loadMigrations(fixed).find((m) => m.version === '0001_core')!;
    expect(changed.checksum).not.toBe(RELEASED['0001_core']);
    const error = await expectError(
      () => installLakets(client, loadMigrations(fixed)),
      'installed migration 0001_core differs from this package',
    );
    expect(error).toBeInstanceOf(InstallRefused);
    expect(await fingerprint(client)).toBe(before);
  });
});

describe('loadMigrations', () => {
  it('joins a folder with nothing between its parts, and takes a single file as it is', () => {
    const dir = migrationsDir(
      {
        '0001_a/02_second.sql': 'SELECT 2;\n',
        '0001_a/01_first.sql': 'SELECT 1;\n',
        '0002_b.sql': 'SELECT 3;',
      },
      { withPackaged: false },
    );
    expect(loadMigrations(dir).map(({ version, parts, sql }) => ({ version, parts, sql }))).toEqual([
      {
        version: '0001_a',
        parts: ['0001_a/01_first.sql', '0001_a/02_second.sql'],
        sql: 'SELECT 1;\nSELECT 2;\n',
      },
      { version: '0002_b', parts: ['0002_b.sql'], sql: 'SELECT 3;' },
    ]);
  });

  it.each([
    [{ '0001_a/01_x.sql': 'SELECT 1;\n', '0001_a/notes.txt': '' }, 'holds "notes.txt", which is not a part'],
    [{ '0001_a/01_x.sql': 'SELECT 1;\n', '0001_a/01_y.sql': 'SELECT 2;\n' }, 'two parts numbered 01'],
    [{ '0001_a/01_x.sql': 'SELECT 1;\n', '0001_a.sql': 'SELECT 1;\n' }, 'both a folder and a file'],
    [
      { '0001_a/01_x.sql': 'SELECT 1;', '0001_a/02_y.sql': 'SELECT 2;\n' },
      '0001_a/01_x.sql does not end with a newline',
    ],
  ])('refuses an ambiguous layout: %o', (files, message) => {
    const dir = migrationsDir(files, { withPackaged: false });
    expect(() => loadMigrations(dir)).toThrow(MigrationLayoutError);
    expect(() => loadMigrations(dir)).toThrow(message);
  });

  it('refuses a migration folder without parts', () => {
    const dir = migrationsDir({}, { withPackaged: false });
    mkdirSync(join(dir, '0001_a'));
    expect(() => loadMigrations(dir)).toThrow('migration 0001_a has no parts');
  });
});

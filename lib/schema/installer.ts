// Installs this project's LakeTS-compatible schema: the migrations of ./sql (joined from their parts,
// see migrations.ts), one transaction each, recorded with their checksum in lakets._version.
// Idempotent; refuses to touch a `lakets` schema it did not install, or a different build of this one.
import type pg from 'pg';
import { loadMigrations, type Migration } from './migrations.ts';

/** Which LakeTS release the schema follows, and how our rows in lakets._version are marked. */
export const LAKETS_COMPAT_VERSION = '0.1.3';
export const FLAVOR = 'lakets-jobs-aws';

export interface InstallResult {
  /** Migrations applied by this call (empty when the schema was already current). */
  applied: string[];
  /** Every migration now recorded. */
  installed: string[];
  laketsVersion: string;
}

export class InstallRefused extends Error {
  override name = 'InstallRefused';
}

// Serialises concurrent installers against one database (any 64-bit key unique to this purpose).
const INSTALL_LOCK_KEY = 7_117_001_913;

interface InstalledRow {
  version: string;
  flavor: string;
  checksum: string;
}

async function readInstalled(client: pg.Client): Promise<InstalledRow[] | 'none'> {
  const schema = await client.query<{ objects: string; has_version: boolean; has_flavor: boolean }>(
    `SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = n.oid)
            + (SELECT count(*) FROM pg_proc WHERE pronamespace = n.oid) AS objects,
            to_regclass('lakets._version') IS NOT NULL AS has_version,
            EXISTS (SELECT 1 FROM pg_attribute
                     WHERE attrelid = to_regclass('lakets._version') AND attname = 'flavor') AS has_flavor
       FROM pg_namespace n WHERE n.nspname = 'lakets'`,
  );
  const row = schema.rows[0];
  if (!row || Number(row.objects) === 0) return 'none';
  if (!row.has_version || !row.has_flavor) {
    throw new InstallRefused(
      'schema "lakets" already holds a LakeTS that this installer did not make (no lakets._version with a flavor column); ' +
        'keep using that LakeTS, or drop schema lakets first if you really want this compatible schema',
    );
  }
  const rows = await client.query<InstalledRow>(
    'SELECT version, flavor, checksum FROM lakets._version ORDER BY version',
  );
  return rows.rows;
}

function check(installed: InstalledRow[], known: Migration[]): void {
  const byVersion = new Map(known.map((m) => [m.version, m]));
  for (const row of installed) {
    if (row.flavor !== FLAVOR) {
      throw new InstallRefused(
        `lakets._version records "${row.version}" from "${row.flavor}", not from ${FLAVOR}: a different LakeTS is installed; refusing to change it`,
      );
    }
    const ours = byVersion.get(row.version);
    if (!ours) {
      throw new InstallRefused(
        `the installed LakeTS-compatible schema has migration ${row.version}, which this package does not know: it is newer; upgrade this package instead`,
      );
    }
    if (ours.checksum !== row.checksum) {
      throw new InstallRefused(
        `installed migration ${row.version} differs from this package's copy (checksum ${row.checksum.slice(0, 12)} vs ${ours.checksum.slice(0, 12)}): a different build of the schema is installed`,
      );
    }
  }
}

/**
 * Applies the pending migrations. The client must be able to create schemas (an admin); it is left
 * in autocommit mode. Safe to run concurrently: installers queue on an advisory lock.
 */
export async function installLakets(
  client: pg.Client,
  migrations = loadMigrations(),
): Promise<InstallResult> {
  await client.query('SELECT pg_advisory_lock($1)', [INSTALL_LOCK_KEY]);
  try {
    const installed = await readInstalled(client);
    const done = installed === 'none' ? [] : installed;
    check(done, migrations);
    const doneSet = new Set(done.map((r) => r.version));
    const applied: string[] = [];
    for (const m of migrations) {
      if (doneSet.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query(
          'INSERT INTO lakets._version (version, lakets_version, flavor, checksum) VALUES ($1, $2, $3, $4)',
          [m.version, LAKETS_COMPAT_VERSION, FLAVOR, m.checksum],
        );
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        const message = error instanceof Error ? error.message : String(error);
        throw new Error(
          `installing LakeTS-compatible schema migration ${m.version} failed, nothing of it was kept: ${message}`,
        );
      }
      applied.push(m.version);
    }
    return {
      applied,
      installed: [...doneSet, ...applied].sort(),
      laketsVersion: LAKETS_COMPAT_VERSION,
    };
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [INSTALL_LOCK_KEY]);
  }
}

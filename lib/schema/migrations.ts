// The schema's migrations, read from ./sql as the installer applies them. A migration is a folder of
// numbered parts, one concern each, joined in name order with nothing added between them, so the
// joined text is byte for byte the migration as released and its checksum matches every install made
// before the source was split. A single `NNNN_name.sql` file is a migration too.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Migration {
  /** Folder name (or file name without `.sql`), e.g. `0001_core`: the key recorded in lakets._version. */
  version: string;
  /** The files it is joined from, relative to the migrations folder, in order. */
  parts: string[];
  sql: string;
  /** sha256 of `sql`, hex: what lakets._version records and the installer compares. */
  checksum: string;
}

/** A migrations folder laid out so that the order or the text of a migration would be ambiguous. */
export class MigrationLayoutError extends Error {
  override name = 'MigrationLayoutError';
}

export const SQL_DIR = join(import.meta.dirname, 'sql');
const VERSION = /^\d{4}_[a-z0-9_]+$/;
const PART = /^(\d{2})_[a-z0-9_]+\.sql$/;

/** Every migration in `dir`, in version order. Other entries of `dir` are ignored. */
export function loadMigrations(dir = SQL_DIR): Migration[] {
  const found = new Map<string, string[]>();
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    let version: string;
    let parts: string[];
    if (entry.isDirectory() && VERSION.test(entry.name)) {
      version = entry.name;
      parts = partsOf(dir, version).map((part) => `${version}/${part}`);
    } else if (entry.isFile() && entry.name.endsWith('.sql') && VERSION.test(entry.name.slice(0, -4))) {
      version = entry.name.slice(0, -4);
      parts = [entry.name];
    } else {
      continue;
    }
    if (found.has(version)) {
      throw new MigrationLayoutError(`migration ${version} is both a folder and a file in ${dir}: keep one`);
    }
    found.set(version, parts);
  }
  return [...found.keys()].sort().map((version) => {
    const parts = found.get(version)!;
    const texts = parts.map((part) => readFileSync(join(dir, part), 'utf8'));
    // Parts end on a line boundary, so joining never glues two statements onto one line.
    const unended = parts.find((part, i) => part.includes('/') && !texts[i]!.endsWith('\n'));
    if (unended) throw new MigrationLayoutError(`part ${unended} does not end with a newline`);
    const sql = texts.join('');
    return { version, parts, sql, checksum: createHash('sha256').update(sql).digest('hex') };
  });
}

/** A migration folder's parts in order: each `NN_concern.sql`, numbers unique. */
function partsOf(dir: string, version: string): string[] {
  const entries = readdirSync(join(dir, version), { withFileTypes: true });
  const parts: string[] = [];
  const numbers = new Set<string>();
  for (const entry of entries) {
    const number = PART.exec(entry.name)?.[1];
    if (!entry.isFile() || number === undefined) {
      throw new MigrationLayoutError(
        `migration ${version} holds "${entry.name}", which is not a part named NN_concern.sql`,
      );
    }
    if (numbers.has(number)) {
      throw new MigrationLayoutError(`migration ${version} has two parts numbered ${number}`);
    }
    numbers.add(number);
    parts.push(entry.name);
  }
  if (parts.length === 0) throw new MigrationLayoutError(`migration ${version} has no parts`);
  return parts.sort();
}

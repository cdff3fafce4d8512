// Postgres identifiers in one place: the check of a name taken from outside (a table in a payload, a
// role or database in the configuration, a role for the grants), and the project's only quoting of
// names in TypeScript (SQL built here and messages alike; in SQL, format('%I') does it). The check
// refuses only what Postgres would mangle or what would break a log line or a login.

/** NAMEDATALEN - 1: Postgres truncates longer names, so the name would silently be another one. */
export const MAX_IDENTIFIER_BYTES = 63;

// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;
// Names typed into a login (role, database): C1 controls and the Unicode line separators too. Accepted,
// a pasted line break only surfaced later as a login failure that did not name the setting.
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL_OR_BREAK = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

export type IdentifierProblem = 'empty' | 'too long' | 'control characters';

/**
 * Why `name` cannot be used as given, or undefined when it can. `login`: a role or database name a
 * connection logs in with, refused also with C1 controls and U+2028/U+2029 (a table may have them).
 */
export function identifierProblem(name: string, login = false): IdentifierProblem | undefined {
  if (name.length === 0) return 'empty';
  if (Buffer.byteLength(name, 'utf8') > MAX_IDENTIFIER_BYTES) return 'too long';
  if ((login ? CONTROL_OR_BREAK : CONTROL).test(name)) return 'control characters';
  return undefined;
}

/** A name as a Postgres quoted identifier: always quoted, quotes inside doubled (SQL and messages alike). */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

// Postgres reads these back unchanged without quotes (lower case, no folding); keywords are not
// looked up: this is for names shown to a person, never for SQL.
const PLAIN = /^[a-z_][a-z0-9_$]*$/;

/** A name as a person reads it in a report: bare when plain, quoted when Postgres would need it. */
export function displayIdentifier(name: string): string {
  return PLAIN.test(name) ? name : quoteIdentifier(name);
}

// One line for any error that ends an item or a run. Postgres errors keep their SQLSTATE, which is
// what an operator searches for; a missing privilege (42501) also names the grants command.
import { explainPostgresError } from '../lakebase/errors.ts';
import type { Queryable } from '../queryable.ts';

export function errorLine(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const line = error.message.split('\n')[0] ?? error.message;
    return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? `${line} (SQLSTATE ${code})` : line;
  }
  return String(error);
}

/**
 * The one line of an item's error: for a 42501, Postgres's own message with the role that lacks the
 * privilege and `npm run grants -- <role>`. The role is read only then (current_user), so a run whose
 * items succeed costs no extra round trip.
 */
export async function itemErrorLine(db: Queryable, error: unknown): Promise<string> {
  if ((error as { code?: unknown } | null)?.code !== '42501') return errorLine(error);
  const role = await db
    .query<{ role: string }>('SELECT current_user AS role')
    .then((r) => r.rows[0]?.role)
    .catch(() => undefined);
  return role === undefined ? errorLine(error) : errorLine(explainPostgresError(error, role));
}

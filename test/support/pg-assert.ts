// Assertions about what Postgres said: the NOTICE/WARNING lines of a session, and expected errors.
import type pg from 'pg';

export interface Notice {
  severity: string;
  message: string;
}

/** Records NOTICE/WARNING messages sent to `client`; take() returns and clears them. */
export function captureNotices(client: pg.Client): { take(): Notice[] } {
  let seen: Notice[] = [];
  client.on('notice', (n) => {
    seen.push({ severity: n.severity ?? '', message: n.message ?? '' });
  });
  return {
    take() {
      const out = seen;
      seen = [];
      return out;
    },
  };
}

/** Runs `fn` and expects it to fail with a message matching `text`; returns the error. */
export async function expectError(
  fn: () => Promise<unknown>,
  text: string | RegExp,
): Promise<pg.DatabaseError> {
  let failure: unknown;
  try {
    await fn();
  } catch (error) {
    failure = error;
  }
  if (failure === undefined) throw new Error(`expected an error matching ${String(text)}, but it succeeded`);
  const message = failure instanceof Error ? failure.message : String(failure);
  const ok = typeof text === 'string' ? message.includes(text) : text.test(message);
  if (!ok) throw new Error(`expected an error matching ${String(text)}, got: ${message}`);
  return failure as pg.DatabaseError;
}

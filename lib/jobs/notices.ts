// Runs one statement and collects the NOTICE/WARNING text the server sent while it ran. The
// public jobs never read these; they are how LakeTS says why a chunk was deferred or a RollUp
// skipped, so they belong in the report.
import type { Queryable } from './types.ts';

export interface Noticed<T> {
  result: T;
  notices: string[];
}

export async function withNotices<T>(db: Queryable, run: () => Promise<T>): Promise<Noticed<T>> {
  const notices: string[] = [];
  const listener = (n: { severity?: string; message?: string }) => {
    if (n.message)
      notices.push(n.severity && n.severity !== 'NOTICE' ? `${n.severity}: ${n.message}` : n.message);
  };
  db.on('notice', listener);
  try {
    return { result: await run(), notices };
  } finally {
    db.off('notice', listener);
  }
}

/** The notices that name a chunk (`... chunk <name>: <reason>`), keyed by chunk name. */
export function noticesByChunk(notices: string[], chunkNames: Iterable<string>): Map<string, string> {
  // Longest names first, so `m_1` never claims a notice about `m_10`.
  const names = [...chunkNames].sort((a, b) => b.length - a.length);
  const found = new Map<string, string>();
  for (const text of notices) {
    for (const name of names) {
      const at = text.indexOf(`chunk ${name}: `);
      if (at >= 0) {
        if (!found.has(name)) found.set(name, text.slice(at + `chunk ${name}: `.length));
        break;
      }
    }
  }
  return found;
}

// Runs one statement and collects the NOTICE/WARNING text the server sent while it ran. The
// public jobs never read these. They go into the report verbatim as evidence for a person; no
// outcome or reason is ever derived from them (their wording differs between LakeTS releases).
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

/**
 * The notices that mention `name` as a whole word (so `m_1` never claims a notice about `m_10`).
 * Only to file LakeTS's text with the item it is about, as evidence; never to decide an outcome.
 */
export function noticesNaming(notices: string[], name: string): string[] {
  return notices.filter((text) => {
    for (let at = text.indexOf(name); at >= 0; at = text.indexOf(name, at + 1)) {
      const before = text[at - 1] ?? ' ';
      const after = text[at + name.length] ?? ' ';
      if (!WORD.test(before) && !WORD.test(after)) return true;
    }
    return false;
  });
}

const WORD = /[A-Za-z0-9_$."]/;

// The one path of the server's NOTICE/WARNING text during a run: the runner listens on the client
// for the whole run (noticeLog), attempt() files what arrived while an item ran with that item, and
// the report keeps the rest. The jobs never read this text to decide anything: it goes into the report
// verbatim as evidence for a person (its wording differs between LakeTS releases).
import type { Queryable } from '../queryable.ts';

/** The text a run received, in order: each piece is filed with at most one item. */
export interface NoticeLog {
  /** Where an item starts. */
  mark(): number;
  /** What arrived since `mark` and no item took yet; it is now taken. */
  take(mark: number): string[];
  /** What no item took. */
  unfiled(): string[];
  /** Stops listening. */
  close(): void;
}

export function noticeLog(db: Queryable): NoticeLog {
  const received: { text: string; taken: boolean }[] = [];
  const listener = (n: { severity?: string; message?: string }) => {
    if (n.message)
      received.push({
        text: n.severity && n.severity !== 'NOTICE' ? `${n.severity}: ${n.message}` : n.message,
        taken: false,
      });
  };
  db.on('notice', listener);
  return {
    mark: () => received.length,
    take: (mark) =>
      received
        .slice(mark)
        .filter((r) => !r.taken)
        .map((r) => {
          r.taken = true;
          return r.text;
        }),
    unfiled: () => received.filter((r) => !r.taken).map((r) => r.text),
    close: () => db.off('notice', listener),
  };
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

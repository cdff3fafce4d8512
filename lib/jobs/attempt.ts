// One way to run an item, for every job: the budget's say on starting it, the NOTICEs the server sent
// while it ran, its time, and its failure as a one-line reason.
import { capStatements } from './deadline.ts';
import { itemErrorLine } from './errors.ts';
import type { ItemResult, JobContext } from './types.ts';

/**
 * Runs one item and adds what it produced to `items`: `not-started` when the budget leaves no time to
 * start it (returns undefined); else `run`'s items, the server's NOTICE/WARNING text filed on the first
 * (evidence for a person); or, when `run` throws, one `failed` item (with `subject`'s fields) naming the
 * error. The one durationMs rule: a real run's attempt, success or failure, records its wall time (start
 * to result) on its first item; a dry run records none (it changed nothing, so the time is no item's
 * cost). The budget learns from every attempt's wall time, dry or not.
 */
export async function attempt(
  { db, budget, options, notices: log }: JobContext,
  items: ItemResult[],
  subject: Pick<ItemResult, 'kind' | 'name'> & Partial<ItemResult>,
  run: () => Promise<ItemResult | ItemResult[]>,
): Promise<ItemResult[] | undefined> {
  if (!budget.canStart()) {
    items.push(notStarted(subject));
    return undefined;
  }
  const started = Date.now();
  const mark = log.mark();
  let produced: ItemResult[];
  try {
    await capStatements(db, budget);
    const result = await run();
    produced = Array.isArray(result) ? result : [result];
  } catch (error) {
    produced = [{ ...subject, outcome: 'failed', reason: await itemErrorLine(db, error) }];
  }
  const durationMs = Date.now() - started;
  const first = produced[0];
  const notices = log.take(mark);
  if (first && notices.length > 0) first.notices = [...(first.notices ?? []), ...notices];
  if (first && !options.dryRun) first.durationMs = durationMs;
  budget.spent(durationMs);
  items.push(...produced);
  return produced;
}

function notStarted(subject: Pick<ItemResult, 'kind' | 'name'>): ItemResult {
  return { kind: subject.kind, name: subject.name, outcome: 'not-started', reason: 'time budget exhausted' };
}

/**
 * An item the run decided from state it read in bulk, with no statement of its own (a LakeTS call
 * that could only have said "nothing to do"): added as `item` when the budget would have let its
 * call start, else `not-started` as attempt() adds it. So a run reports the same items, in the same
 * order, under the same budget, as one that calls LakeTS for every item. Returns the item if added.
 */
export function decided(
  { budget }: JobContext,
  items: ItemResult[],
  item: ItemResult,
): ItemResult | undefined {
  if (!budget.canStart()) {
    items.push(notStarted(item));
    return undefined;
  }
  items.push(item);
  return item;
}

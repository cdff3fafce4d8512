// A run's report as log records that each fit one CloudWatch Logs event. A report lists every item,
// so over thousands of ChronoTables it grows past what one event holds (a run dropping a chunk of
// each of 10,000 tables has 20,000 items, about 2 MB), and a cut record is no longer JSON that Logs
// Insights can read. A large report is logged as its head (everything but the long lists, with their
// lengths) and then parts carrying the lists in order; concatenated, they give the whole report.
import type { JobReport } from './jobs/types.ts';

/** Room for one record's fields (the logger adds its own keys, well under the margin to 256 KB). */
export const REPORT_RECORD_BYTES = 200_000;

/** The lists a report's head leaves to its parts. */
const LISTS = ['items', 'leftForNextRun'] as const;
type ListKey = (typeof LISTS)[number];

export interface ReportPart {
  /** 1-based, in order; `of` counts the parts after the head. */
  readonly reportPart: { readonly part: number; readonly of: number };
  readonly items?: JobReport['items'];
  readonly leftForNextRun?: string[];
}

export interface ReportRecords {
  /** The report, or its head: the long lists emptied, their lengths in `inParts`. */
  readonly report: JobReport & { inParts?: { items: number; leftForNextRun: number; parts: number } };
  readonly parts: ReportPart[];
}

const bytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value));

/** Splits `report` into records of at most `limit` bytes of JSON each (the report alone, if it fits). */
export function reportRecords(report: JobReport, limit = REPORT_RECORD_BYTES): ReportRecords {
  if (bytes(report) <= limit) return { report, parts: [] };
  const chunks: { key: ListKey; values: unknown[] }[] = [];
  for (const key of LISTS) {
    // The part's envelope; each value adds a margin for the comma before it.
    const envelope = bytes({ reportPart: { part: 99_999, of: 99_999 }, [key]: [] });
    let current: unknown[] = [];
    let size = envelope;
    for (const value of report[key] ?? []) {
      const add = bytes(value) + 1;
      if (current.length > 0 && size + add > limit) {
        chunks.push({ key, values: current });
        current = [];
        size = envelope;
      }
      current.push(value);
      size += add;
    }
    if (current.length > 0) chunks.push({ key, values: current });
  }
  const parts = chunks.map(
    (c, i): ReportPart => ({ reportPart: { part: i + 1, of: chunks.length }, [c.key]: c.values }),
  );
  return {
    report: {
      ...report,
      items: [],
      ...(report.leftForNextRun !== undefined && { leftForNextRun: [] }),
      inParts: {
        items: report.items.length,
        leftForNextRun: report.leftForNextRun?.length ?? 0,
        parts: parts.length,
      },
    },
    parts,
  };
}

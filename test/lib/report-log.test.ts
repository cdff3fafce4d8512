// A report over 10,000 ChronoTables (a chunk dropped on each: 20,000 items, about 2 MB) is logged as
// records that each fit one CloudWatch Logs event (256 KB), and that give back the whole report.
import { describe, expect, it } from 'vitest';
import type { ItemResult, JobReport } from '../../lib/jobs/types.ts';
import { REPORT_RECORD_BYTES, reportRecords } from '../../lib/report-log.ts';

const LOG_EVENT_BYTES = 256 * 1024;

function retentionReport(tables: number, left = 0): JobReport {
  const items: ItemResult[] = [];
  for (let i = 1; i <= tables; i++) {
    const table = `public.sensor_readings_${String(i).padStart(5, '0')}`;
    items.push({ kind: 'table', name: table, outcome: 'unchanged' });
    items.push({ kind: 'chunk', name: `${table}_p20261027`, outcome: 'dropped', count: 1 });
  }
  return {
    job: 'retention',
    target: 'prod',
    status: left > 0 ? 'incomplete' : 'ok',
    startedAt: '2026-12-06T03:00:00.000Z',
    finishedAt: '2026-12-06T03:08:00.000Z',
    durationMs: 480_000,
    trigger: 'schedule',
    dryRun: false,
    items,
    totals: { chunksDropped: tables },
    ...(left > 0 && { leftForNextRun: Array.from({ length: left }, (_, i) => `public.t${i}`) }),
  };
}

/** A record as the logger prints it: its own keys around the fields. */
const printed = (message: string, fields: object) =>
  Buffer.byteLength(
    JSON.stringify({
      level: 'INFO',
      message,
      timestamp: '2026-12-06T03:08:00.000Z',
      service: 'retention',
      sampling_rate: 0,
      xray_trace_id: '1-67891233-abcdef012345678912345678',
      cold_start: false,
      function_arn: 'arn:aws:lambda:eu-west-1:123456789012:function:LakeTs-estate-retention',
      function_memory_size: '512',
      function_name: 'LakeTs-estate-retention',
      function_request_id: 'c6af9ac6-7b61-11e6-9a41-93e812345678',
      target: 'prod',
      ...fields,
    }),
  );

describe('a report as log records', () => {
  it('is the report itself when it fits', () => {
    const report = retentionReport(100);
    expect(reportRecords(report)).toEqual({ report, parts: [] });
  });

  it('over 10,000 tables: a head and parts, each within one log event, that give back every item in order', () => {
    const report = retentionReport(10_000, 5_000);
    expect(Buffer.byteLength(JSON.stringify(report))).toBeGreaterThan(6 * LOG_EVENT_BYTES);
    const { report: head, parts } = reportRecords(report);
    expect(head.items).toEqual([]);
    expect(head.inParts).toEqual({ items: 20_000, leftForNextRun: 5_000, parts: parts.length });
    expect({
      ...head,
      items: report.items,
      leftForNextRun: report.leftForNextRun,
      inParts: undefined,
    }).toEqual({
      ...report,
      inParts: undefined,
    });
    expect(printed('retention incomplete', { report: head })).toBeLessThan(LOG_EVENT_BYTES);
    for (const p of parts) {
      expect(Buffer.byteLength(JSON.stringify(p))).toBeLessThanOrEqual(REPORT_RECORD_BYTES);
      expect(
        printed(`retention incomplete: report part ${p.reportPart.part} of ${p.reportPart.of}`, p),
      ).toBeLessThan(LOG_EVENT_BYTES);
    }
    expect(parts.map((p) => p.reportPart)).toEqual(parts.map((_, i) => ({ part: i + 1, of: parts.length })));
    expect(parts.flatMap((p) => p.items ?? [])).toEqual(report.items);
    expect(parts.flatMap((p) => p.leftForNextRun ?? [])).toEqual(report.leftForNextRun);
  });
});

import { describe, expect, it } from 'vitest';
import { JOBS, jobNamed } from '../../lib/jobs/catalog.ts';
import { PayloadError, parseInvocation, parseTableName } from '../../lib/jobs/payload.ts';

describe('invocation payloads', () => {
  it('treats no payload, {} and the Scheduler event as the scheduled run', () => {
    const scheduled = { dryRun: false, force: false, trigger: 'schedule' };
    expect(parseInvocation(JOBS.retention, undefined)).toEqual(scheduled);
    expect(parseInvocation(JOBS.retention, null)).toEqual(scheduled);
    expect(parseInvocation(JOBS.retention, {})).toEqual(scheduled);
    expect(
      parseInvocation(JOBS.retention, {
        source: 'aws.scheduler',
        scheduleArn: 'arn:aws:scheduler:eu-west-1:1:schedule/default/x',
        scheduledTime: '2026-11-24T03:00:00Z',
        executionId: 'e',
      }),
    ).toEqual(scheduled);
    expect(
      parseInvocation(JOBS.tiering, { source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} }),
    ).toEqual(scheduled);
  });

  it('never lets a scheduled-looking event smuggle options in', () => {
    expect(() =>
      parseInvocation(JOBS.retention, { source: 'aws.scheduler', force: true, tables: ['a'] }),
    ).toThrow(/unknown field "source"/);
  });

  it('parses the manual options each job accepts', () => {
    expect(
      parseInvocation(JOBS['partition-manager'], { dryRun: true, tables: ['metrics', 'iot.readings'] }),
    ).toEqual({
      dryRun: true,
      force: false,
      trigger: 'manual',
      tables: [
        { schema: 'public', table: 'metrics' },
        { schema: 'iot', table: 'readings' },
      ],
    });
    expect(parseInvocation(JOBS['rollup-refresh'], { rollup: 'hourly' }).rollup).toBe('hourly');
    expect(parseInvocation(JOBS.retention, { tables: ['m'], force: true }).force).toBe(true);
  });

  it('accepts force only with the tables it applies to', () => {
    expect(() => parseInvocation(JOBS.retention, { force: true })).toThrow(/"force" .* needs "tables"/);
    expect(() => parseInvocation(JOBS.tiering, { tables: ['m'], force: true })).toThrow(
      /unknown field "force"/,
    );
  });

  it.each([
    ['partition-manager', { rollup: 'x' }, /unknown field "rollup" .* allowed: dryRun, tables/],
    ['rollup-refresh', { tables: ['m'] }, /unknown field "tables"/],
    ['tiering', { dryRun: 'yes' }, /"dryRun" must be true or false, not the string "yes"/],
    ['tiering', { dryRun: 1 }, /"dryRun" must be true or false, not number 1/],
    ['retention', { tables: 'metrics' }, /"tables" must be a non-empty array/],
    ['retention', { tables: [] }, /"tables" must be a non-empty array/],
    ['retention', { tables: [42] }, /entries must be strings, not number 42/],
    ['retention', { tables: ['a.b.c'] }, /more than two parts/],
    ['retention', { tables: ['"unclosed'] }, /unclosed quote/],
    ['retention', { tables: ['.x'] }, /a schema name is empty/],
    ['retention', { tables: [`${'x'.repeat(64)}`] }, /longer than Postgres allows/],
    ['retention', { tables: ['bad\u0000name'] }, /control characters/],
    ['rollup-refresh', { rollup: '' }, /"rollup" must be a RollUp name/],
    ['rollup-refresh', { rollup: ['a'] }, /"rollup" must be a RollUp name .* not an array/],
    ['tiering', 'run', /payload must be a JSON object .* not the string "run"/],
    ['tiering', [1], /payload must be a JSON object .* not an array/],
  ] as const)('%s rejects %j with a one-line error', (job, payload, message) => {
    let error: unknown;
    try {
      parseInvocation(jobNamed(job), payload);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PayloadError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain('\n');
  });

  it('reads quoted names with dots and quotes, and keeps unquoted names as written', () => {
    expect(parseTableName('"my.schema"."odd ""name"""')).toEqual({
      schema: 'my.schema',
      table: 'odd "name"',
    });
    expect(parseTableName('Metrics')).toEqual({ schema: 'public', table: 'Metrics' });
    expect(() => parseTableName('x"; drop table y; --')).toThrow(PayloadError);
    expect(parseTableName('"x""; drop table y; --"')).toEqual({
      schema: 'public',
      table: 'x"; drop table y; --',
    });
  });

  it('collapses duplicate table names', () => {
    expect(parseInvocation(JOBS.tiering, { tables: ['m', 'public.m', '"public"."m"'] }).tables).toEqual([
      { schema: 'public', table: 'm' },
    ]);
  });
});

// The target field of a payload: beside every job's own fields, in scheduled and manual events alike.
import { describe, expect, test } from 'vitest';
import { JOBS } from '../../lib/jobs/catalog.ts';
import { invocationTarget, PayloadError, parseInvocation } from '../../lib/jobs/payload.ts';

describe('the target field', () => {
  test('a schedule’s event {"target": name} runs the job with defaults for that target', () => {
    expect(parseInvocation(JOBS.tiering, { target: 'eu-prod' })).toEqual({
      dryRun: false,
      force: false,
      trigger: 'schedule',
      target: 'eu-prod',
    });
    // With Scheduler's context attributes too.
    expect(
      parseInvocation(JOBS.tiering, {
        target: 'eu-prod',
        source: 'aws.scheduler',
        scheduleArn: 'arn:aws:scheduler:eu-west-1:123456789012:schedule/g/s',
      }),
    ).toMatchObject({ trigger: 'schedule', target: 'eu-prod' });
  });

  test('beside a manual payload’s fields, and beside "check"', () => {
    expect(parseInvocation(JOBS.retention, { target: 'a', dryRun: true })).toMatchObject({
      trigger: 'manual',
      dryRun: true,
      target: 'a',
    });
    expect(parseInvocation(JOBS.retention, { target: 'a', check: true })).toMatchObject({
      check: true,
      target: 'a',
    });
    expect(parseInvocation(JOBS.retention, { dryRun: true })).not.toHaveProperty('target');
  });

  test('still strict: unknown fields are refused, and the target must be a name', () => {
    expect(() => parseInvocation(JOBS.tiering, { target: 'a', targets: ['b'] })).toThrow(
      /^unknown field "targets" in the tiering payload; allowed: .*, target$/,
    );
    for (const bad of [5, '', '  ', null, ['a'], { name: 'a' }]) {
      expect(() => parseInvocation(JOBS.tiering, { target: bad })).toThrow(PayloadError);
      expect(() => invocationTarget({ target: bad })).toThrow(/^"target" must be a target's name/);
    }
    expect(invocationTarget({ target: ' a ' })).toBe('a');
    expect(invocationTarget({ dryRun: true })).toBeUndefined();
    expect(invocationTarget('x')).toBeUndefined();
  });
});

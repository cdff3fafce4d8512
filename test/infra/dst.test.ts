// Daylight saving time: every fire time of every job over two full years, in zones that shift at 02:00
// or 03:00 (Europe/Berlin, America/New_York), by 30 minutes (Australia/Lord_Howe), at midnight
// (America/Santiago), never (Asia/Kolkata, UTC), computed from the synthesized ScheduleExpression and
// ScheduleExpressionTimezone with Scheduler's rule (test/infra/aws/scheduler-cron.ts): no run is lost
// (no gap longer than the job's period; a daily job's may be 25 h when the clock moves back an hour) and
// none is doubled (no gap shorter than the period; 23 h for a daily job when the clock moves forward).
import { App } from 'aws-cdk-lib';
import { beforeAll, describe, expect, it } from 'vitest';
import { defineApp } from '../../infra/stack.ts';
import { JOB_NAMES, JOBS } from '../../lib/jobs/catalog.ts';
import { fireTimes } from './aws/scheduler-cron.ts';
import { REQUIRED_CONTEXT } from './synth.ts';

const ZONES = [
  'UTC',
  'Europe/Berlin',
  'America/New_York',
  'Australia/Lord_Howe',
  'America/Santiago',
  'Asia/Kolkata',
];
const HOUR = 3_600_000;
const YEAR = new Date().getUTCFullYear();
// Two years from this one: the years a deployment made today runs in.
const FROM = Date.UTC(YEAR, 0, 1);
const TO = Date.UTC(YEAR + 2, 0, 1);

interface Plan {
  readonly expression: string;
  readonly timezone: string;
}

/** Each job's ScheduleExpression and ScheduleExpressionTimezone as synthesized with `timezone`. */
function schedulesIn(timezone: string): Record<string, Plan> {
  const app = new App({ context: { ...REQUIRED_CONTEXT, timezone, 'aws:cdk:bundling-stacks': [] } });
  const stack = defineApp(app);
  const resources = app.synth().getStackByName(stack.stackName).template.Resources as Record<
    string,
    {
      Type: string;
      Properties: { Name: string; ScheduleExpression: string; ScheduleExpressionTimezone: string };
    }
  >;
  const plans: Record<string, Plan> = {};
  for (const r of Object.values(resources).filter((r) => r.Type === 'AWS::Scheduler::Schedule')) {
    const job = JOB_NAMES.find((n) => r.Properties.Name.endsWith(`-${n}`));
    if (job)
      plans[job] = {
        expression: r.Properties.ScheduleExpression,
        timezone: r.Properties.ScheduleExpressionTimezone,
      };
  }
  expect(Object.keys(plans).sort()).toEqual([...JOB_NAMES].sort());
  return plans;
}

function gaps(times: readonly number[]): number[] {
  return times.slice(1).map((t, i) => t - (times[i] as number));
}

describe("Scheduler's rule, as the test applies it", () => {
  it('skips a local time that does not exist and runs a repeated one once', () => {
    // Berlin, 2026: clocks go 02:00 -> 03:00 on 29 March and 03:00 -> 02:00 on 25 October.
    const daily = fireTimes(
      'cron(30 2 * * ? *)',
      'Europe/Berlin',
      Date.UTC(2026, 2, 27),
      Date.UTC(2026, 2, 31),
    );
    expect(daily.map((t) => new Date(t).toISOString())).toEqual([
      '2026-03-27T01:30:00.000Z',
      '2026-03-28T01:30:00.000Z',
      '2026-03-30T00:30:00.000Z',
    ]);
    const autumn = fireTimes(
      'cron(30 2 * * ? *)',
      'Europe/Berlin',
      Date.UTC(2026, 9, 24),
      Date.UTC(2026, 9, 26),
    );
    expect(autumn.map((t) => new Date(t).toISOString())).toEqual([
      '2026-10-24T00:30:00.000Z',
      '2026-10-25T00:30:00.000Z',
    ]);
    // Every 15 minutes on the wall clock loses the repeated hour: a 75-minute gap.
    const quarter = fireTimes(
      'cron(0/15 * * * ? *)',
      'Europe/Berlin',
      Date.UTC(2026, 9, 24, 22),
      Date.UTC(2026, 9, 25, 3),
    );
    expect(Math.max(...gaps(quarter))).toBe(75 * 60_000);
  });

  it("counts Lord Howe Island's 30-minute shift", () => {
    // Clocks go 02:00 -> 02:30 on 4 October 2026: 02:00 and 02:15 do not exist that day.
    const times = fireTimes(
      'cron(15 2 * * ? *)',
      'Australia/Lord_Howe',
      Date.UTC(2026, 9, 2),
      Date.UTC(2026, 9, 5),
    );
    expect(times).toHaveLength(2);
    expect(Math.max(...gaps(times))).toBe(47.5 * HOUR);
  });
});

describe.each(ZONES)('timezone=%s', (zone) => {
  let plans: Record<string, Plan>;
  beforeAll(() => {
    plans = schedulesIn(zone);
  });

  it.each(JOB_NAMES)('%s runs once per period all year, never twice', (name) => {
    const plan = plans[name] as Plan;
    const period = JOBS[name].periodMinutes * 60_000;
    const daily = JOBS[name].periodMinutes === 24 * 60;
    const times = fireTimes(plan.expression, plan.timezone, FROM, TO);
    const g = gaps(times);
    const where = (ms: number) => new Date(times[g.indexOf(ms)] as number).toISOString();
    const longest = Math.max(...g);
    const shortest = Math.min(...g);
    expect(
      longest,
      `${plan.expression} ${plan.timezone}: ${longest / 60_000} min after ${where(longest)}`,
    ).toBeLessThanOrEqual(daily ? 25 * HOUR : period);
    expect(
      shortest,
      `${plan.expression} ${plan.timezone}: ${shortest / 60_000} min after ${where(shortest)}`,
    ).toBeGreaterThanOrEqual(daily ? 23 * HOUR : period);
    expect(times.length).toBeGreaterThanOrEqual(Math.floor((TO - FROM) / period) - 1);
  });

  it('keeps Tiering before Retention, an hour apart, at the same local times every day', () => {
    const tiering = fireTimes(plans.tiering?.expression ?? '', zone, FROM, TO);
    const retention = fireTimes(plans.retention?.expression ?? '', zone, FROM, TO);
    expect(tiering).toHaveLength(retention.length);
    for (const [i, t] of tiering.entries()) expect((retention[i] as number) - t).toBe(HOUR);
  });
});

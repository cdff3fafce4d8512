// The job catalog: schedules and delivery windows that cannot pile runs up, and alarm windows CloudWatch accepts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { missedRunAlarmShape, missedRunWindow, outcomePeriod } from '../../infra/monitoring.ts';
import { JOB_NAMES, JOBS } from '../../lib/jobs/catalog.ts';
import { jobMetrics, latestStartMinutes, METRIC_NAMES, METRIC_UNITS } from '../../lib/jobs/spec.ts';

describe('job catalog', () => {
  it('has the four jobs of the Databricks bundle, on its schedules', () => {
    expect(Object.fromEntries(JOB_NAMES.map((n) => [n, [JOBS[n].schedule, JOBS[n].periodMinutes]]))).toEqual({
      'partition-manager': ['cron(0 */6 * * ? *)', 360],
      tiering: ['cron(0 2 * * ? *)', 1440],
      retention: ['cron(0 3 * * ? *)', 1440],
      'rollup-refresh': ['cron(0/15 * * * ? *)', 15],
    });
    for (const name of JOB_NAMES) expect(JOBS[name].name).toBe(name);
  });

  it.each(JOB_NAMES)(
    '%s: a late run (max delivery delay + timeout) ends before the next one starts',
    (name) => {
      const job = JOBS[name];
      expect(latestStartMinutes(job) + job.timeoutMinutes).toBeLessThanOrEqual(job.periodMinutes);
    },
  );

  it.each(JOB_NAMES)('%s: delivery settings are inside the AWS limits', (name) => {
    const { delivery, timeoutMinutes } = JOBS[name];
    expect(timeoutMinutes).toBeGreaterThan(0);
    expect(timeoutMinutes).toBeLessThanOrEqual(15);
    expect(delivery.schedulerMaxEventAgeMinutes).toBeGreaterThanOrEqual(1);
    expect(delivery.schedulerMaxEventAgeMinutes).toBeLessThanOrEqual(24 * 60);
    expect(delivery.schedulerRetryAttempts).toBeGreaterThanOrEqual(0);
    expect(delivery.schedulerRetryAttempts).toBeLessThanOrEqual(185);
    expect(delivery.lambdaMaxEventAgeMinutes).toBeGreaterThanOrEqual(1);
    expect(delivery.lambdaMaxEventAgeMinutes).toBeLessThanOrEqual(6 * 60);
    expect([0, 1, 2]).toContain(delivery.lambdaRetryAttempts);
  });

  it('RollUp Refresh does not retry inside Lambda: the next run, 15 minutes later, is the retry', () => {
    expect(JOBS['rollup-refresh'].delivery.lambdaRetryAttempts).toBe(0);
    expect(JOBS['rollup-refresh'].timeoutMinutes).toBe(10);
  });

  it.each(JOB_NAMES)('%s: the missed-run alarm covers its window, in a shape CloudWatch accepts', (name) => {
    const job = JOBS[name];
    const { period, evaluationPeriods } = missedRunAlarmShape(job);
    const seconds = period.toSeconds() * evaluationPeriods;
    expect(period.toSeconds() % 60).toBe(0);
    // Period x evaluation periods: at most 1 day below a 1 h period, 7 days otherwise.
    expect(seconds).toBeLessThanOrEqual(period.toSeconds() < 3600 ? 86_400 : 604_800);
    // A healthy run's Invocations (stamped at its start, published at its end, up to a minute of
    // scheduler jitter) is always inside: one period of alignment slack beyond the window.
    expect(seconds).toBeGreaterThanOrEqual(missedRunWindow(job).toSeconds() + period.toSeconds());
    expect(missedRunWindow(job).toMinutes()).toBe(
      job.periodMinutes + latestStartMinutes(job) + 1 + job.timeoutMinutes,
    );
  });

  it.each(JOB_NAMES)('%s: the errors and throttles alarms read the job period, at most an hour', (name) => {
    const job = JOBS[name];
    // Sub-daily: a run lands in the period it started in (UTC cron on the period grid) before it ends.
    expect(latestStartMinutes(job) + job.timeoutMinutes).toBeLessThanOrEqual(job.periodMinutes);
    expect(outcomePeriod(job).toMinutes()).toBe(Math.min(job.periodMinutes, 60));
  });

  it('metrics: every job emits RunDuration and the outcomes, and only known names', () => {
    expect(new Set(METRIC_NAMES).size).toBe(METRIC_NAMES.length);
    expect(Object.keys(METRIC_UNITS).sort()).toEqual([...METRIC_NAMES].sort());
    expect(METRIC_UNITS.RunDuration).toBe('Milliseconds');
    const emitted = new Set(JOB_NAMES.flatMap((n) => jobMetrics(JOBS[n])));
    expect([...emitted].sort()).toEqual([...METRIC_NAMES].sort());
    for (const name of JOB_NAMES) {
      expect(jobMetrics(JOBS[name])).toEqual(
        expect.arrayContaining(['RunDuration', 'RunIncomplete', 'RunSkipped', 'ItemsFailed']),
      );
    }
  });

  it('the job definitions import no package at all (infra/ and the handlers both load them)', () => {
    // Every module the catalogue reaches, through relative imports (type-only ones included).
    const seen = new Set<string>();
    const packages = new Set<string>();
    const visit = (url: URL) => {
      if (seen.has(url.href)) return;
      seen.add(url.href);
      const source = readFileSync(url, 'utf8');
      for (const [, spec] of source.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gms)) {
        if (spec?.startsWith('.')) visit(new URL(spec, url));
        else packages.add(`${spec} (in ${url.pathname})`);
      }
    };
    visit(new URL('../../lib/jobs/catalog.ts', import.meta.url));
    expect(seen.size).toBeGreaterThan(10);
    expect([...packages]).toEqual([]);
  });

  it('the job spec vocabulary is dependency-free, so handler code can import it', () => {
    const source = readFileSync(new URL('../../lib/jobs/spec.ts', import.meta.url), 'utf8');
    expect(source).not.toMatch(/^\s*import\s/m);
    expect(source).not.toMatch(/\brequire\(/);
  });
});

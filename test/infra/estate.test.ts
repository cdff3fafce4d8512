// An estate: one deployment for many databases (-c targets=<file>). Four functions whatever the number of
// targets, the targets compiled into their bundles, one schedule per (target, job) naming its target.
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { App, Stack } from 'aws-cdk-lib';
import { buildSync } from 'esbuild';
import { beforeAll, describe, expect, it } from 'vitest';
import { functionBuildOptions } from '../../infra/job.ts';
import {
  estateScheduleName,
  INLINE_SCHEDULES,
  LakeTsJobs,
  SCHEDULES_PER_STACK,
} from '../../infra/lakets-jobs.ts';
import { missedRunAlarmShape } from '../../infra/monitoring.ts';
import { dailyShiftHours, flexibleWindowMinutes, jobSchedule } from '../../infra/schedule.ts';
import { defineApp } from '../../infra/stack.ts';
import type { TargetEntry } from '../../lib/estate.ts';
import { JOB_LIST, JOB_NAMES, JOBS, type JobName } from '../../lib/jobs/catalog.ts';
import { latestStartMinutes } from '../../lib/jobs/spec.ts';
import { normaliseTemplate } from './normalise.ts';
import { bundleOf, expectOwnJobOnly, synth } from './synth.ts';

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation resources are untyped JSON
type Resource = { Type: string; Properties: any };
/** Lambda's limit on a function's environment: every key and value, serialized, 4 KB in all. */
const LAMBDA_ENVIRONMENT_BYTES = 4 * 1024;
/** CloudFormation: 500 resources per stack, a template body uploaded through S3 at most 1 MB. */
const CFN_RESOURCES = 500;
const CFN_TEMPLATE_BYTES = 1_000_000;

const WORKSPACE_A = 'https://a.cloud.databricks.com';
const WORKSPACE_B = 'https://b.cloud.databricks.com';
const THREE: TargetEntry[] = [
  { name: 'prod', databricksHost: WORKSPACE_A, spSecretName: 'lakets/prod', lakebaseProject: 'prod' },
  {
    name: 'eu-prod',
    databricksHost: WORKSPACE_B,
    spSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:lakets/eu-AbC123',
    lakebaseProject: 'eu-prod',
    database: 'metrics',
    timezone: 'Europe/Berlin',
    jobs: { retention: { enabled: false } },
  },
  {
    name: 'legacy',
    databricksHost: WORKSPACE_A,
    spSecretName: 'lakets/prod',
    lakebaseInstance: 'legacy-instance',
    timezone: 'America/New_York',
    jobs: { 'partition-manager': { schedule: 'rate(2 hours)' } },
  },
];

function targetsFile(entries: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'lakets-estate-')), 'targets.json');
  writeFileSync(file, JSON.stringify(entries));
  return file;
}

const ofType = (resources: Record<string, Resource>, type: string) =>
  Object.entries(resources).filter(([, r]) => r.Type === type);

describe('a three-target estate: two Autoscaling projects on two workspaces, one Provisioned instance', () => {
  let template: { Resources: Record<string, Resource> };
  let directory: string;
  beforeAll(() => {
    const synthesized = synth({ targets: targetsFile(THREE), alarmEmail: 'oncall@example.com' });
    template = synthesized.template as typeof template;
    directory = synthesized.directory;
  });
  const schedules = () => ofType(template.Resources, 'AWS::Scheduler::Schedule').map(([, s]) => s.Properties);

  it('matches the snapshot', () => {
    expect(normaliseTemplate(template)).toMatchSnapshot();
  });

  it('has four functions whose environment holds no target', () => {
    const fns = ofType(template.Resources, 'AWS::Lambda::Function');
    expect(fns).toHaveLength(4);
    for (const [, fn] of fns) {
      expect(Object.keys(fn.Properties.Environment.Variables).sort()).toEqual([
        'NODE_OPTIONS',
        'POWERTOOLS_LOG_LEVEL',
        'POWERTOOLS_METRICS_NAMESPACE',
        'POWERTOOLS_SERVICE_NAME',
      ]);
    }
  });

  it("gives each function its own job's bundle, with the three targets in it", () => {
    // Found from the outside: all four functions once shared the first one's bundle (CDK caches a
    // bundled asset by its folder and options, and the four share a folder).
    for (const [, fn] of ofType(template.Resources, 'AWS::Lambda::Function')) {
      const name = JOB_LIST.find((j) => fn.Properties.FunctionName.endsWith(`-${j.name}`))?.name;
      const code = bundleOf(directory, fn);
      expectOwnJobOnly(code, name);
      // The validated entries as a JSON literal (a bundle without them names these keys, never these values).
      for (const t of THREE) expect(code).toMatch(new RegExp(`\\\\?"name\\\\?":\\\\?"${t.name}\\\\?"`));
      expect(code).toMatch(/lakebaseInstance\\?":\\?"legacy-instance/);
    }
  });

  it('compiles the targets into the code: lib/estate.ts reads them back from the bundle, with no LAKETS_TARGETS', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lakets-probe-'));
    const entry = join(dir, 'probe.ts');
    writeFileSync(
      entry,
      `import { deployedTargets } from ${JSON.stringify(join(process.cwd(), 'lib', 'estate.ts'))};\nexport const found = deployedTargets({});\n`,
    );
    const outfile = join(dir, 'probe.mjs');
    buildSync(functionBuildOptions(entry, outfile, JSON.stringify(THREE)));
    const { found } = await import(pathToFileURL(outfile).href);
    expect(found).toEqual({ source: 'bundle', entries: THREE });
  });

  it('gives every Metrics Insights query a dashboard graph of its own (GetMetricData takes one per call)', () => {
    const [, dashboard] = ofType(template.Resources, 'AWS::CloudWatch::Dashboard')[0] ?? [];
    // The body is a Fn::Join of strings and tokens: the strings alone keep each widget's queries.
    const parts = (dashboard?.Properties.DashboardBody['Fn::Join'][1] ?? []) as unknown[];
    const body = parts.map((p) => (typeof p === 'string' ? p : 'TOKEN')).join('');
    const widgets = (JSON.parse(body) as { widgets: { properties: { metrics?: unknown[] } }[] }).widgets;
    const insights = widgets.map(
      (w) => JSON.stringify(w.properties.metrics ?? []).match(/SELECT [A-Z]+\(/g)?.length ?? 0,
    );
    expect(insights.filter((n) => n > 0).length).toBeGreaterThan(8);
    expect(Math.max(...insights)).toBe(1);
  });

  it('has twelve schedules in the stack group, each naming its target and only it', () => {
    const all = schedules();
    expect(all).toHaveLength(12);
    const group = ofType(template.Resources, 'AWS::Scheduler::ScheduleGroup')[0]?.[1].Properties.Name;
    expect(group).toBe('LakeTs-estate');
    for (const s of all) {
      expect(s.GroupName).toBe(group);
      expect(JSON.parse(s.Target.Input)).toEqual({ target: expect.any(String) });
      const { target } = JSON.parse(s.Target.Input);
      expect(JOB_NAMES.map((j) => estateScheduleName('LakeTs-estate', target, j))).toContain(s.Name);
    }
    const pairs = all.map((s) => s.Name).sort();
    expect(pairs).toEqual(
      THREE.flatMap((t) => JOB_NAMES.map((j) => estateScheduleName('LakeTs-estate', t.name, j))).sort(),
    );
  });

  it("names schedules apart from another deployment's with the same targets, within Scheduler's 64 characters", () => {
    // CloudFormation identifies a schedule by its name alone, whatever its group.
    expect(estateScheduleName('LakeTs-estate', 'prod', 'tiering')).toMatch(/^prod-tiering-[0-9a-f]{5}$/);
    expect(estateScheduleName('LakeTs-staging', 'prod', 'tiering')).not.toBe(
      estateScheduleName('LakeTs-estate', 'prod', 'tiering'),
    );
    expect(
      estateScheduleName('x'.repeat(100), 'a'.repeat(40), 'partition-manager').length,
    ).toBeLessThanOrEqual(64);
  });

  it("spreads the targets: a flexible window per job period (none on a target's own schedule), staggered minutes for the 15-minute job", () => {
    for (const s of schedules()) {
      const job = JOB_NAMES.find((j) => s.Name.includes(`-${j}-`)) ?? '';
      const own = THREE.some(
        (t) =>
          s.Name === estateScheduleName('LakeTs-estate', t.name, job) && t.jobs?.[job as JobName]?.schedule,
      );
      const window = own ? 0 : flexibleWindowMinutes(JOBS[job as keyof typeof JOBS]);
      expect(s.FlexibleTimeWindow, s.Name).toEqual(
        window === 0 ? { Mode: 'OFF' } : { Mode: 'FLEXIBLE', MaximumWindowInMinutes: window },
      );
    }
    const rollups = schedules().filter((s) => s.Name.includes('-rollup-refresh-'));
    const minutes = rollups.map((s) => /^cron\((\d+)\/15 \* \* \* \? \*\)$/.exec(s.ScheduleExpression)?.[1]);
    expect(minutes.every((m) => m !== undefined && Number(m) < 15)).toBe(true);
  });

  it("watches missed runs only of jobs some target runs on the job's own schedule", () => {
    const alarmsOf = (entries: TargetEntry[]) => {
      const t = synth({ targets: targetsFile(entries), alarmEmail: 'oncall@example.com' }).template as {
        Resources: Record<string, Resource>;
      };
      return ofType(t.Resources, 'AWS::CloudWatch::Alarm').map(([, a]) => String(a.Properties.AlarmName));
    };
    // Tiering disabled everywhere, Retention on every target's own schedule: neither could ever start
    // on the job's schedule, so a missed-run alarm would sit in ALARM for good.
    const names = alarmsOf(
      THREE.map((t) => ({
        ...t,
        jobs: { tiering: { enabled: false }, retention: { schedule: 'cron(0 5 ? * SUN *)' } },
      })),
    );
    expect(names.filter((n) => n.endsWith('-missed-run')).sort()).toEqual(
      ['partition-manager', 'rollup-refresh'].map((j) => `LakeTs-estate-${j}-missed-run`),
    );
    // One target left on the job's schedule keeps the alarm.
    expect(alarmsOf(THREE)).toContain('LakeTs-estate-retention-missed-run');
  });

  it('a window never lets a late run reach the next slot, nor Tiering reach Retention', () => {
    for (const job of Object.values(JOBS)) {
      const w = flexibleWindowMinutes(job);
      expect(w + latestStartMinutes(job) + job.timeoutMinutes + 1, job.name).toBeLessThanOrEqual(
        job.periodMinutes,
      );
    }
    expect(flexibleWindowMinutes(JOBS.tiering) + JOBS.tiering.timeoutMinutes).toBeLessThanOrEqual(60);
  });

  it("daily jobs run in each target's zone; overrides disable a job or replace its schedule", () => {
    // By `<target>-<job>`: the name without the deployment's suffix.
    const byName = new Map(schedules().map((s) => [String(s.Name).replace(/-[0-9a-f]{5}$/, ''), s]));
    expect(byName.get('eu-prod-tiering')?.ScheduleExpressionTimezone).toBe('Europe/Berlin');
    expect(byName.get('legacy-tiering')?.ScheduleExpressionTimezone).toBe('America/New_York');
    expect(byName.get('prod-tiering')?.ScheduleExpressionTimezone).toBe('UTC');
    // Each zone's daily times move by its own daylight-saving-safe shift, as a single-target stack's do.
    for (const [target, zone] of [
      ['eu-prod', 'Europe/Berlin'],
      ['legacy', 'America/New_York'],
      ['prod', 'UTC'],
    ] as const) {
      const shift = dailyShiftHours(zone, Object.values(JOBS), new Date().getUTCFullYear());
      for (const job of ['tiering', 'retention'] as const) {
        expect(byName.get(`${target}-${job}`)?.ScheduleExpression, `${target}-${job}`).toBe(
          jobSchedule(JOBS[job], zone, shift ?? -1).expression,
        );
      }
    }
    expect(byName.get('eu-prod-retention')?.State).toBe('DISABLED');
    expect(byName.get('prod-retention')?.State).toBe('ENABLED');
    expect(byName.get('legacy-partition-manager')?.ScheduleExpression).toBe('rate(2 hours)');
    expect(byName.get('prod-partition-manager')?.ScheduleExpression).toBe(JOBS['partition-manager'].schedule);
  });

  it('has one failed-targets alarm per job, a Metrics Insights query grouped by target', () => {
    const alarms = ofType(template.Resources, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    for (const job of JOB_NAMES) {
      const alarm = alarms.find((a) => a.AlarmName === `LakeTs-estate-${job}-failed-targets`);
      expect(alarm?.Metrics).toEqual([
        expect.objectContaining({
          Expression: `SELECT SUM(RunFailed) FROM "LakeTS" WHERE service = '${job}' GROUP BY target ORDER BY SUM() DESC LIMIT 500`,
          ReturnData: true,
        }),
      ]);
    }
    // Besides one missed-run alarm per (target, job) on the job's own schedule, the count does not grow
    // with the targets: 4 per-job kinds + 4 failed-targets + the rest.
    const perTarget = alarms.filter((a) => /-missed-run-[a-z0-9-]+$/.test(a.AlarmName));
    expect(alarms.length - perTarget.length).toBeLessThan(25);
  });

  it("gives each target its own missed-run alarm per job it runs on the job's own schedule, naming the target", () => {
    const alarms = ofType(template.Resources, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    const expected = THREE.flatMap((t) =>
      JOB_NAMES.filter((j) => t.jobs?.[j]?.enabled !== false && t.jobs?.[j]?.schedule === undefined).map(
        (j) => `LakeTs-estate-${j}-missed-run-${t.name}`,
      ),
    );
    // eu-prod's Retention is disabled and legacy's Partition Manager on a schedule of its own: 10, not 12.
    expect(expected).toHaveLength(10);
    expect(
      alarms
        .map((a) => a.AlarmName as string)
        .filter((n) => /-missed-run-/.test(n))
        .sort(),
    ).toEqual(expected.sort());
    for (const t of THREE)
      for (const j of JOB_NAMES) {
        const a = alarms.find((x) => x.AlarmName === `LakeTs-estate-${j}-missed-run-${t.name}`);
        if (!a) continue;
        const shape = missedRunAlarmShape(JOBS[j], flexibleWindowMinutes(JOBS[j]));
        expect(a).toMatchObject({
          Namespace: 'LakeTS',
          MetricName: 'RunDuration',
          Statistic: 'SampleCount',
          Dimensions: expect.arrayContaining([
            { Name: 'service', Value: j },
            { Name: 'target', Value: t.name },
          ]),
          Period: shape.period.toSeconds(),
          EvaluationPeriods: shape.evaluationPeriods,
          DatapointsToAlarm: shape.evaluationPeriods,
          ComparisonOperator: 'LessThanThreshold',
          Threshold: 1,
          TreatMissingData: 'breaching',
        });
        expect(a.Dimensions).toHaveLength(2);
        expect(a.AlarmDescription).toContain(`for target ${t.name}`);
        expect(a.AlarmActions).toHaveLength(1);
        expect(a.OKActions).toHaveLength(1);
      }
  });
});

describe('the construct in a CDK app of its own', () => {
  it('adds four functions and a schedule per (target, job) to any stack, with typed props', () => {
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    const stack = new Stack(app, 'DataPlatform', { env: { account: '123456789012', region: 'eu-west-1' } });
    const estate = new LakeTsJobs(stack, 'LakeTs', {
      targets: THREE.slice(0, 2),
      namePrefix: 'lakets',
      alarms: { kind: 'email', email: 'oncall@example.com' },
      timezone: 'Europe/Paris',
    });
    const resources = app.synth().getStackByName('DataPlatform').template.Resources as Record<
      string,
      Resource
    >;
    expect(
      ofType(resources, 'AWS::Lambda::Function')
        .map(([, f]) => f.Properties.FunctionName)
        .sort(),
    ).toEqual(JOB_NAMES.map((j) => `lakets-${j}`).sort());
    const schedules = ofType(resources, 'AWS::Scheduler::Schedule').map(([, s]) => s.Properties);
    expect(schedules.map((s) => JSON.parse(s.Target.Input).target).sort()).toEqual([
      ...Array(4).fill('eu-prod'),
      ...Array(4).fill('prod'),
    ]);
    expect(
      schedules.find((s) => s.Name === estateScheduleName('lakets', 'prod', 'tiering'))
        ?.ScheduleExpressionTimezone,
    ).toBe('Europe/Paris');
    expect(estate.jobs.every((j) => j.schedules.length === 2)).toBe(true);
  });

  it('bundles to the same asset wherever the cloud assembly is written (no code update for a new outdir)', () => {
    const keys = (outdir: string) => {
      const app = new App({ outdir });
      const stack = new Stack(app, 'DataPlatform', { env: { account: '123456789012', region: 'eu-west-1' } });
      new LakeTsJobs(stack, 'LakeTs', { targets: THREE.slice(0, 2), namePrefix: 'lakets' });
      const resources = app.synth().getStackByName('DataPlatform').template.Resources as Record<
        string,
        Resource
      >;
      return ofType(resources, 'AWS::Lambda::Function').map(([, f]) => f.Properties.Code.S3Key as string);
    };
    const base = mkdtempSync(join(tmpdir(), 'lakets-outdir-'));
    const here = keys(join(base, 'cdk.out'));
    // A pipeline's stage writes its assembly one level deeper.
    expect(keys(join(base, 'elsewhere', 'deeper', 'assembly-Prod'))).toEqual(here);
    expect(new Set(here).size).toBe(4);
  });

  it('refuses targets it is given directly by the same rules as a file', () => {
    const stack = new Stack(new App(), 'S');
    expect(
      () =>
        new LakeTsJobs(stack, 'LakeTs', {
          targets: [
            { name: 'Bad Name', databricksHost: WORKSPACE_A, spSecretName: 'x', lakebaseProject: 'p' },
          ],
          namePrefix: 'lakets',
        }),
    ).toThrow(/targets\[0\].*name/);
  });
});

describe('secrets per target', () => {
  const estate = (secrets: number) =>
    Array.from({ length: 200 }, (_, i) => ({
      name: `t-${i}`,
      databricksHost: WORKSPACE_A,
      spSecretName: `lakets/workspace-secret-${i % secrets}`,
      lakebaseProject: `p-${i}`,
    }));
  const define = (entries: unknown) => () =>
    defineApp(new App({ context: { targets: targetsFile(entries), 'aws:cdk:bundling-stacks': [] } }));

  it("are refused at synth when their ARNs would overflow a role's IAM policy, saying what to do", () => {
    expect(define(estate(200))).toThrow(
      /200 distinct secrets .* fix: share one service principal secret per workspace/,
    );
  });

  it('are accepted when shared per workspace (20 secrets for 200 targets)', () => {
    expect(define(estate(20))).not.toThrow();
  });
});

describe('a targets file with mistakes', () => {
  it('is refused with one line per problem, naming the target and the key', () => {
    const app = new App({
      context: {
        targets: targetsFile([
          { name: 'ok', databricksHost: WORKSPACE_A, spSecretName: 'lakets/sp', lakebaseProject: 'ok' },
          {
            name: 'both',
            databricksHost: WORKSPACE_A,
            spSecretName: 'lakets/sp',
            lakebaseProject: 'p',
            lakebaseInstance: 'i',
          },
          { name: 'nohost', spSecretName: 'lakets/sp', lakebaseProject: 'Bad_Project' },
          {
            name: 'kms',
            databricksHost: WORKSPACE_A,
            spSecretName: 'lakets/sp',
            lakebaseProject: 'k',
            spSecretKmsKeyArn: 'alias/x',
          },
          {
            name: 'zone',
            databricksHost: WORKSPACE_A,
            spSecretName: 'lakets/sp',
            lakebaseProject: 'z',
            timezone: 'Mars/Base',
          },
        ]),
        'aws:cdk:bundling-stacks': [],
      },
    });
    let problems: readonly string[] = [];
    try {
      defineApp(app);
    } catch (error) {
      problems = (error as { problems: readonly string[] }).problems;
    }
    expect(problems.some((p) => p.startsWith('targets[1] "both": lakebaseInstance: '))).toBe(true);
    expect(problems.some((p) => p.startsWith('targets[2] "nohost": lakebaseProject: '))).toBe(true);
    expect(problems.some((p) => p.startsWith('targets[2] "nohost": databricksHost: '))).toBe(true);
    expect(problems.some((p) => p.startsWith('targets[3] "kms": spSecretKmsKeyArn: '))).toBe(true);
    expect(problems.filter((p) => p.startsWith('targets[4] "zone"'))).toEqual([
      expect.stringMatching(/^targets\[4\] "zone": timezone: /),
    ]);
    expect(problems.every((p) => !p.includes('"ok"'))).toBe(true);
    expect(problems.every((p) => p.includes('; fix: '))).toBe(true);
  });

  it('refuses a connection key in the context beside the file', () => {
    const app = new App({
      context: { targets: targetsFile(THREE), lakebaseProject: 'x', 'aws:cdk:bundling-stacks': [] },
    });
    expect(() => defineApp(app)).toThrow(/context "lakebaseProject": a connection key beside -c targets/);
  });
});

describe('a thousand targets', () => {
  const COUNT = 1000;
  const entries: TargetEntry[] = Array.from({ length: COUNT }, (_, i) => ({
    name: `tenant-${String(i).padStart(4, '0')}`,
    databricksHost: i % 2 === 0 ? WORKSPACE_A : WORKSPACE_B,
    spSecretName: `lakets/tenant-${i % 10}`,
    lakebaseProject: `tenant-${i}`,
    ...(i % 3 === 0 && { timezone: 'Europe/Berlin' }),
  }));
  let parent: { Resources: Record<string, Resource> };
  let nested: { file: string; bytes: number; template: { Resources: Record<string, Resource> } }[];
  let parentBytes: number;
  let seconds: number;

  beforeAll(() => {
    const started = performance.now();
    const app = new App({ context: { targets: targetsFile(entries), alarmEmail: 'oncall@example.com' } });
    const stack = defineApp(app);
    const assembly = app.synth();
    seconds = (performance.now() - started) / 1000;
    parent = assembly.getStackByName(stack.stackName).template;
    parentBytes = statSync(join(assembly.directory, `${stack.stackName}.template.json`)).size;
    nested = readdirSync(assembly.directory)
      .filter((f) => f.endsWith('.nested.template.json'))
      .map((file) => {
        const text = readFileSync(join(assembly.directory, file), 'utf8');
        return { file, bytes: Buffer.byteLength(text), template: JSON.parse(text) };
      });
    console.log(
      `1,000 targets: synth ${seconds.toFixed(1)} s with bundling; parent template ${(parentBytes / 1024).toFixed(0)} KB, ${Object.keys(parent.Resources).length} resources; ${nested.length} nested schedule stacks, largest ${(Math.max(...nested.map((n) => n.bytes)) / 1024).toFixed(0)} KB, ${Math.max(...nested.map((n) => Object.keys(n.template.Resources).length))} resources`,
    );
  }, 300_000);

  it("keeps every function's environment under Lambda's 4 KB", () => {
    const fns = ofType(parent.Resources, 'AWS::Lambda::Function');
    expect(fns).toHaveLength(4);
    for (const [, fn] of fns) {
      const bytes = Buffer.byteLength(JSON.stringify(fn.Properties.Environment.Variables));
      expect(bytes).toBeLessThan(LAMBDA_ENVIRONMENT_BYTES);
    }
  });

  it('puts its 4,000 schedules in nested stacks within CloudFormation limits, each naming its target', () => {
    expect(ofType(parent.Resources, 'AWS::Scheduler::Schedule')).toHaveLength(0);
    expect(nested).toHaveLength(Math.ceil((COUNT * 4) / SCHEDULES_PER_STACK));
    expect(COUNT * 4).toBeGreaterThan(INLINE_SCHEDULES);
    expect(Object.keys(parent.Resources).length).toBeLessThanOrEqual(CFN_RESOURCES);
    expect(parentBytes).toBeLessThan(CFN_TEMPLATE_BYTES);
    const targets = new Map<string, number>();
    for (const n of nested) {
      expect(Object.keys(n.template.Resources).length, n.file).toBeLessThanOrEqual(CFN_RESOURCES);
      expect(n.bytes, n.file).toBeLessThan(CFN_TEMPLATE_BYTES);
      for (const [, s] of ofType(n.template.Resources, 'AWS::Scheduler::Schedule')) {
        const { target } = JSON.parse(s.Properties.Target.Input);
        targets.set(target, (targets.get(target) ?? 0) + 1);
      }
    }
    expect(targets.size).toBe(COUNT);
    expect([...targets.values()].every((n) => n === 4)).toBe(true);
    // Each schedule's missed-run alarm beside it, in the same nested stack.
    const alarms = nested.flatMap((n) =>
      ofType(n.template.Resources, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties.AlarmName as string),
    );
    expect(alarms).toHaveLength(COUNT * 4);
    expect(new Set(alarms).size).toBe(COUNT * 4);
  });
});

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fakeTls } from '../dev/fake-tls.ts';
import { startFakeWorkspace } from '../dev/fake-workspace.ts';
import { schedulerEvent } from '../dev/lambda-context.ts';
import {
  type Fakes,
  fakesContext,
  fakesEnvironment,
  forwardLakebasePort,
  runtimeClientMissing,
  runtimeClientRequired,
  type SynthesizedFunction,
  startFunction,
  synthFunctions,
} from '../dev/lambda-runner.ts';
import { grantStatements } from '../lib/grants.ts';
import { JOB_NAMES } from '../lib/jobs/catalog.ts';
import {
  type BenchContext,
  benchDatabase,
  fmtMs,
  fmtRatio,
  median,
  type Row,
  type SectionResult,
  say,
  section,
  smallMetrics,
} from './lib.ts';

const PROJECT = 'lakets-bench';

interface Sample {
  initMs: number;
  coldMs: number;
  warmMs: number;
}

async function main(ctx: BenchContext): Promise<SectionResult> {
  // aws-lambda-ric is an optional dependency (it builds from source): without it this section skips.
  const missing = runtimeClientMissing();
  if (missing && runtimeClientRequired()) throw new Error(missing);
  if (missing) {
    say(`runtime section skipped: ${missing}`);
    const row: Row = {
      section: 'runtime',
      measurement: 'the functions under aws-lambda-ric',
      figure: 'skipped',
      target: 'runs',
      met: null,
    };
    return { rows: [row], notes: [`Skipped: ${missing}`] };
  }
  const { info, database, db: admin } = await benchDatabase(ctx, 'bench_runtime');
  await smallMetrics(admin, 3);
  const {
    appId,
    secretId: secretName,
    fake,
    sm,
    close,
  } = await startFakeWorkspace({
    admin,
    secretPrefix: 'bench',
    projects: {
      [PROJECT]: {
        branches: [
          {
            id: 'production',
            default: true,
            endpoints: [{ id: 'primary', type: 'ENDPOINT_TYPE_READ_WRITE', host: 'localhost' }],
          },
        ],
      },
    },
  });
  for (const s of grantStatements(appId)) await admin.query(s.sql);
  const forwarder = await forwardLakebasePort(info.port);
  const dir = join(ctx.tmp, 'runtime');
  mkdirSync(dir, { recursive: true });
  try {
    const fakes: Fakes = {
      databricksUrl: fake.url,
      secretsManagerUrl: sm.url,
      region: sm.region,
      trust: [info.caPem, fakeTls().caPem],
    };
    say('cdk synth (bundles the four functions)');
    const { functions, outdir } = synthFunctions(
      fakesContext(fakes, { project: PROJECT, secretName, database }),
    );
    const environment = fakesEnvironment(fakes, dir);
    const template = functions.get('tiering') as SynthesizedFunction;
    const emptyDir = join(dir, 'empty');
    mkdirSync(emptyDir, { recursive: true });
    writeFileSync(join(emptyDir, 'index.mjs'), 'export const handler = async () => ({});\n');
    const empty: SynthesizedFunction = { ...template, job: 'empty', codeDir: emptyDir };
    const candidates = [empty, ...JOB_NAMES.map((j) => functions.get(j) as SynthesizedFunction)];

    const samples = new Map<string, Sample[]>(candidates.map((c) => [c.job, []]));
    const rounds = ctx.quick ? 3 : 7;
    // One unmeasured start of each warms the page cache (node, the bundles, the native client).
    for (let round = -1; round < rounds; round++) {
      for (const fn of candidates) {
        const running = await startFunction(fn, environment);
        try {
          if (!running.init.ok)
            throw new Error(`${fn.job}: init failed: ${JSON.stringify(running.init.error)}`);
          const event = fn.job === 'empty' ? {} : schedulerEvent(fn.job);
          const cold = await running.invoke(event, { timeoutMs: fn.timeoutSeconds * 1000 });
          const warm = await running.invoke(event, { timeoutMs: fn.timeoutSeconds * 1000 });
          for (const r of [cold, warm]) {
            if (r.kind !== 'response') throw new Error(`${fn.job}: ${JSON.stringify(r.body).slice(0, 300)}`);
          }
          if (round >= 0) {
            samples.get(fn.job)?.push({ initMs: running.init.ms, coldMs: cold.ms, warmMs: warm.ms });
          }
        } finally {
          await running.stop();
        }
      }
      if (round >= 0) say(`round ${round + 1} of ${rounds}`);
    }
    rmSync(outdir, { recursive: true, force: true });

    const med = (job: string, key: keyof Sample) => median((samples.get(job) ?? []).map((s) => s[key]));
    const emptyInit = med('empty', 'initMs');
    const rows: Row[] = [
      {
        section: 'runtime',
        measurement: 'empty handler under aws-lambda-ric: init / first invocation',
        figure: `${fmtMs(emptyInit)} / ${fmtMs(med('empty', 'coldMs'))}`,
        target: 'baseline',
        met: null,
      },
    ];
    for (const job of JOB_NAMES) {
      const init = med(job, 'initMs');
      rows.push({
        section: 'runtime',
        measurement: `${job}: init under aws-lambda-ric / empty handler`,
        figure: `${fmtRatio(init / emptyInit)}x (${fmtMs(init)} vs ${fmtMs(emptyInit)})`,
        // No target of its own: section 1 holds the import-time target; this shows it in the runtime.
        target: 'informational',
        met: null,
      });
      rows.push({
        section: 'runtime',
        measurement: `${job}: cold first invocation (fakes on loopback), then warm`,
        figure: `${fmtMs(med(job, 'coldMs'))}, then ${fmtMs(med(job, 'warmMs'))}`,
        target: 'informational',
        met: null,
      });
    }
    return {
      rows,
      notes: [
        `aws-lambda-ric ${rounds} rounds, medians; init = spawn of \`node aws-lambda-ric\` (NODE_OPTIONS=--enable-source-maps from the template) until its first GET /runtime/invocation/next; invocation = event handed out until POST /response.`,
        'A cold first invocation reads the secret, gets an OAuth token, resolves the endpoint, mints a credential and logs in to Postgres over TLS: against loopback fakes here, so real service latency adds to it in AWS.',
      ],
    };
  } finally {
    await new Promise<void>((resolve) => forwarder.close(() => resolve()));
    await close();
    await admin.end();
  }
}

await section('runtime', main);

// 6. Under the runtime client: each function as `cdk synth` bundles it, with the template's Handler and
// Environment, started by aws-lambda-ric against our Runtime API stand-in (dev/lambda-runner.ts), as a
// Lambda cold start does: init (process spawn until the client asks for the first event) and the cold
// first invocation (event handed out until the report is back: secret read, OAuth, endpoint
// resolution, credential, TLS login to Postgres, the run), then one warm invocation. The baseline is an
// empty handler (`async () => ({})`) under the same client, started the same way in the same rounds.
// The fakes answer on loopback: the real services' network latency is not in these figures.
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { newApplicationId, startFakeDatabricks } from '../dev/fake-databricks.ts';
import { startFakeSecretsManager } from '../dev/fake-secrets-manager.ts';
import { fakeTls } from '../dev/fake-tls.ts';
import { schedulerEvent } from '../dev/lambda-context.ts';
import {
  type Fakes,
  fakesContext,
  fakesEnvironment,
  forwardLakebasePort,
  type SynthesizedFunction,
  startFunction,
  synthFunctions,
} from '../dev/lambda-runner.ts';
import { createDatabase } from '../dev/local-postgres.ts';
import { grantStatements } from '../lib/grants.ts';
import { JOB_NAMES } from '../lib/jobs/catalog.ts';
import { installLakets } from '../lib/schema/installer.ts';
import {
  type BenchContext,
  connect,
  fmtMs,
  fmtRatio,
  median,
  type Row,
  requirePg,
  type SectionResult,
  say,
  section,
} from './lib.ts';

const PROJECT = 'lakets-bench';

interface Sample {
  initMs: number;
  coldMs: number;
  warmMs: number;
}

async function main(ctx: BenchContext): Promise<SectionResult> {
  const info = requirePg(ctx);
  const database = await createDatabase(info, 'bench_runtime');
  const admin = await connect(info, database);
  const appId = newApplicationId();
  const clientSecret = `bench${randomBytes(20).toString('hex')}`;
  const secretName = `lakets/bench-${randomBytes(4).toString('hex')}`;
  await installLakets(admin);
  await admin.query(`
    CREATE TABLE metrics (ts timestamptz NOT NULL, device int NOT NULL, value float8);
    SELECT lakets.create_chronotable('metrics', 'ts', interval '1 day');
    SELECT lakets._ensure_partitions(1, p_range_start => now() - interval '3 days');
    INSERT INTO metrics SELECT t, d, d FROM generate_series(now() - interval '3 days', now(), interval '10 minutes') t, generate_series(1, 3) d;`);
  await admin.query(`CREATE ROLE ${pg.escapeIdentifier(appId)} LOGIN`);
  for (const s of grantStatements(appId)) await admin.query(s.sql);
  const fake = await startFakeDatabricks({
    clientId: appId,
    clientSecret,
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
    onCredential: async ({ token, expireTime }) => {
      await admin.query(
        `ALTER ROLE ${pg.escapeIdentifier(appId)} PASSWORD ${pg.escapeLiteral(token)} VALID UNTIL ${pg.escapeLiteral(expireTime.toISOString())}`,
      );
    },
  });
  const sm = await startFakeSecretsManager({
    secrets: { [secretName]: JSON.stringify({ client_id: appId, client_secret: clientSecret }) },
  });
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
    await fake.close();
    await sm.close();
    await admin.end();
  }
}

await section('runtime', main);

// 2. Databricks calls (and Secrets Manager reads) per cold and per warm invocation, counted at the local
// fake workspace and the fake Secrets Manager, running the real handler (makeHandler) end to end
// against the bench Postgres: the minted credential becomes the service principal role's password,
// TLS is verified against the cluster's certificate.
//
// Each job runs in its own process (a fresh Lambda container: the connector and the Databricks
// client caches are per process): one cold invocation, warm ones right after it, then warm ones one
// schedule period apart (the connector's clock is advanced through ConnectorDeps.now; the SDK's own
// OAuth token clock cannot be, see the note).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FakeRoute } from '../dev/fake-databricks.ts';
import { installWal2delta, LSN_ALWAYS_CAUGHT_UP, setSync } from '../dev/fake-lakehouse-sync.ts';
import { startFakeWorkspace } from '../dev/fake-workspace.ts';
import { lambdaContext, schedulerEvent } from '../dev/lambda-context.ts';
import { grantStatements } from '../lib/grants.ts';
import { JOB_NAMES, JOBS, type JobName, jobNamed } from '../lib/jobs/catalog.ts';
import type { JobReport } from '../lib/jobs/types.ts';
import {
  BENCH_DIR,
  type BenchContext,
  benchDatabase,
  connect,
  context,
  type Row,
  requirePg,
  type SectionResult,
  say,
  section,
  smallMetrics,
} from './lib.ts';

const PROJECT = 'lakets-prod';
const RESOLUTION: FakeRoute[] = ['listBranches', 'listEndpoints', 'getEndpoint'];
const ROUTES: FakeRoute[] = ['oidc', 'token', 'me', ...RESOLUTION, 'credentials'];

interface Counts {
  routes: Partial<Record<FakeRoute, number>>;
  secretReads: number;
  status: string;
}

interface JobCalls {
  job: JobName;
  cold: Counts;
  warmNow: Counts[];
  periodMinutes: number;
  warmScheduled: Counts[];
}

// ---------------------------------------------------------------------------------------------
// Child: one job, one "container"
// ---------------------------------------------------------------------------------------------

async function runJobProcess(ctx: BenchContext, job: JobName, database: string, out: string): Promise<void> {
  const info = requirePg(ctx);
  const admin = await connect(info, database);
  // A realistic layout: the default branch with its read-write endpoint and a read replica, one page each.
  const { appId, secretId, fake, sm, close } = await startFakeWorkspace({
    admin,
    secretPrefix: 'bench',
    pageSize: 50,
    projects: {
      [PROJECT]: {
        branches: [
          {
            id: 'production',
            default: true,
            endpoints: [
              { id: 'primary', type: 'ENDPOINT_TYPE_READ_WRITE', host: 'localhost' },
              { id: 'replica', type: 'ENDPOINT_TYPE_READ_ONLY', host: 'localhost' },
            ],
          },
          { id: 'dev', endpoints: [{ id: 'dev-rw', type: 'ENDPOINT_TYPE_READ_WRITE', host: 'localhost' }] },
        ],
      },
    },
  });
  for (const s of grantStatements(appId)) await admin.query(s.sql);
  try {
    // The deployed function's environment (infra/job.ts), pointed at the fakes.
    Object.assign(process.env, {
      LAKETS_PROJECT: PROJECT,
      DATABRICKS_HOST: fake.url,
      LAKETS_SP_SECRET_ID: secretId,
      LAKETS_DATABASE: database,
      POWERTOOLS_SERVICE_NAME: job,
      POWERTOOLS_METRICS_NAMESPACE: 'LakeTS',
      POWERTOOLS_LOG_LEVEL: 'INFO',
    });
    let offsetMs = 0;
    const deps = {
      secretsManager: sm.client(),
      port: info.port,
      extraCa: info.caPem,
      now: () => Date.now() + offsetMs,
    };
    const { makeHandler, JobFailed, jobReport } = await import('../lib/job-handler.ts');
    const handler = makeHandler(jobNamed(job), { connector: deps });

    const invoke = async (): Promise<Counts> => {
      const before = new Map(ROUTES.map((r) => [r, fake.count(r)]));
      const reads = sm.count();
      let report: JobReport;
      try {
        report = jobReport(await handler(schedulerEvent(job), lambdaContext(job)));
      } catch (error) {
        if (!(error instanceof JobFailed)) throw error;
        report = error.report;
      }
      const routes: Partial<Record<FakeRoute, number>> = {};
      for (const r of ROUTES) {
        const n = fake.count(r) - (before.get(r) ?? 0);
        if (n > 0) routes[r] = n;
      }
      return { routes, secretReads: sm.count() - reads, status: report.status };
    };

    const cold = await invoke();
    const warmNow: Counts[] = [];
    for (let i = 0; i < 3; i++) warmNow.push(await invoke());
    // Then as scheduled: one period later each time, for at least two hours of schedule.
    const period = JOBS[job].periodMinutes;
    const warmScheduled: Counts[] = [];
    const n = Math.max(4, Math.ceil(120 / period));
    for (let i = 0; i < n; i++) {
      offsetMs += period * 60_000;
      // Credentials live 1 h on the simulated clock too (the fake stamps expiry from the real one).
      fake.setCredentialTtl(3_600_000 + offsetMs);
      warmScheduled.push(await invoke());
    }
    const result: JobCalls = { job, cold, warmNow, periodMinutes: period, warmScheduled };
    writeFileSync(out, JSON.stringify(result));
  } finally {
    await close();
    await admin.end();
  }
}

// ---------------------------------------------------------------------------------------------
// Parent: a database with a little of everything, then one process per job
// ---------------------------------------------------------------------------------------------

async function prepare(ctx: BenchContext): Promise<string> {
  const { database, db } = await benchDatabase(ctx, 'bench_calls');
  try {
    await installWal2delta(db);
    await smallMetrics(db, 5);
    await db.query(`
      SELECT lakets.add_tiered_retention_policy('metrics', interval '2 days', interval '4 days');
      SELECT lakets.enable_sync('metrics');`);
    await setSync(db, 'metrics', 'STREAMING', LSN_ALWAYS_CAUGHT_UP);
    await db.query(`
      SELECT lakets.create_rollup('metrics_1h',
        $$SELECT lakets.time_bucket('1 hour', ts) AS bucket, device, count(*) AS n, avg(value) AS v FROM metrics GROUP BY 1, 2$$,
        interval '1 hour', 'metrics');
      UPDATE lakets._rollup_registry SET refresh_lag = interval '0';`);
  } finally {
    await db.end();
  }
  return database;
}

function child(ctx: BenchContext, job: JobName, database: string): Promise<JobCalls> {
  const out = join(ctx.tmp, `calls-${job}.json`);
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(BENCH_DIR, 'calls.ts'), job, database, out], {
      env: process.env,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    p.on('error', reject);
    p.on('close', (code) => {
      if (code === 0 && existsSync(out)) resolve(JSON.parse(readFileSync(out, 'utf8')) as JobCalls);
      else reject(new Error(`calls for ${job} exited with ${code}`));
    });
  });
}

const total = (c: Counts) => Object.values(c.routes).reduce((a, b) => a + (b ?? 0), 0);
const resolutionCalls = (c: Counts) => RESOLUTION.reduce((a, r) => a + (c.routes[r] ?? 0), 0);
const credentialCalls = (c: Counts) => c.routes.credentials ?? 0;
const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const show = (c: Counts) =>
  ROUTES.filter((r) => c.routes[r])
    .map((r) => `${r} ${c.routes[r]}`)
    .join(', ') || 'none';

async function main(ctx: BenchContext): Promise<SectionResult> {
  const database = await prepare(ctx);
  const results: JobCalls[] = [];
  for (const job of JOB_NAMES) {
    say(`${job}: cold, warm, warm on schedule`);
    results.push(await child(ctx, job, database));
  }
  const rows: Row[] = [];
  const notes: string[] = [];
  for (const r of results) {
    const bad = [r.cold, ...r.warmNow, ...r.warmScheduled].filter((c) => c.status !== 'ok');
    if (bad.length > 0)
      notes.push(`${r.job}: ${bad.length} invocations ended ${bad.map((b) => b.status).join(', ')}`);
  }
  // The cold invocation is the same for every job: one row, the per-job detail in the notes.
  const cold = results.map((r) => r.cold);
  const coldSame = cold.every(
    (c) => show(c) === show(cold[0] as Counts) && c.secretReads === cold[0]?.secretReads,
  );
  rows.push({
    section: 'calls',
    measurement: 'Databricks calls, cold invocation (each job)',
    figure: `${coldSame ? '' : 'up to '}${Math.max(...cold.map(total))} (${show(cold[0] as Counts)}) + ${cold[0]?.secretReads} Secrets Manager read`,
    target: '1 credential call per connection',
    met: cold.every((c) => credentialCalls(c) <= 1),
  });
  const warmNow = results.flatMap((r) => r.warmNow);
  rows.push({
    section: 'calls',
    measurement: 'Databricks calls, warm invocation minutes after the last (each job)',
    figure: `${Math.max(...warmNow.map(total))} calls, ${Math.max(...warmNow.map((c) => c.secretReads))} secret reads (max of ${warmNow.length})`,
    target: '0 resolution, <= 1 credential call',
    met: warmNow.every((c) => resolutionCalls(c) === 0 && credentialCalls(c) <= 1),
  });
  for (const r of results) {
    const ws = r.warmScheduled;
    rows.push({
      section: 'calls',
      measurement: `${r.job}: warm invocation one schedule period (${r.periodMinutes} min) later`,
      figure: `${avg(ws.map(resolutionCalls)).toFixed(2)} resolution + ${avg(ws.map(credentialCalls)).toFixed(2)} credential calls per invocation (${ws.length} runs)`,
      target: '0 resolution, <= 1 credential call',
      met: ws.every((c) => resolutionCalls(c) === 0 && credentialCalls(c) <= 1),
    });
    notes.push(
      `${r.job}: cold ${show(r.cold)}, SM ${r.cold.secretReads}; warm now ${r.warmNow.map(show).join(' | ')}; every ${r.periodMinutes} min ${r.warmScheduled.map(show).join(' | ')}`,
    );
  }
  const resolving = results.filter((r) => r.warmScheduled.some((c) => resolutionCalls(c) > 0));
  notes.push(
    'Resolution = listBranches + listEndpoints + getEndpoint; credential = POST /api/2.0/postgres/credentials.',
  );
  for (const r of resolving) {
    // When, counted from the previous resolution, each warm resolution happened.
    const gaps: number[] = [];
    let last = 0;
    r.warmScheduled.forEach((c, i) => {
      const at = (i + 1) * r.periodMinutes;
      if (resolutionCalls(c) > 0) {
        gaps.push(at - last);
        last = at;
      }
    });
    notes.push(
      `${r.job} (every ${r.periodMinutes / 60} h): the endpoint was resolved again ${gaps.map((g) => `${g / 60} h`).join(', ')} after the previous resolution`,
    );
  }
  if (resolving.length > 0) {
    notes.push(
      '  (lib/lakebase/connector.ts trusts a resolved endpoint for endpointTtlMs; a connection failure, PG_UNREACHABLE or',
      '  PG_CONNECT_TIMEOUT, already forgets it, so a TTL above the longest schedule period would leave warm runs with no resolution)',
    );
  }
  notes.push(
    "Not counted: the SDK's OAuth token (1 h) follows the real clock, so warm invocations >= 1 h apart also make 1 token call in production;",
    'and Lambda reclaims idle execution environments long before a day, so the daily jobs are cold invocations in practice.',
  );
  return { rows, notes };
}

const [jobArg, dbArg, outArg] = process.argv.slice(2);
if (jobArg && dbArg && outArg) {
  await runJobProcess(context(), jobArg as JobName, dbArg, outArg);
} else {
  await section('calls', main);
}

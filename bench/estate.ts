// `npm run bench:estate [-- --targets=100]`: one deployment maintaining many databases. Starts an
// embedded PostgreSQL 17 with N databases (LakeTS, a small ChronoTable with tiering, retention, sync and
// a RollUp in each; copies of one template), two fake workspaces (two service principals, each serving
// half of the targets, one Autoscaling project per target) and a fake Secrets Manager, then runs each
// job's deployed handler (makeHandler) once per target, sequentially in one container: a cold round
// (empty caches) and a warm round right after. Prints the wall time of each round, the per-target
// overhead (invocation time beyond the job's own run time), and the Databricks and Secrets Manager
// calls per round. Standalone: not a section of `npm run bench`.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { giveEveryJobWork } from '../dev/chronotable.ts';
import { installWal2delta } from '../dev/fake-lakehouse-sync.ts';
import { createFakeTls, removeFakeTls } from '../dev/fake-tls.ts';
import { type FakeWorkspace, startFakeWorkspace } from '../dev/fake-workspace.ts';
import { lambdaContext } from '../dev/lambda-context.ts';
import { createDatabase, type LocalPostgresInfo, startLocalPostgres } from '../dev/local-postgres.ts';
import type { TargetEntry } from '../lib/estate.ts';
import { applyGrants } from '../lib/grants.ts';
import { JOB_NAMES, type JobName, jobNamed } from '../lib/jobs/catalog.ts';
import type { JobReport } from '../lib/jobs/types.ts';
import { installLakets } from '../lib/schema/installer.ts';
import { connect, fmtMs, median, smallMetrics } from './lib.ts';

const arg = process.argv.find((a) => a.startsWith('--targets='));
const N = arg ? Number(arg.slice('--targets='.length)) : 100;
if (!Number.isInteger(N) || N < 1 || N > 1000) {
  process.stderr.write('usage: npm run bench:estate [-- --targets=<1-1000>]\n');
  process.exit(2);
}
const CHILD = 'LAKETS_BENCH_ESTATE';
const JOBS_ROLE = 'lakets_bench_jobs';

// The parent: the fakes' CA must be trusted from process start (NODE_EXTRA_CA_CERTS), so the bench
// itself runs in a child started after the CA exists.
if (!process.env[CHILD]) {
  const tls = createFakeTls();
  const server = await startLocalPostgres({
    settings: { max_connections: '200', fsync: 'off', autovacuum: 'off', max_locks_per_transaction: '256' },
  });
  try {
    const code = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
        env: { ...process.env, [CHILD]: JSON.stringify(server satisfies LocalPostgresInfo) },
        // stdout carries the handlers' Powertools records: not ours to print.
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      child.on('close', (c) => resolve(c ?? 1));
    });
    process.exitCode = code;
  } finally {
    await server.stop();
    removeFakeTls(tls);
  }
} else {
  await bench(JSON.parse(process.env[CHILD]) as LocalPostgresInfo);
}

function say(text: string): void {
  process.stderr.write(`${text}\n`);
}

async function bench(info: LocalPostgresInfo): Promise<void> {
  const setupStarted = performance.now();
  const admin = await connect(info, 'postgres');
  // One database set up as a team would, copied N times (CREATE DATABASE ... TEMPLATE).
  await admin.query(`CREATE ROLE ${JOBS_ROLE} NOLOGIN`);
  const template = await createDatabase(info, 'esttpl');
  {
    const c = await connect(info, template);
    await installLakets(c);
    await installWal2delta(c);
    await smallMetrics(c, 10);
    await giveEveryJobWork(c, 'metrics');
    await applyGrants(c, JOBS_ROLE);
    await c.end();
  }
  const databases: string[] = [];
  for (let i = 0; i < N; i++) {
    const name = `est_${String(i).padStart(4, '0')}`;
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
    // Each target logs in as its own role (pgRole, a group role of its service principal): as with
    // real Lakebase, one target's credential never replaces another's.
    await admin.query(`CREATE ROLE lt_${i} LOGIN IN ROLE ${JOBS_ROLE}`);
    databases.push(name);
  }
  const project = () => ({
    branches: [
      {
        id: 'production',
        default: true,
        endpoints: [{ id: 'primary', type: 'ENDPOINT_TYPE_READ_WRITE' as const, host: 'localhost' }],
      },
    ],
  });
  const projects = (half: number) =>
    Object.fromEntries(databases.flatMap((_, i) => (i % 2 === half ? [[`p${i}`, project()]] : [])));
  const wsA = await startFakeWorkspace({
    admin,
    projects: projects(0),
    pageSize: 50,
    secretPrefix: 'bencha',
  });
  const wsB = await startFakeWorkspace({
    admin,
    projects: projects(1),
    pageSize: 50,
    secretPrefix: 'benchb',
  });
  wsA.sm.setSecret(wsB.secretId, JSON.stringify({ client_id: wsB.appId, client_secret: wsB.clientSecret }));
  const wsOf = (i: number): FakeWorkspace => (i % 2 === 0 ? wsA : wsB);
  for (let i = 0; i < N; i++) await admin.query(`GRANT lt_${i} TO "${wsOf(i).appId}"`);
  const targets: TargetEntry[] = databases.map((database, i) => ({
    name: `t${i}`,
    databricksHost: wsOf(i).fake.url,
    spSecretName: wsOf(i).secretId,
    lakebaseProject: `p${i}`,
    database,
    pgRole: `lt_${i}`,
  }));
  say(
    `estate bench: ${N} targets (databases in one PostgreSQL 17 cluster), 2 workspaces, setup ${fmtMs(performance.now() - setupStarted)}`,
  );

  Object.assign(process.env, { POWERTOOLS_METRICS_DISABLED: 'true', POWERTOOLS_LOG_LEVEL: 'WARN' });
  const { makeHandler } = await import('../lib/job-handler.ts');
  const { clearWorkspaceClients } = await import('../lib/lakebase/index.ts');
  const env = { LAKETS_TARGETS: JSON.stringify(targets) };
  const calls = () => wsA.fake.calls.length + wsB.fake.calls.length;
  const reads = () => wsA.sm.count();

  const rows: string[] = [];
  for (const job of JOB_NAMES as readonly JobName[]) {
    // A fresh container: new connectors, no Databricks client (OAuth token) kept.
    clearWorkspaceClients();
    const handler = makeHandler(jobNamed(job), {
      connector: { secretsManager: wsA.sm.client(), port: info.port, extraCa: info.caPem },
      env,
    });
    for (const round of ['cold', 'warm'] as const) {
      const calls0 = calls();
      const reads0 = reads();
      const overhead: number[] = [];
      const statuses = new Map<string, number>();
      const t0 = performance.now();
      for (const t of targets) {
        const s = performance.now();
        let status: string;
        let runMs = 0;
        try {
          const report = (await handler({ target: t.name }, lambdaContext(job))) as JobReport;
          status = report.status;
          runMs = report.durationMs;
        } catch (error) {
          status = (error as { code?: string }).code ?? 'error';
        }
        overhead.push(performance.now() - s - runMs);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
      const wall = performance.now() - t0;
      const row = `${job.padEnd(17)} ${round}: ${N} targets in ${fmtMs(wall)} (${fmtMs(wall / N)} a target); overhead a target median ${fmtMs(median(overhead))}, max ${fmtMs(Math.max(...overhead))}; Databricks calls ${calls() - calls0} (${((calls() - calls0) / N).toFixed(2)} a target), Secrets Manager reads ${reads() - reads0}; ${[...statuses].map(([k, v]) => `${k} ${v}`).join(', ')}`;
      say(row);
      rows.push(row);
    }
  }
  const byRoute = (ws: FakeWorkspace) => {
    const m = new Map<string, number>();
    for (const c of ws.fake.calls) m.set(c.route, (m.get(c.route) ?? 0) + 1);
    return [...m].map(([k, v]) => `${k} ${v}`).join(', ');
  };
  say(`Databricks calls by route over all rounds: workspace A ${byRoute(wsA)}; workspace B ${byRoute(wsB)}`);
  await wsA.close();
  await wsB.close();
  await admin.end();
}

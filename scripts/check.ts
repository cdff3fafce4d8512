// `npm run check [-- <job>] [--json]`: the preflight check, run no job. Connects exactly as the jobs
// do (the same configuration: LAKETS_DATABASE_URL, or the Databricks path with LAKETS_PROJECT,
// DATABRICKS_HOST and the service principal's secret) and reports, item by item, what passes and
// how to fix what fails. Exit code 1 when anything failed.
import { parseArgs } from 'node:util';
import { getConfig } from '../lib/config.ts';
import { JOB_NAMES, type JobName } from '../lib/jobs/catalog.ts';
import { type CheckReport, loginFailed, preflight } from '../lib/jobs/check.ts';
import { getConnector } from '../lib/lakebase/index.ts';

const USAGE = `usage: npm run check -- [${JOB_NAMES.join('|')}] [--json]\n  without a job: what all four jobs need\n`;

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const job = positionals[0];
  if (positionals.length > 1 || (job !== undefined && !(JOB_NAMES as readonly string[]).includes(job))) {
    process.stderr.write(`npm run check: unknown job ${JSON.stringify(job)}\n${USAGE}`);
    return 2;
  }
  const jobs: JobName[] = job ? [job as JobName] : [...JOB_NAMES];
  const config = getConfig();
  const connector = getConnector(config);
  let report: CheckReport;
  try {
    const db = await connector.connect({ applicationName: job ? `lakets-${job}` : 'lakets-check' });
    try {
      report = await preflight(db, jobs, { tlsRequired: config.kind === 'databricks' });
    } finally {
      await db.end().catch(() => {});
    }
  } catch (error) {
    report = loginFailed(jobs, error);
  }
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : format(report));
  return report.status === 'pass' ? 0 : 1;
}

function format(report: CheckReport): string {
  const who = report.role ? ` as role "${report.role}" on database "${report.database}"` : '';
  const { pass, warn, fail } = report.totals;
  const lines = [
    `LakeTS preflight check for ${report.jobs.join(', ')}${who}: ${report.status.toUpperCase()} (${pass} pass, ${warn} warn, ${fail} fail)`,
  ];
  const width = Math.min(48, Math.max(...report.items.map((i) => i.check.length)));
  for (const i of report.items) {
    lines.push(`  ${i.status.toUpperCase().padEnd(4)}  ${i.check.padEnd(width)}  ${i.detail}`);
    if (i.fix) lines.push(`  ${''.padEnd(4)}  ${''.padEnd(width)}  fix: ${i.fix}`);
  }
  return `${lines.join('\n')}\n`;
}

try {
  process.exitCode = await main();
} catch (error) {
  // Configuration errors are one line naming the variable; nothing secret is echoed.
  process.stderr.write(`npm run check: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 2;
}

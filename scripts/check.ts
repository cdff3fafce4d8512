// `npm run check [-- <job>] [--json]`: the preflight check, run no job. Connects exactly as the jobs
// do (the same configuration: LAKETS_DATABASE_URL, or the Databricks path with LAKETS_PROJECT or LAKETS_LAKEBASE_INSTANCE,
// DATABRICKS_HOST and the service principal's secret) and reports, item by item, what passes and
// how to fix what fails. Exit code 1 when anything failed. With LAKETS_TARGETS (an estate), `--target
// <name>` says which target's database to check (required when there are several).
import { parseArgs } from 'node:util';
import { formatCheck } from '../dev/format-check.ts';
import { checkConnection } from '../lib/job-handler.ts';
import { JOB_LIST, JOB_NAMES, type JobName, jobNamed } from '../lib/jobs/catalog.ts';
import { getConnector } from '../lib/lakebase/index.ts';
import { targetResolver } from '../lib/target.ts';

const USAGE = `usage: npm run check -- [${JOB_NAMES.join('|')}] [--target <name>] [--json]\n  without a job: what all four jobs need\n  --target: the target (of LAKETS_TARGETS) to check\n`;

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      json: { type: 'boolean' },
      target: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
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
  const jobs = job ? [jobNamed(job as JobName)] : JOB_LIST;
  const { name, config } = targetResolver(process.env)(values.target);
  if (name !== 'default' || values.target) process.stderr.write(`npm run check: target ${name}\n`);
  const report = await checkConnection(jobs, getConnector(config), config.kind === 'databricks');
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatCheck(report));
  return report.status === 'pass' ? 0 : 1;
}

try {
  process.exitCode = await main();
} catch (error) {
  // Configuration errors are one line naming the variable; nothing secret is echoed.
  process.stderr.write(`npm run check: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 2;
}

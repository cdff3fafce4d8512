// `npm run invoke -- <job> ['<json payload>']`: runs the real Lambda handler in-process with an
// EventBridge Scheduler-shaped event (or the given manual payload) and prints the report as JSON on
// stdout. LAKETS_DATABASE_URL connects directly; otherwise the Databricks path (LAKETS_PROJECT or LAKETS_LAKEBASE_INSTANCE,
// DATABRICKS_HOST, LAKETS_SP_SECRET_ID or DATABRICKS_CLIENT_ID/SECRET) is used. With LAKETS_TARGETS (an
// estate), the payload names the target, '{"target": "<name>"}', as a schedule's event does.
import { JOB_NAMES, type JobName, jobNamed } from '../lib/jobs/catalog.ts';

const [job, payloadText, ...extra] = process.argv.slice(2);
const usage = `usage: npm run invoke -- <${JOB_NAMES.join('|')}> ['<json payload>'], e.g. '{"target": "eu-prod", "dryRun": true}'`;
if (!job || extra.length > 0 || !(JOB_NAMES as readonly string[]).includes(job)) {
  console.error(job ? `invoke: unknown job ${JSON.stringify(job)}; ${usage}` : usage);
  process.exit(2);
}
let payload: unknown;
if (payloadText !== undefined) {
  try {
    payload = JSON.parse(payloadText);
  } catch {
    console.error(`invoke: the payload is not valid JSON; e.g. '{"dryRun": true}'`);
    process.exit(2);
  }
}

// Logs and metrics to stderr, so stdout carries only the report (pipe it to jq).
process.env['POWERTOOLS_DEV'] ??= 'true';
process.env['POWERTOOLS_METRICS_DISABLED'] ??= 'true';
for (const level of ['log', 'info', 'debug', 'warn'] as const) {
  console[level] = (...args: unknown[]) => console.error(...args);
}

const { lambdaContext, schedulerEvent } = await import('../dev/lambda-context.ts');
const { makeHandler, JobFailed, CheckFailed } = await import('../lib/job-handler.ts');
const name = job as JobName;
try {
  const report = await makeHandler(jobNamed(name))(payload ?? schedulerEvent(name), lambdaContext(name));
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
} catch (error) {
  if (error instanceof JobFailed || error instanceof CheckFailed)
    process.stdout.write(`${JSON.stringify(error.report, null, 2)}\n`);
  // The message the Lambda error carries: for a failed check, every failing item with its fix.
  console.error(`invoke: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}

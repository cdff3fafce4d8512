// `npm run demo`: the four jobs on an embedded PostgreSQL 17, nothing to configure. Builds three
// weeks of per-device metrics in a ChronoTable with a tiered-retention policy, sync, the Lakehouse
// Sync fake of the tests (caught up for most chunks, behind for a few late-corrected ones) and a
// three-level RollUp DAG, then runs the real Lambda handlers in their daily order and prints what
// each did and why.
import pg from 'pg';
import { createChronotable } from '../dev/chronotable.ts';
import { installWal2delta, syncCaughtUp } from '../dev/fake-lakehouse-sync.ts';
import { formatReport, table } from '../dev/format-report.ts';
import { lambdaContext, schedulerEvent } from '../dev/lambda-context.ts';
import { createDatabase, startLocalPostgres } from '../dev/local-postgres.ts';
import { JOB_LIST, JOB_NAMES, jobNamed } from '../lib/jobs/catalog.ts';
import type { JobReport } from '../lib/jobs/types.ts';
import { installLakets } from '../lib/schema/installer.ts';

const started = Date.now();
const say = (text: string) => process.stdout.write(`${text}\n`);

// Quiet Powertools: the demo prints the reports itself.
process.env['POWERTOOLS_DEV'] = 'true';
process.env['POWERTOOLS_LOG_LEVEL'] = 'SILENT';
process.env['POWERTOOLS_METRICS_DISABLED'] = 'true';

say('Starting an embedded PostgreSQL 17 ...');
const server = await startLocalPostgres();
try {
  const database = await createDatabase(server, 'lakets_demo');
  const url = server.url(database);
  const db = new pg.Client({ connectionString: url, options: '-c TimeZone=UTC' });
  await db.connect();
  const sql = (text: string, values?: unknown[]) => db.query(text, values);

  const install = await installLakets(db);
  say(`Installed the LakeTS-compatible schema ${install.laketsVersion} (${install.applied.join(', ')}).`);

  // 12 devices, one reading a minute for 21 days: ~360k rows in a ChronoTable of daily chunks.
  await createChronotable(db, {
    name: 'device_metrics',
    columns: 'device_id text NOT NULL, temperature float8, humidity float8',
    partitions: { days: 21 },
    rows: {
      sql: `SELECT t, 'dev-' || lpad(d::text, 2, '0'),
                   20 + 5 * sin(extract(epoch FROM t) / 43200) + d * 0.1 + random(),
                   40 + 10 * cos(extract(epoch FROM t) / 86400) + random()
              FROM generate_series(date_trunc('minute', now()) - interval '21 days', now(), interval '1 minute') t,
                   generate_series(1, 12) d`,
    },
  });
  const rows = Number((await sql('SELECT count(*) FROM device_metrics')).rows[0].count);

  // Tier after 3 days, drop after 14 days only once proven durable in Unity Catalog.
  await sql(
    `SELECT lakets.add_tiered_retention_policy('device_metrics', interval '3 days', interval '14 days')`,
  );
  await sql(`SELECT lakets.enable_sync('device_metrics')`);

  // Three-level RollUp DAG: per-device minute -> per-device hour -> fleet day.
  await sql(`SELECT lakets.create_rollup('device_1m',
    $$SELECT lakets.time_bucket('1 minute', ts) AS bucket, device_id, avg(temperature) AS avg_temp,
             max(temperature) AS max_temp, count(*) AS samples FROM device_metrics GROUP BY 1, 2$$,
    interval '1 minute', 'device_metrics')`);
  await sql(`SELECT lakets.create_rollup('device_1h',
    $$SELECT lakets.time_bucket('1 hour', bucket) AS bucket, device_id,
             sum(avg_temp * samples) / sum(samples) AS avg_temp, max(max_temp) AS max_temp, sum(samples) AS samples
        FROM _rollup_device_1m GROUP BY 1, 2$$,
    interval '1 hour', NULL, 'public', ARRAY['device_1m'])`);
  await sql(`SELECT lakets.create_rollup('fleet_1d',
    $$SELECT lakets.time_bucket('1 day', bucket) AS bucket, sum(avg_temp * samples) / sum(samples) AS avg_temp,
             max(max_temp) AS max_temp, sum(samples) AS samples FROM _rollup_device_1h GROUP BY 1$$,
    interval '1 day', NULL, 'public', ARRAY['device_1h'])`);
  await sql(`SELECT lakets.enable_rollup_invalidation('device_1m')`);
  await sql(`UPDATE lakets._rollup_registry SET refresh_lag = interval '0'`);

  // The Lakehouse Sync fake (wal2delta): streaming, caught up with everything so far ...
  await installWal2delta(db);
  await syncCaughtUp(db, 'device_metrics');
  // ... then late corrections land in two old chunks and one recent one, which Sync has not shipped yet.
  await sql(`UPDATE device_metrics SET temperature = temperature + 0.5
              WHERE device_id = 'dev-03' AND (ts >= date_trunc('day', now()) - interval '16 days' AND ts < date_trunc('day', now()) - interval '15 days'
                 OR ts >= date_trunc('day', now()) - interval '5 days' AND ts < date_trunc('day', now()) - interval '5 days' + interval '2 hours')`);
  await sql(
    `INSERT INTO device_metrics VALUES (date_trunc('day', now()) - interval '17 days' + interval '9 hours', 'dev-99', 21.5, 40)`,
  );
  await db.end();

  say(
    `Created public.device_metrics: ${rows.toLocaleString('en')} rows over 21 days in daily chunks, a tiered-retention policy`,
  );
  say(
    '(tier after 3 days, drop after 14 days), sync to lakets_cdf._shadow_device_metrics, and RollUps device_1m -> device_1h -> fleet_1d.',
  );
  say(
    'Lakehouse Sync (the wal2delta fixture) is STREAMING and caught up, except for late corrections in three chunks.\n',
  );

  // The real handlers, as Lambda runs them, over a direct connection.
  process.env['LAKETS_DATABASE_URL'] = url;
  const { makeHandler, JobFailed, jobReport, checkConnection } = await import('../lib/job-handler.ts');
  const { getConfig } = await import('../lib/config.ts');
  const { getConnector } = await import('../lib/lakebase/index.ts');
  // What `npm run check` reports for this database, before any job runs.
  const check = await checkConnection(JOB_LIST, getConnector(getConfig()), false);
  const warned = check.items.filter((i) => i.status === 'warn').map((i) => `${i.check}: ${i.detail}`);
  say(
    `Preflight check (npm run check): ${check.status.toUpperCase()}, ${check.totals.pass} pass, ${check.totals.fail} fail, ${check.totals.warn} warn${warned.length > 0 ? ` (${warned.join('; ')})` : ''}.\n`,
  );
  const reports: JobReport[] = [];
  for (const job of JOB_NAMES) {
    let report: JobReport;
    try {
      report = jobReport(await makeHandler(jobNamed(job))(schedulerEvent(job), lambdaContext(job)));
    } catch (error) {
      if (!(error instanceof JobFailed)) throw error;
      report = error.report;
    }
    reports.push(report);
    say(`${formatReport(report)}\n`);
  }

  const after = new pg.Client({ connectionString: url, options: '-c TimeZone=UTC' });
  await after.connect();
  const status = await after.query<{ status: string; chunks: string; rows_kept: string }>(
    `SELECT status, count(*)::text AS chunks, min(range_start)::date || ' .. ' || max(range_start)::date AS rows_kept
       FROM lakets._chunk_metadata GROUP BY status ORDER BY status`,
  );
  say('Chunks now:');
  say(
    table(
      ['status', 'chunks', 'days'],
      status.rows.map((r) => [r.status, r.chunks, r.rows_kept]),
    ),
  );
  const rollups = await after.query<{ name: string; watermark: string; rows: string }>(
    `SELECT name, to_char(watermark, 'YYYY-MM-DD HH24:MI') AS watermark,
            (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %s', rollup_table), false, true, '')))[1]::text AS rows
       FROM lakets._rollup_registry ORDER BY id`,
  );
  say('\nRollUps now:');
  say(
    table(
      ['rollup', 'watermark (UTC)', 'rows'],
      rollups.rows.map((r) => [r.name, r.watermark, r.rows]),
    ),
  );
  await after.end();
  say(
    `\nDone in ${((Date.now() - started) / 1000).toFixed(1)} s. Deferred chunks are not lost: Retention drops them once`,
  );
  say('Lakehouse Sync reports a committed LSN past their last write. Run `npm test` for the full suite.');
  if (reports.some((r) => r.status === 'failed' || r.status === 'partial')) process.exitCode = 1;
} finally {
  await server.stop();
}

// npm run grants -- <role> [--owner <role owning the LakeTS tables>] [--print]
// With LAKETS_DATABASE_URL (an admin connection to the database holding LakeTS): reads the database,
// grants what the installed LakeTS needs for the jobs' role, and prints what it did and why; --print
// only prints the plan. Without it: prints the generic grant list for an admin to run with psql.
import { parseArgs } from 'node:util';
import pg from 'pg';
import { applyGrants, describePlan, GrantsError, grantsScript, planGrants } from '../lib/grants.ts';

const USAGE =
  'usage: npm run grants -- <role> [--owner <owner role>] [--print]\n' +
  "  <role>   the Postgres role the jobs log in as: the service principal's application id, or LAKETS_PG_ROLE\n" +
  '  --owner  the role owning the LakeTS tables; adds GRANT <owner> TO <role> (needed to create/drop partitions)\n' +
  '  --print  with LAKETS_DATABASE_URL: print what would be granted, grant nothing\n' +
  '  LAKETS_DATABASE_URL  an admin connection to the database holding LakeTS: the grants are read from it and applied\n';

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      owner: { type: 'string' },
      print: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const role = positionals[0];
  if (positionals.length !== 1 || role === undefined) {
    process.stderr.write(USAGE);
    return 2;
  }
  const options = values.owner === undefined ? {} : { owner: values.owner };
  const url = process.env['LAKETS_DATABASE_URL'];
  if (!url) {
    process.stdout.write(grantsScript(role, options));
    process.stderr.write(
      'npm run grants: LAKETS_DATABASE_URL is not set, so this is the generic list; set it to an admin connection to the database holding LakeTS and run again: it reads what the installed LakeTS needs (caller-rights DDL, schemas outside public) and grants it\n',
    );
    return 0;
  }
  const admin = new pg.Client({ connectionString: url, application_name: 'lakets-grants' });
  await admin.connect();
  try {
    if (values.print) {
      const plan = await planGrants(admin, role, options);
      process.stdout.write(`${describePlan(plan, 'to run').join('\n')}\n`);
      return 0;
    }
    const { plan, lines, notices } = await applyGrants(admin, role, options);
    process.stdout.write(`${lines.join('\n')}\n`);
    for (const n of notices) process.stdout.write(`-- note: ${n}\n`);
    // Something left to an admin is not success: the jobs would fail until it is done.
    return plan.manual.length > 0 ? 1 : 0;
  } finally {
    await admin.end().catch(() => {});
  }
}

try {
  process.exitCode = await main();
} catch (error) {
  const code = String((error as { code?: unknown }).code ?? '');
  const usage = error instanceof GrantsError || code.startsWith('ERR_PARSE_ARGS');
  // A malformed URL's error would echo it, password included: never print that one.
  const message =
    code === 'ERR_INVALID_URL'
      ? 'LAKETS_DATABASE_URL is not a valid postgres:// URL'
      : error instanceof Error
        ? (error.message.split('\n')[0] ?? '')
        : String(error);
  process.stderr.write(`npm run grants: ${message}\n${usage ? USAGE : ''}`);
  process.exitCode = usage ? 2 : 1;
}

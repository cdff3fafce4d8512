// npm run grants -- <role> [--owner <role owning the LakeTS tables>]
// Prints the SQL an admin runs so that the jobs' Postgres role can do what the four jobs do.
import { parseArgs } from 'node:util';
import { GrantsError, grantsScript } from '../lib/grants.ts';

const USAGE =
  'usage: npm run grants -- <role> [--owner <owner role>]\n' +
  "  <role>   the Postgres role the jobs log in as: the service principal's application id, or LAKETS_PG_ROLE\n" +
  '  --owner  the role owning the LakeTS tables; adds GRANT <owner> TO <role> (needed to create/drop partitions)\n';

try {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { owner: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(USAGE);
  } else if (positionals.length !== 1 || positionals[0] === undefined) {
    process.stderr.write(USAGE);
    process.exitCode = 2;
  } else {
    process.stdout.write(
      grantsScript(positionals[0], values.owner === undefined ? {} : { owner: values.owner }),
    );
  }
} catch (error) {
  const message = error instanceof GrantsError || error instanceof TypeError ? error.message : String(error);
  process.stderr.write(`npm run grants: ${message}\n${USAGE}`);
  process.exitCode = 2;
}

// `npm run lakets:install`: installs (or upgrades) the LakeTS-compatible schema in LAKETS_DATABASE_URL.
import pg from 'pg';
import { InstallRefused, installLakets } from '../lib/schema/installer.ts';

const url = process.env['LAKETS_DATABASE_URL'];
if (!url) {
  console.error(
    'lakets:install: set LAKETS_DATABASE_URL to the postgres:// URL of the database (as a role that may create schemas)',
  );
  process.exit(2);
}
const client = new pg.Client({ connectionString: url, application_name: 'lakets-install' });
try {
  await client.connect();
  const result = await installLakets(client);
  console.log(
    result.applied.length === 0
      ? `LakeTS-compatible schema ${result.laketsVersion} is already installed (${result.installed.join(', ')}); nothing changed`
      : `installed LakeTS-compatible schema ${result.laketsVersion}: applied ${result.applied.join(', ')}`,
  );
} catch (error) {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`lakets:install: ${error instanceof InstallRefused ? 'refused: ' : ''}${message}`);
  process.exitCode = 1;
} finally {
  await client.end().catch(() => {});
}

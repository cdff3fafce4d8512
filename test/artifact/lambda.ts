// The artifact test's world: the connection tests' fakes and database (test/lakebase/world.ts),
// as a function process reaches them (dev/lambda-runner.ts), with 127.0.0.1:5432 forwarded to the
// test cluster.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fakeTls } from '../../dev/fake-tls.ts';
import { type Fakes, fakesContext, fakesEnvironment, forwardLakebasePort } from '../../dev/lambda-runner.ts';
import { PROJECT, type World } from '../lakebase/world.ts';

export interface FunctionWorld {
  /** Context for synth: the template then names the world's project, secret and database. */
  context: Record<string, unknown>;
  /** Environment of a function process on top of the template's and Lambda's own. */
  environment: Record<string, string>;
  close(): Promise<void>;
}

export async function functionWorld(world: World): Promise<FunctionWorld> {
  const dir = mkdtempSync(join(tmpdir(), 'lakets-artifact-'));
  const fakes: Fakes = {
    databricksUrl: world.fake.url,
    secretsManagerUrl: world.sm.url,
    region: world.sm.region,
    // The cluster's CA and the fakes' throwaway CA (dev/fake-tls.ts): what the function must trust.
    trust: [world.db.info.caPem, fakeTls().caPem],
  };
  const forwarder = await forwardLakebasePort(world.db.info.port);
  return {
    context: fakesContext(fakes, { project: PROJECT, secretName: world.secretId, database: world.db.name }),
    environment: fakesEnvironment(fakes, dir),
    async close() {
      await new Promise<void>((resolve) => forwarder.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

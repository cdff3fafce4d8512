// CDK entry point (cdk.json: `node infra/app.ts`). Example:
//   npx cdk synth -c lakebaseProject=demo -c databricksHost=https://x.cloud.databricks.com -c spSecretName=lakets/sp
import { App } from 'aws-cdk-lib';
import { ConfigError } from './config.ts';
import { defineApp } from './stack.ts';

const app = new App();
try {
  defineApp(app);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  // One line per problem, no stack trace: these are usage errors, not bugs.
  console.error(error.problems.map((p) => `LakeTS config: ${p}`).join('\n'));
  process.exit(1);
}
app.synth();

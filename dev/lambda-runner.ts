// Runs synthesized Lambda functions the way Lambda runs them: the asset folder `cdk synth` wrote, the
// template's Handler, Environment and Timeout, loaded by AWS's own runtime interface client
// (aws-lambda-ric) in a fresh Node process that polls our Runtime API stand-in (dev/runtime-api.ts).
// Used by the artifact test (test/artifact) and the runtime benchmark (bench/runtime.ts).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App } from 'aws-cdk-lib';
import { defineApp } from '../infra/stack.ts';
import { JOB_NAMES, type JobName } from '../lib/jobs/catalog.ts';
import { type RuntimeApi, startRuntimeApi } from './runtime-api.ts';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const RIC_DIR = join(REPO_ROOT, 'node_modules', 'aws-lambda-ric');
const RIC = join(RIC_DIR, 'index.mjs');
/** Set by CI (.ci/run), which installs the toolchain: a missing runtime client then fails, not skips. */
export const REQUIRE_RUNTIME_CLIENT = 'LAKETS_REQUIRE_RUNTIME_CLIENT';
/** Lakebase endpoints listen on 5432; the deployed code has no other port to use. */
export const LAKEBASE_PORT = 5432;

/**
 * Why the runtime client cannot run here, or undefined when it can. It is an optional dependency:
 * its install builds curl and a native addon from source, and `npm ci` leaves it out where that
 * build fails (no cmake, C++ compiler, make or python3) or where npm runs on a Node older than 22;
 * on macOS it installs without the addon. `npm run runtime-client` installs it.
 */
export function runtimeClientMissing(): string | undefined {
  const fix = 'it builds from source: apt-get install cmake g++ make python3, then npm run runtime-client';
  if (!existsSync(RIC)) return `aws-lambda-ric is not installed (${fix})`;
  if (existsSync(join(RIC_DIR, 'rapid-client.node'))) return undefined;
  return process.platform === 'darwin'
    ? "aws-lambda-ric has no native client on macOS (it builds on Linux only, Lambda's OS)"
    : `aws-lambda-ric is installed without its native client rapid-client.node (${fix})`;
}

/** True when the caller must fail rather than skip without the runtime client (CI). */
export function runtimeClientRequired(): boolean {
  return process.env[REQUIRE_RUNTIME_CLIENT] === '1';
}

export interface SynthesizedFunction {
  job: JobName | 'empty';
  functionName: string;
  /** The asset folder CDK would zip and upload (index.mjs, index.mjs.map). */
  codeDir: string;
  handler: string;
  environment: Record<string, string>;
  timeoutSeconds: number;
  memoryMb: number;
  runtime: string;
  logFormat: string | undefined;
}

export interface Synthesized {
  functions: Map<JobName, SynthesizedFunction>;
  outdir: string;
}

/**
 * One `cdk synth` of the real app (in-process, as test/infra does, cdk-nag included: esbuild bundles
 * locally, nothing reaches AWS or Docker), and each function's asset folder from the asset manifest.
 */
export function synthFunctions(context: Record<string, unknown>): Synthesized {
  const app = new App({ context });
  const stack = defineApp(app);
  const assembly = app.synth();
  const template = assembly.getStackByName(stack.stackName).template;
  const outdir = assembly.directory;
  const manifest = JSON.parse(readFileSync(join(outdir, `${stack.stackName}.assets.json`), 'utf8')) as {
    files: Record<string, { source: { path: string }; destinations: Record<string, { objectKey: string }> }>;
  };
  const folderOfKey = new Map<string, string>();
  for (const file of Object.values(manifest.files)) {
    for (const d of Object.values(file.destinations))
      folderOfKey.set(d.objectKey, join(outdir, file.source.path));
  }
  const functions = new Map<JobName, SynthesizedFunction>();
  // biome-ignore lint/suspicious/noExplicitAny: a CloudFormation template is untyped JSON
  for (const resource of Object.values(template['Resources'] as Record<string, any>)) {
    if (resource.Type !== 'AWS::Lambda::Function') continue;
    const p = resource.Properties;
    const job = JOB_NAMES.find((j) => p.FunctionName === `${stack.stackName}-${j}`);
    if (!job) continue;
    const key = p.Code?.S3Key;
    const codeDir = typeof key === 'string' ? folderOfKey.get(key) : undefined;
    if (!codeDir) throw new Error(`${job}: no asset folder for ${JSON.stringify(p.Code)}`);
    functions.set(job, {
      job,
      functionName: p.FunctionName,
      codeDir,
      handler: p.Handler,
      environment: p.Environment?.Variables ?? {},
      timeoutSeconds: p.Timeout,
      memoryMb: p.MemorySize,
      runtime: p.Runtime,
      logFormat: p.LoggingConfig?.LogFormat,
    });
  }
  return { functions, outdir };
}

/** Where a function process finds the fakes. */
export interface Fakes {
  /** The fake workspace's URL (DATABRICKS_HOST). */
  databricksUrl: string;
  secretsManagerUrl: string;
  region: string;
  /** PEM certificates the process must trust besides Node's roots (the cluster's and the fakes' CA). */
  trust: string[];
}

/**
 * The one place that says how a function process reaches the fakes, on top of the template's
 * environment: the Secrets Manager endpoint, and NODE_EXTRA_CA_CERTS for what a deployed function would trust anyway
 * (Lakebase's and AWS's public CAs) and our stand-ins do not have. `dir` holds the CA file.
 */
export function fakesEnvironment(fakes: Fakes, dir: string): Record<string, string> {
  const caFile = join(dir, 'extra-ca.pem');
  writeFileSync(caFile, [...new Set(fakes.trust)].join('\n'));
  return {
    AWS_ENDPOINT_URL_SECRETS_MANAGER: fakes.secretsManagerUrl,
    AWS_REGION: fakes.region,
    AWS_DEFAULT_REGION: fakes.region,
    NODE_EXTRA_CA_CERTS: caFile,
    // No ~/.databrickscfg or ~/.aws of this machine's user.
    HOME: dir,
  };
}

/** The synth context for the fakes: the template then names their project, secret and database. */
export function fakesContext(
  fakes: Fakes,
  names: { project: string; secretName: string; database: string },
): Record<string, unknown> {
  return {
    lakebaseProject: names.project,
    databricksHost: fakes.databricksUrl,
    spSecretName: names.secretName,
    database: names.database,
  };
}

/**
 * 127.0.0.1:5432 forwarded to a local cluster on another port: the fake's endpoints are `localhost`
 * and the deployed code connects on 5432. TLS stays end to end (the forwarder only copies bytes).
 */
export async function forwardLakebasePort(clusterPort: number): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((inbound) => {
    const outbound = new Socket();
    sockets.add(inbound).add(outbound);
    outbound.connect(clusterPort, '127.0.0.1');
    inbound.pipe(outbound).pipe(inbound);
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
      sockets.delete(inbound);
      sockets.delete(outbound);
    };
    inbound.on('error', drop).on('close', drop);
    outbound.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE'
          ? new Error(
              `127.0.0.1:${LAKEBASE_PORT} is in use: the artifact test forwards it to the test cluster (the deployed code connects to Lakebase on ${LAKEBASE_PORT}); stop what listens there`,
            )
          : error,
      ),
    );
    server.listen(LAKEBASE_PORT, '127.0.0.1', resolve);
  });
  const close = server.close.bind(server);
  return Object.assign(server, {
    close(cb?: (err?: Error) => void) {
      for (const s of sockets) s.destroy();
      return close(cb);
    },
  });
}

export interface RunningFunction {
  fn: SynthesizedFunction;
  api: RuntimeApi;
  /** Every line the process wrote, stdout and stderr, in order of arrival. */
  lines: Array<{ stream: 'stdout' | 'stderr'; text: string }>;
  /** Invokes the function; rejects, with what it wrote, if the process has exited or exits meanwhile. */
  invoke: RuntimeApi['invoke'];
  /** ms from spawn until the runtime client first asked for an event, or its init error. */
  init: Awaited<ReturnType<RuntimeApi['ready']>>;
  stop(): Promise<void>;
}

/**
 * The execution role's temporary credentials as Lambda hands them over (dummies: the fake only checks
 * that requests are signed).
 */
export const ROLE_CREDENTIALS = {
  AWS_ACCESS_KEY_ID: 'ASIAARTIFACTTEST0000',
  AWS_SECRET_ACCESS_KEY: 'artifact-test-secret-access-key-not-real',
  AWS_SESSION_TOKEN: 'artifact-test-session-token-not-real',
} as const;

/** What Lambda puts in a function's environment besides the template's variables. */
function lambdaEnvironment(fn: SynthesizedFunction, api: RuntimeApi): Record<string, string> {
  return {
    AWS_LAMBDA_RUNTIME_API: api.address,
    _HANDLER: fn.handler,
    LAMBDA_TASK_ROOT: fn.codeDir,
    LAMBDA_RUNTIME_DIR: join(REPO_ROOT, 'node_modules', 'aws-lambda-ric'),
    AWS_EXECUTION_ENV: `AWS_Lambda_${fn.runtime}`,
    AWS_LAMBDA_FUNCTION_NAME: fn.functionName,
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(fn.memoryMb),
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${fn.functionName}`,
    AWS_LAMBDA_LOG_STREAM_NAME: '2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef',
    ...(fn.logFormat ? { AWS_LAMBDA_LOG_FORMAT: fn.logFormat } : {}),
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    ...ROLE_CREDENTIALS,
    TZ: ':UTC',
    LANG: 'en_US.UTF-8',
    PATH: '/usr/local/bin:/usr/bin:/bin',
  };
}

/** Starts one cold function instance; resolves once init has finished (or failed). */
export async function startFunction(
  fn: SynthesizedFunction,
  world: Record<string, string>,
): Promise<RunningFunction> {
  const missing = runtimeClientMissing();
  if (missing) throw new Error(missing);
  const startedAt = performance.now();
  const api = await startRuntimeApi({ functionName: fn.functionName, startedAt });
  const env = { ...fn.environment, ...lambdaEnvironment(fn, api), ...world };
  const child: ChildProcess = spawn(process.execPath, [RIC], {
    cwd: fn.codeDir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: RunningFunction['lines'] = [];
  for (const stream of ['stdout', 'stderr'] as const) {
    let rest = '';
    child[stream]?.on('data', (chunk: Buffer) => {
      const parts = (rest + chunk.toString('utf8')).split('\n');
      rest = parts.pop() ?? '';
      for (const text of parts) if (text !== '') lines.push({ stream, text });
    });
    child[stream]?.on('end', () => {
      if (rest !== '') lines.push({ stream, text: rest });
    });
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const died = (when: string) =>
    exited.then(() => {
      throw new Error(
        `${fn.job}: the runtime client exited ${when}:\n${lines.map((l) => l.text).join('\n')}`,
      );
    });
  const init = await Promise.race([api.ready(), died('during init')]);
  return {
    fn,
    api,
    lines,
    init,
    invoke: (event, options) => Promise.race([api.invoke(event, options), died('before it answered')]),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      await api.close();
    },
  };
}

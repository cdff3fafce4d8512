// The construct as a team gets it: `npm run package`, `npm pack`, the tarball installed into a scratch
// CDK app in a temporary folder (npm, preferring its cache), `cdk synth` there with two targets (one
// Autoscaling project, one Provisioned instance), and the app's TypeScript checked against the
// package's declarations. Nothing here reads the checkout's sources at synth: the bundles must come
// from the installed package.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { estateScheduleName } from '../../infra/lakets-jobs.ts';
import { JOB_LIST, JOB_NAMES } from '../../lib/jobs/catalog.ts';
import { assetDirOf, bundleOf, expectOwnJobOnly } from '../infra/synth.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const installed = (name: string): string =>
  JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version;

const TARGETS = [
  {
    name: 'prod',
    databricksHost: 'https://a.cloud.databricks.com',
    spSecretName: 'lakets/prod',
    lakebaseProject: 'prod',
  },
  {
    name: 'legacy',
    databricksHost: 'https://b.cloud.databricks.com',
    spSecretName: 'lakets/legacy',
    lakebaseInstance: 'legacy-instance',
    database: 'metrics',
  },
];

const APP = `import { readFileSync } from 'node:fs';
import { App, Stack } from 'aws-cdk-lib';
import { LakeTsJobs, type LakeTsJobsProps, parseTargets } from 'lakets-jobs-aws';

const app = new App();
const stack = new Stack(app, 'DataPlatform', { env: { account: '123456789012', region: 'eu-west-1' } });
const props: LakeTsJobsProps = {
  targets: parseTargets(JSON.parse(readFileSync('targets.json', 'utf8')), 'targets.json'),
  namePrefix: 'lakets',
  alarms: { kind: 'email', email: 'oncall@example.com' },
};
new LakeTsJobs(stack, 'LakeTs', props);
app.synth();
`;

// Each @ts-expect-error must meet a type error: were the props untyped (any), tsc would report the
// directive unused and fail.
const TYPED = `import { App, Stack } from 'aws-cdk-lib';
import { LakeTsJobs, type TargetEntry } from 'lakets-jobs-aws';

const stack = new Stack(new App(), 'S');
const target: TargetEntry = { name: 'a', lakebaseProject: 'p', databricksHost: 'https://x', spSecretName: 's' };
// @ts-expect-error namePrefix is required
new LakeTsJobs(stack, 'A', { targets: [target] });
// @ts-expect-error alarms is email, topic or none
new LakeTsJobs(stack, 'B', { targets: [target], namePrefix: 'b', alarms: { kind: 'pager' } });
// @ts-expect-error a target's name is a string
new LakeTsJobs(stack, 'C', { targets: [{ name: 1 }], namePrefix: 'c' });
export const jobs: readonly { fn: { functionArn: string } }[] = new LakeTsJobs(stack, 'D', {
  targets: [target],
  namePrefix: 'd',
}).jobs;
`;

/** Runs a command; returns its stdout, and on failure throws with its output. */
function run(cmd: string, args: string[], cwd: string): string {
  // Not what `npm test` sets about this project (the scratch app is its own); the registry, cache and
  // proxy settings npm may be given through the environment stay.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) =>
        !/^(npm_package_|npm_lifecycle_|npm_config_(local_|global_)?prefix$|npm_command$|init_cwd$)/i.test(k),
    ),
  );
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    env: { ...env, CDK_DISABLE_CLI_TELEMETRY: 'true' },
    maxBuffer: 64 * 2 ** 20,
  });
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.status}:\n${out.slice(-4000)}`);
  }
  return r.stdout;
}

describe('the packed package in a scratch CDK app', () => {
  let dir: string;
  let tarball: string;
  // biome-ignore lint/suspicious/noExplicitAny: a CloudFormation template is untyped JSON
  let template: { Resources: Record<string, { Type: string; Properties: Record<string, any> }> };
  let outdir: string;
  /** The template's functions, each with its code's S3 key (its asset folder in the assembly). */
  const functions = () =>
    Object.values(template.Resources).filter((r) => r.Type === 'AWS::Lambda::Function') as {
      Type: string;
      // biome-ignore lint/suspicious/noExplicitAny: a CloudFormation template is untyped JSON
      Properties: Record<string, any> & { Code: { S3Key: string } };
    }[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'lakets-scratch-app-'));
    // Outside the checkout, or a module missing from the package could resolve from its node_modules.
    expect(relative(ROOT, dir).startsWith('..')).toBe(true);
    run(process.execPath, [join(ROOT, 'scripts', 'package.ts')], ROOT);
    const packed = JSON.parse(
      run('npm', ['pack', join(ROOT, 'dist', 'package'), '--pack-destination', dir, '--json'], ROOT),
    );
    tarball = join(dir, packed[0].filename);
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({
        name: 'scratch-app',
        private: true,
        type: 'module',
        dependencies: {
          'lakets-jobs-aws': `file:./${packed[0].filename}`,
          'aws-cdk-lib': installed('aws-cdk-lib'),
          constructs: installed('constructs'),
        },
      }),
    );
    run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], dir);
    writeFileSync(join(dir, 'targets.json'), JSON.stringify(TARGETS));
    writeFileSync(join(dir, 'app.ts'), APP);
    writeFileSync(join(dir, 'typed.ts'), TYPED);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'es2024',
          module: 'nodenext',
          moduleResolution: 'nodenext',
          strict: true,
          noEmit: true,
          allowImportingTsExtensions: true,
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules', '@types')],
        },
        include: ['*.ts'],
      }),
    );
    outdir = join(dir, 'cdk.out');
    const cdk = join(ROOT, 'node_modules', 'aws-cdk', 'bin', 'cdk');
    run(
      process.execPath,
      [
        cdk,
        'synth',
        '--app',
        `${process.execPath} app.ts`,
        '-o',
        outdir,
        '--quiet',
        '--no-notices',
        '--no-version-reporting',
      ],
      dir,
    );
    template = JSON.parse(readFileSync(join(outdir, 'DataPlatform.template.json'), 'utf8'));
  }, 300_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ships compiled code and declarations, no sources, tests or dev tooling', () => {
    const listing = run('tar', ['-tzf', tarball], dir).trim().split('\n');
    expect(listing).toContain('package/infra/index.js');
    expect(listing).toContain('package/infra/index.d.ts');
    for (const job of JOB_NAMES) expect(listing).toContain(`package/functions/${job}.js`);
    expect(listing.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(listing.filter((f) => /^package\/(test|dev|bench|scripts|lib\/schema)\//.test(f))).toEqual([]);
    const manifest = JSON.parse(
      readFileSync(join(dir, 'node_modules', 'lakets-jobs-aws', 'package.json'), 'utf8'),
    );
    // The runtime client builds from source: never part of a team's install.
    expect(Object.keys(manifest)).not.toContain('optionalDependencies');
    expect(Object.keys(manifest)).not.toContain('devDependencies');
    expect(Object.keys(manifest.peerDependencies).sort()).toEqual(['aws-cdk-lib', 'constructs']);
  });

  it('synths four functions and one schedule per (target, job), each naming its target', () => {
    const of = (type: string) => Object.values(template.Resources).filter((r) => r.Type === type);
    expect(of('AWS::Lambda::Function')).toHaveLength(4);
    const pairs = of('AWS::Scheduler::Schedule').map((s) => {
      const target = JSON.parse(s.Properties['Target'].Input).target as string;
      return `${target}/${s.Properties['Name']}`;
    });
    // <target>-<job>-<5 hex of the name prefix>: apart from another deployment's schedules.
    expect(pairs.sort()).toEqual(
      TARGETS.flatMap((t) =>
        JOB_NAMES.map((j) => `${t.name}/${estateScheduleName('lakets', t.name, j)}`),
      ).sort(),
    );
  });

  it('bundles each function from the installed package: its own job, the targets compiled in', () => {
    for (const fn of functions()) {
      const name = JOB_LIST.find((j) => fn.Properties['FunctionName'] === `lakets-${j.name}`)?.name;
      const code = bundleOf(outdir, fn);
      expectOwnJobOnly(code, name);
      // The targets as a JSON literal (a bundle without them names these keys, never these values).
      expect(code).toMatch(/lakebaseInstance\\?":\\?"legacy-instance/);
      expect(code).toMatch(/spSecretName\\?":\\?"lakets\/prod/);
      // The source map names the files esbuild read, relative to the package's .bundle/ (where the
      // construct builds): the installed package's and its dependencies', never this checkout's.
      const assetDir = assetDirOf(outdir, fn);
      const map = JSON.parse(readFileSync(join(assetDir, 'index.mjs.map'), 'utf8')) as { sources: string[] };
      const pkg = join(dir, 'node_modules', 'lakets-jobs-aws');
      const read = map.sources.map((s) => resolve(pkg, '.bundle', s));
      expect(read).toContain(join(pkg, 'functions', `${name}.js`));
      expect(read.filter((f) => !f.startsWith(join(dir, 'node_modules') + sep))).toEqual([]);
      expect(readdirSync(assetDir).sort()).toEqual(['index.mjs', 'index.mjs.map']);
    }
  });

  it('loads each bundle as Lambda would import it, exporting its handler', async () => {
    for (const fn of functions()) {
      const assetDir = assetDirOf(outdir, fn);
      expect(fn.Properties['Handler']).toBe('index.handler');
      const mod = await import(pathToFileURL(join(assetDir, 'index.mjs')).href);
      expect(typeof mod.handler).toBe('function');
    }
  });

  it("type-checks the app against the package's declarations, wrong props refused", () => {
    run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], dir);
  });
});

// 1. Cold start: each functions/*.ts bundled with esbuild with the options CDK bundles it with
// (infra/bundling.ts: ESM, minified keeping names, target node24, the createRequire banner, pg-native external, source map),
// its size, and the time a fresh Node process takes to import it, as a ratio to a bare `node -e ''`.
// Where a target is missed, the metafile says which packages the bytes come from.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';
import { esbuildOptions } from '../infra/bundling.ts';
import {
  fmtInt,
  fmtMs,
  fmtRatio,
  median,
  REPO_ROOT,
  type Row,
  type SectionResult,
  say,
  section,
} from './lib.ts';

const MAX_BYTES = 1_000_000;
const MAX_IMPORT_RATIO = 3;

interface Bundle {
  name: string;
  file: string;
  bytes: number;
  mapBytes: number;
  metafile: esbuild.Metafile;
}

// What-if entries, bundled the same way, to attribute bytes and import time to the dependencies the
// handlers pull in (and to size the obvious alternative for the Databricks SDK).
const WHAT_IF: Array<{ name: string; what: string; contents: string }> = [
  {
    name: 'whatif-databricks-workspaceclient',
    what: '@databricks/sdk-experimental WorkspaceClient + ApiError/HttpError (what lib/lakebase imports)',
    contents: "export { WorkspaceClient, ApiError, HttpError } from '@databricks/sdk-experimental';",
  },
  {
    name: 'whatif-databricks-apiclient',
    what: 'the same SDK, ApiClient + Config + apierr only (deep imports, no generated services)',
    contents: [
      "export { ApiClient } from '@databricks/sdk-experimental/dist/api-client.js';",
      "export { Config } from '@databricks/sdk-experimental/dist/config/Config.js';",
      "export { ApiError, HttpError } from '@databricks/sdk-experimental/dist/apierr.js';",
    ].join('\n'),
  },
  {
    name: 'whatif-secrets-manager',
    what: '@aws-sdk/client-secrets-manager SecretsManagerClient + GetSecretValueCommand',
    contents:
      "export { SecretsManagerClient, GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';",
  },
  {
    name: 'whatif-powertools-middy',
    what: 'Powertools Logger + Metrics (+ middlewares) + middy',
    contents: [
      "export { Logger } from '@aws-lambda-powertools/logger';",
      "export { Metrics } from '@aws-lambda-powertools/metrics';",
      "export { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';",
      "export { logMetrics } from '@aws-lambda-powertools/metrics/middleware';",
      "export { default as middy } from '@middy/core';",
    ].join('\n'),
  },
  { name: 'whatif-pg', what: 'pg', contents: "export { default as pg } from 'pg';" },
  {
    name: 'whatif-handler-without-sdks',
    what: 'the tiering handler with both SDKs stubbed out (floor for fetch-based OAuth/REST + no AWS SDK)',
    contents: "export { handler } from './functions/tiering.ts';",
  },
];

// For the last what-if: the two SDK packages replaced by empty classes of the names lib/ imports.
const stubSdks: esbuild.Plugin = {
  name: 'stub-sdks',
  setup(build) {
    build.onResolve(
      { filter: /^(@databricks\/sdk-experimental|@aws-sdk\/client-secrets-manager)$/ },
      (args) => ({
        path: args.path,
        namespace: 'stub',
      }),
    );
    build.onLoad({ filter: /.*/, namespace: 'stub' }, () => ({
      contents: [
        'export class WorkspaceClient {}',
        'export class ApiError extends Error {}',
        'export class HttpError extends Error {}',
        'export class SecretsManagerClient {}',
        'export class GetSecretValueCommand {}',
      ].join('\n'),
      loader: 'js',
    }));
  },
};

async function bundle(name: string, outDir: string, stdin?: string): Promise<Bundle> {
  const dir = join(outDir, name);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'index.mjs'); // what CDK names an ESM bundle
  const result = await esbuild.build({
    ...(stdin === undefined
      ? { entryPoints: [join(REPO_ROOT, 'functions', `${name}.ts`)] }
      : { stdin: { contents: stdin, resolveDir: REPO_ROOT, sourcefile: `${name}.ts`, loader: 'ts' } }),
    ...esbuildOptions(),
    outfile: file,
    metafile: true,
    logLevel: 'silent',
    ...(name === 'whatif-handler-without-sdks' ? { plugins: [stubSdks] } : {}),
  });
  return {
    name,
    file,
    bytes: statSync(file).size,
    mapBytes: statSync(`${file}.map`).size,
    metafile: result.metafile,
  };
}

/** The package an input path belongs to (`@scope/name` or `name`), or the project directory. */
function packageOf(path: string): string {
  const at = path.lastIndexOf('node_modules/');
  if (at < 0) return `(project) ${path.split('/')[0] ?? path}/`;
  const parts = path.slice(at + 'node_modules/'.length).split('/');
  return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? path);
}

function topPackages(b: Bundle, n: number): Array<{ pkg: string; bytes: number }> {
  const output = Object.values(b.metafile.outputs).find((o) => o.entryPoint !== undefined);
  const byPkg = new Map<string, number>();
  for (const [path, input] of Object.entries(output?.inputs ?? {})) {
    byPkg.set(packageOf(path), (byPkg.get(packageOf(path)) ?? 0) + input.bytesInOutput);
  }
  return [...byPkg.entries()]
    .map(([pkg, bytes]) => ({ pkg, bytes }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, n);
}

const ENV = {
  PATH: process.env['PATH'] ?? '/usr/bin:/bin',
  // What the deployed function has (infra/job.ts), minus NODE_OPTIONS, which the variants set.
  POWERTOOLS_SERVICE_NAME: 'bench',
  POWERTOOLS_METRICS_NAMESPACE: 'LakeTS',
  POWERTOOLS_LOG_LEVEL: 'INFO',
};

/** Wall time of one fresh `node -e <code>` (spawn to exit). */
function nodeRun(code: string, nodeOptions?: string): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['-e', code], {
    env: nodeOptions ? { ...ENV, NODE_OPTIONS: nodeOptions } : ENV,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const ms = performance.now() - t0;
  if (r.status !== 0)
    throw new Error(`node -e ${code} failed (${r.status}): ${r.stderr.toString().slice(0, 500)}`);
  return ms;
}

const importCode = (file: string, check = true) =>
  `import(${JSON.stringify(pathToFileURL(file).href)}).then((m) => { ${check ? "if (typeof m.handler !== 'function') process.exit(3);" : ''} })`;

async function main(ctx: { quick: boolean; tmp: string }): Promise<SectionResult> {
  const outDir = join(ctx.tmp, 'bundles');
  const names = readdirSync(join(REPO_ROOT, 'functions'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.slice(0, -3))
    .sort();
  const bundles: Bundle[] = [];
  for (const name of names) bundles.push(await bundle(name, outDir));
  say(`bundled ${bundles.map((b) => `${b.name} ${fmtInt(b.bytes)} B`).join(', ')}`);

  // Interleaved rounds (bare, then each bundle plain and as deployed), so drift hits all alike.
  const runs = ctx.quick ? 7 : 15;
  const bare: number[] = [];
  const plain = new Map<string, number[]>(bundles.map((b) => [b.name, []]));
  const deployed = new Map<string, number[]>(bundles.map((b) => [b.name, []]));
  nodeRun(''); // warm the page cache for the node binary
  for (const b of bundles) nodeRun(importCode(b.file));
  for (let i = 0; i < runs; i++) {
    bare.push(nodeRun(''));
    for (const b of bundles) {
      plain.get(b.name)?.push(nodeRun(importCode(b.file)));
      deployed.get(b.name)?.push(nodeRun(importCode(b.file), '--enable-source-maps'));
    }
  }
  const bareMs = median(bare);
  say(`bare node -e '': median ${fmtMs(bareMs)} of ${runs}`);

  const rows: Row[] = [];
  const notes: string[] = [];
  notes.push(`bare \`node -e ''\`: median ${fmtMs(bareMs)} of ${runs} runs (Node ${process.versions.node})`);
  for (const b of bundles) {
    const p = median(plain.get(b.name) ?? []);
    const d = median(deployed.get(b.name) ?? []);
    rows.push({
      section: 'cold-start',
      measurement: `${b.name}: bundle size (minified, without .map)`,
      figure: `${fmtInt(b.bytes)} B (map ${fmtInt(b.mapBytes)} B)`,
      target: '< 1 MB',
      met: b.bytes < MAX_BYTES,
    });
    rows.push({
      section: 'cold-start',
      measurement: `${b.name}: import in a fresh node / bare node`,
      figure: `${fmtRatio(p / bareMs)}x (${fmtMs(p)} vs ${fmtMs(bareMs)})`,
      target: '< 3x',
      met: p / bareMs < MAX_IMPORT_RATIO,
    });
    rows.push({
      section: 'cold-start',
      measurement: `${b.name}: same, as deployed (NODE_OPTIONS=--enable-source-maps)`,
      figure: `${fmtRatio(d / bareMs)}x (${fmtMs(d)})`,
      target: '< 3x',
      met: d / bareMs < MAX_IMPORT_RATIO,
    });
  }

  const missed = rows.some((r) => r.met === false);
  if (missed) {
    // The four bundles share everything but a line; one breakdown (the largest) stands for all.
    const largest = [...bundles].sort((a, b) => b.bytes - a.bytes)[0] as Bundle;
    notes.push(
      `largest bundle ${largest.name}: ${fmtInt(largest.bytes)} B; bytes in the output by package (esbuild metafile):`,
    );
    for (const { pkg, bytes } of topPackages(largest, 12)) {
      notes.push(
        `  ${pkg.padEnd(44)} ${fmtInt(bytes).padStart(10)} B  ${((bytes / largest.bytes) * 100).toFixed(1)}%`,
      );
    }
    // Which import chains pull the biggest packages in.
    const output = Object.values(largest.metafile.outputs).find((o) => o.entryPoint !== undefined);
    const inputs = largest.metafile.inputs;
    const importers = new Map<string, Set<string>>();
    for (const [path, input] of Object.entries(inputs)) {
      for (const imp of input.imports) {
        if (!imp.path || !(imp.path in inputs)) continue;
        const from = packageOf(path);
        const to = packageOf(imp.path);
        if (from !== to) {
          if (!importers.has(to)) importers.set(to, new Set());
          importers.get(to)?.add(from);
        }
      }
    }
    for (const { pkg } of topPackages(largest, 5)) {
      const by = [...(importers.get(pkg) ?? [])].sort();
      if (by.length > 0) notes.push(`  ${pkg} is imported by: ${by.join(', ')}`);
    }
    if (output)
      notes.push(
        `  (${Object.keys(output.inputs).length} input files in ${relative(ctx.tmp, largest.file)})`,
      );

    // Attribution of size and import time: each dependency alone, bundled the same way.
    const whatIf: Bundle[] = [];
    for (const w of WHAT_IF) whatIf.push(await bundle(w.name, outDir, w.contents));
    const times = new Map<string, number[]>(whatIf.map((b) => [b.name, []]));
    const bare2: number[] = [];
    for (const b of whatIf) nodeRun(importCode(b.file, false));
    for (let i = 0; i < runs; i++) {
      bare2.push(nodeRun(''));
      for (const b of whatIf) times.get(b.name)?.push(nodeRun(importCode(b.file, false)));
    }
    const bare2Ms = median(bare2);
    const handlerMs = median(plain.get(largest.name) ?? []);
    notes.push(
      `each dependency alone, bundled the same way: size, and import time above bare node (the handler: +${fmtMs(handlerMs - bareMs)}):`,
    );
    for (const [i, b] of whatIf.entries()) {
      const ms = median(times.get(b.name) ?? []);
      notes.push(
        `  ${(WHAT_IF[i]?.what ?? b.name).padEnd(92)} ${fmtInt(b.bytes).padStart(10)} B  +${fmtMs(ms - bare2Ms)} (${fmtRatio(ms / bare2Ms)}x bare)`,
      );
    }
  }
  return { rows, notes };
}

await section('cold-start', main);

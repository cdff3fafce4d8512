// `npm run package`: the construct as an npm package in dist/package (then `npm pack dist/package`).
// Its own manifest, not this repository's: the dev tooling, the embedded Postgres and the runtime
// client the tests use (an optional dependency that builds from source) stay out of a team's install.
// The package holds the compiled construct and the compiled functions, which esbuild (a dependency)
// bundles at the app's synth, the app's targets compiled in.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'dist', 'package');
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const dev: Record<string, string> = manifest.devDependencies;
const installed = (name: string): string =>
  JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;

rmSync(out, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
  {
    cwd: root,
    stdio: 'inherit',
  },
);
const pkg = {
  name: manifest.name,
  version: manifest.version,
  description: manifest.description,
  license: manifest.license,
  type: 'module',
  engines: manifest.engines,
  // Not published to a registry yet: `npm publish` refuses, `npm pack` works.
  private: true,
  main: './infra/index.js',
  types: './infra/index.d.ts',
  exports: { '.': { types: './infra/index.d.ts', default: './infra/index.js' } },
  // What the functions import (bundled into them at synth) and the bundler itself, at exactly the
  // versions this checkout installed and tested (their own dependencies follow their ranges).
  dependencies: Object.fromEntries(
    [...Object.keys(manifest.dependencies), 'esbuild'].map((name) => [name, installed(name)]),
  ),
  peerDependencies: { 'aws-cdk-lib': dev['aws-cdk-lib'], constructs: dev['constructs'] },
};
writeFileSync(join(out, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
// The README is docs/construct.md; the other docs are not in the package, so its links to them become
// plain references to the repository's files.
const readme = readFileSync(join(root, 'docs', 'construct.md'), 'utf8').replace(
  /\[([^\]]+)\]\(([a-z0-9-]+\.md)(#[^)]*)?\)/g,
  (_, text: string, file: string) => (text === file ? `docs/${file}` : `${text} (docs/${file})`),
);
writeFileSync(join(out, 'README.md'), readme);
process.stdout.write(`package: ${out} (npm pack ${join('dist', 'package')})\n`);

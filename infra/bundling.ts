// How every function is bundled, as esbuild's options: the construct bundles with them at synth
// (infra/job.ts), and the cold-start bench and the artifact tests bundle exactly the same way.
import type { BuildOptions } from 'esbuild';

// CJS dependencies (pg, parts of the AWS SDK) call require(); an ESM bundle has none unless we make one.
export const ESM_REQUIRE_BANNER =
  "import { createRequire as __lakets_createRequire } from 'node:module'; const require = __lakets_createRequire(import.meta.url);";

export function esbuildOptions(): BuildOptions {
  return {
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    mainFields: ['module', 'main'],
    banner: { js: ESM_REQUIRE_BANNER },
    minify: true,
    // Error class names (errorType in the runtime's records) stay readable.
    keepNames: true,
    sourcemap: true,
    sourcesContent: false,
    // pg's optional native binding is never installed. Everything else, the AWS SDK included, is
    // bundled, so the deployed code runs the SDK versions the tests ran, not the runtime's (the
    // package pins its direct dependencies exactly; theirs follow their own ranges).
    external: ['pg-native'],
  };
}

// How every function is bundled: the NodejsFunction bundling options (infra/job.ts) and the same
// options as esbuild takes them (the cold-start bench bundles the functions exactly as CDK does).

import { type BundlingOptions, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { BuildOptions } from 'esbuild';

// CJS dependencies (pg, parts of the AWS SDK) call require(); an ESM bundle has none unless we make one.
export const ESM_REQUIRE_BANNER =
  "import { createRequire as __lakets_createRequire } from 'node:module'; const require = __lakets_createRequire(import.meta.url);";

export const FUNCTION_BUNDLING = {
  format: OutputFormat.ESM,
  target: 'node24',
  mainFields: ['module', 'main'],
  banner: ESM_REQUIRE_BANNER,
  minify: true,
  // Error class names (errorType in the runtime's records) stay readable.
  keepNames: true,
  sourceMap: true,
  sourcesContent: false,
  // pg's optional native binding is never installed. Everything else, the AWS SDK included, is
  // bundled, so the deployed code runs the SDK versions the tests ran, not the runtime's.
  externalModules: ['pg-native'],
} satisfies BundlingOptions;

/** FUNCTION_BUNDLING as esbuild options (NodejsFunction always bundles, for platform node). */
export function esbuildOptions(): BuildOptions {
  const b = FUNCTION_BUNDLING;
  return {
    bundle: true,
    platform: 'node',
    format: b.format === OutputFormat.ESM ? 'esm' : 'cjs',
    target: b.target,
    mainFields: [...b.mainFields],
    banner: { js: b.banner },
    minify: b.minify,
    keepNames: b.keepNames,
    sourcemap: b.sourceMap,
    sourcesContent: b.sourcesContent,
    external: [...b.externalModules],
  };
}

// Makes synthesized templates snapshot-stable: asset hashes change with every source edit in functions/
// (and every esbuild or dependency bump), which is not an infrastructure change.

export const HASH_PLACEHOLDER = '<asset-hash>';

// Legacy-synthesizer asset parameters carry a hash-derived 8-hex suffix after the hash itself.
const LEGACY_ASSET_PARAMETER = /AssetParameters[a-f0-9]{64}(S3Bucket|S3VersionKey|ArtifactHash)[A-F0-9]{8}/g;
// Content hashes: S3 keys (`<hash>.zip`), asset.<hash> paths, container image tags in cdk-*-assets-* repos.
const CONTENT_HASH = /[a-f0-9]{64}/g;

export function normaliseString(value: string): string {
  return value
    .replace(LEGACY_ASSET_PARAMETER, `AssetParameters${HASH_PLACEHOLDER}$1`)
    .replace(CONTENT_HASH, HASH_PLACEHOLDER);
}

/** Deep copy of a template with every asset hash, in keys and in values, replaced by a placeholder. */
export function normaliseTemplate<T>(template: T): T {
  return normalise(template) as T;
}

function normalise(value: unknown): unknown {
  if (typeof value === 'string') return normaliseString(value);
  if (Array.isArray(value)) return value.map(normalise);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [normaliseString(k), normalise(v)]));
  }
  return value;
}

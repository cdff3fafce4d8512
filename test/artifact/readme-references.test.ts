// Error hints send operators to README sections by title (e.g. `the README "Service principal, secret
// and Postgres role" steps`): each title they cite must be a heading of the README.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name));
}

describe('README sections cited by messages', () => {
  it('exist as headings', () => {
    const headings = new Set(
      readFileSync(join(ROOT, 'README.md'), 'utf8')
        .split('\n')
        .filter((l) => /^#{1,6} /.test(l))
        .map((l) => l.replace(/^#+ /, '').trim()),
    );
    const cited = sources(join(ROOT, 'lib')).flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(/README "([^"]+)"/g)].map((m) => ({ file, title: m[1] })),
    );
    expect(cited.length).toBeGreaterThan(0);
    expect(cited.filter((c) => !headings.has(c.title ?? ''))).toEqual([]);
  });
});

// What the repository says about itself must exist: every repository path a comment, message or
// document names (`lib/jobs/runner.ts`, `dev/`), every README section a message or comment cites by
// title (`the README "Service principal, secret and Postgres role" steps`), and every relative link of
// the Markdown files. Operators follow these hints; the next engineer follows the comments.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SKIP = new Set(['node_modules', '.git', 'cdk.out', 'coverage']);
const TEXT = /\.(ts|mjs|js|sql|sh|md|json)$/;
const TOP = ['lib', 'dev', 'infra', 'test', 'bench', 'scripts', 'functions', '.ci'];

/** The project's own text files (what git tracks, without its copies of packages and build output). */
function files(dir = ROOT): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (SKIP.has(e.name)) return [];
    const path = join(dir, e.name);
    if (e.isDirectory()) return files(path);
    return (TEXT.test(e.name) && e.name !== 'package-lock.json') || path === join(ROOT, '.ci', 'run')
      ? [path]
      : [];
  });
}

/** Repository paths named in a text; a path followed by a placeholder (`<job>`, `*`, `{a,b}`, `${x}`) is a pattern, not a name. */
function namedPaths(text: string): string[] {
  const re = new RegExp(
    `(?<![\\w./@-])(?:${TOP.map((t) => t.replace('.', '\\.')).join('|')})/[\\w./-]*`,
    'g',
  );
  return [...text.matchAll(re)]
    .filter((m) => !/^[<*{$]/.test(text.slice((m.index ?? 0) + m[0].length)))
    .map((m) => m[0].replace(/[.-]+$/, ''))
    .filter((p) => !p.includes('//'));
}

/** README section titles cited in a text: the word README, an optional comma, then the title in double quotes. */
function citedSections(text: string): string[] {
  return [...text.matchAll(/README,? "([^"\n]+)"/g)].map((m) => m[1] ?? '');
}

/** Relative link targets of a Markdown text, without their #fragment. */
function markdownLinks(text: string): string[] {
  return [...text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)]
    .map((m) => m[1] ?? '')
    .filter((t) => !/^[a-z]+:/.test(t) && !t.startsWith('../'));
}

const headings = new Set(
  readFileSync(join(ROOT, 'README.md'), 'utf8')
    .split('\n')
    .filter((l) => /^#{1,6} /.test(l))
    .map((l) => l.replace(/^#+ /, '').trim()),
);

describe('references the repository makes to itself', () => {
  it('finds what it looks for (the scanners themselves)', () => {
    expect(namedPaths('see lib/jobs/runner.ts and dev/, not lib/jobs/<job>.ts or test/**/x.ts')).toEqual([
      'lib/jobs/runner.ts',
      'dev/',
    ]);
    expect(citedSections('the README "Deploy (AWS CDK)" steps; README, "Tests"')).toEqual([
      'Deploy (AWS CDK)',
      'Tests',
    ]);
    expect(markdownLinks('[a](lib/schema/README.md#x) [b](https://x.y) [c](../shared/x.md)')).toEqual([
      'lib/schema/README.md',
    ]);
  });

  it('names only repository paths that exist', () => {
    const missing = files().flatMap((file) =>
      namedPaths(readFileSync(file, 'utf8'))
        .filter((p) => !existsSync(join(ROOT, p)))
        .map((p) => `${relative(ROOT, file)}: ${p}`),
    );
    expect(missing).toEqual([]);
  });

  it('cites only README sections that exist', () => {
    const cited = files()
      .filter((f) => !f.endsWith('.md'))
      .flatMap((file) => citedSections(readFileSync(file, 'utf8')).map((title) => ({ file, title })));
    expect(cited.length).toBeGreaterThan(0);
    expect(
      cited.filter((c) => !headings.has(c.title)).map((c) => `${relative(ROOT, c.file)}: ${c.title}`),
    ).toEqual([]);
  });

  it('links only to files that exist', () => {
    const broken = files()
      .filter((f) => f.endsWith('.md'))
      .flatMap((file) =>
        markdownLinks(readFileSync(file, 'utf8'))
          .filter((t) => !existsSync(join(dirname(file), t)))
          .map((t) => `${relative(ROOT, file)}: ${t}`),
      );
    expect(broken).toEqual([]);
  });
});

// What the repository says about itself must exist, and stay inside it: every repository path a
// comment, message or document names (`lib/jobs/runner.ts`, `dev/`), every section a message or
// comment cites by file and title (`docs/operations.md "Service principal, secret and Postgres role"`,
// or `README "…"`), and every relative link of the Markdown files. Operators follow these hints; the
// next engineer follows the comments. A clone holds the repository and nothing beside it, so no link or
// path may lead outside its root.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// Build output (dist/: the package, whose README is docs/construct.md with its links made plain) and scratch folders.
const SKIP = new Set(['node_modules', '.git', 'cdk.out', 'coverage', 'dist', '.scratch', '.tmp']);
const TEXT = /\.(ts|mjs|js|sql|sh|md|json)$/;
const TOP = ['lib', 'dev', 'infra', 'test', 'bench', 'scripts', 'functions', '.ci', 'docs'];

// Released migrations are frozen byte for byte (their checksums are recorded, lib/schema/README.md
// "The release rule"): this header comment still names the contract where it was when 0001_core was
// released. The contract is docs/lakets-contract.md; nothing else may name a place outside, except
// this file, whose self-test spells out what it forbids.
const FROZEN = [{ file: 'lib/schema/sql/0001_core/01_registries.sql', path: 'shared/lakets-contract.md' }];
const SELF = fileURLToPath(import.meta.url);

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

const rel = (file: string) => relative(ROOT, file);

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

/**
 * Sections cited in a text: a Markdown file of the repository (`docs/operations.md`), or the word
 * README for README.md, an optional comma, then the heading in double quotes.
 */
function citedSections(text: string): { doc: string; title: string }[] {
  return [...text.matchAll(/(?<![\w./-])((?:[\w.-]+\/)*[\w.-]+\.md|README),? "([^"\n]+)"/g)].map((m) => ({
    doc: m[1] === 'README' ? 'README.md' : (m[1] ?? ''),
    title: m[2] ?? '',
  }));
}

/** Relative link targets of a Markdown text, without their #fragment. */
function markdownLinks(text: string): string[] {
  return [...text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)]
    .map((m) => m[1] ?? '')
    .filter((t) => !/^[a-z]+:/.test(t));
}

/**
 * Paths in a file's text that lead outside the repository: a relative path climbing above the root
 * from the file's folder (`../../x` in a link, an import or prose), and any path into the `shared/`
 * folder that sits beside the repository in some checkouts (`../shared/…`, `shared/seed/…`).
 */
function outsidePaths(file: string, text: string): string[] {
  const climbing = [...text.matchAll(/(?<![\w./-])((?:\.\.\/)+)([\w.@-][\w./@-]*)?/g)]
    .filter((m) => rel(resolve(dirname(file), `${m[1]}${m[2] ?? ''}`)).startsWith('..'))
    .map((m) => m[0]);
  const shared = [...text.matchAll(/(?<![\w./@-])(?:\.\.\/)*shared\/[\w./-]+|shared\/seed\b/g)]
    .map((m) => m[0])
    .filter((p) => !existsSync(join(ROOT, p)));
  return [...climbing, ...shared];
}

const headings = new Map<string, Set<string> | undefined>();
/** The headings of a repository Markdown file (undefined when there is no such file). */
function headingsOf(doc: string): Set<string> | undefined {
  if (!headings.has(doc)) {
    const path = join(ROOT, doc);
    headings.set(
      doc,
      existsSync(path)
        ? new Set(
            readFileSync(path, 'utf8')
              .split('\n')
              .filter((l) => /^#{1,6} /.test(l))
              .map((l) => l.replace(/^#+ /, '').trim()),
          )
        : undefined,
    );
  }
  return headings.get(doc);
}

describe('references the repository makes to itself', () => {
  it('finds what it looks for (the scanners themselves)', () => {
    expect(namedPaths('see lib/jobs/runner.ts and dev/, not lib/jobs/<job>.ts or test/**/x.ts')).toEqual([
      'lib/jobs/runner.ts',
      'dev/',
    ]);
    expect(
      citedSections(
        'the README "Deploy" steps; README, "Tests"; the docs/operations.md "Preflight check" steps; lib/schema/README.md "Layout"',
      ),
    ).toEqual([
      { doc: 'README.md', title: 'Deploy' },
      { doc: 'README.md', title: 'Tests' },
      { doc: 'docs/operations.md', title: 'Preflight check' },
      { doc: 'lib/schema/README.md', title: 'Layout' },
    ]);
    expect(markdownLinks('[a](lib/schema/README.md#x) [b](https://x.y) [c](../shared/x.md)')).toEqual([
      'lib/schema/README.md',
      '../shared/x.md',
    ]);
    const doc = join(ROOT, 'docs', 'x.md');
    expect(
      outsidePaths(
        doc,
        '[in](../lib/x.md) [out](../../x.md) [c](../shared/x.md) seed shared/seed/jobs.txt @scope/shared/x',
      ),
    ).toEqual(['../../x.md', '../shared/x.md', 'shared/seed/jobs.txt']);
    expect(outsidePaths(join(ROOT, 'test', 'docs', 'x.ts'), "new URL('../..', import.meta.url)")).toEqual([]);
  });

  it('names only repository paths that exist', () => {
    const missing = files().flatMap((file) =>
      namedPaths(readFileSync(file, 'utf8'))
        .filter((p) => !existsSync(join(ROOT, p)))
        .map((p) => `${rel(file)}: ${p}`),
    );
    expect(missing).toEqual([]);
  });

  it('cites only sections that exist, each in the file it names', () => {
    const cited = files()
      .filter((f) => !f.endsWith('.md') && f !== SELF)
      .flatMap((file) => citedSections(readFileSync(file, 'utf8')).map((c) => ({ file, ...c })));
    // The hints operators follow from an error or a failed check cite the setup steps.
    expect(cited.filter((c) => c.file.startsWith(join(ROOT, 'lib'))).length).toBeGreaterThan(0);
    expect(
      cited
        .filter((c) => !headingsOf(c.doc)?.has(c.title))
        .map((c) => `${rel(c.file)}: ${c.doc} "${c.title}"`),
    ).toEqual([]);
  });

  it('links only to files that exist', () => {
    const broken = files()
      .filter((f) => f.endsWith('.md'))
      .flatMap((file) =>
        markdownLinks(readFileSync(file, 'utf8'))
          .filter((t) => !existsSync(join(dirname(file), t)))
          .map((t) => `${rel(file)}: ${t}`),
      );
    expect(broken).toEqual([]);
  });

  it('never links or refers to a path outside the repository', () => {
    const frozen = (file: string, p: string) => FROZEN.some((f) => f.file === rel(file) && f.path === p);
    const outside = files()
      .filter((file) => file !== SELF)
      .flatMap((file) =>
        outsidePaths(file, readFileSync(file, 'utf8'))
          .filter((p) => !frozen(file, p))
          .map((p) => `${rel(file)}: ${p}`),
      );
    expect(outside).toEqual([]);
    // The one exception is a released migration, frozen by its checksum; it still says what it says.
    for (const f of FROZEN) expect(readFileSync(join(ROOT, f.file), 'utf8')).toContain(f.path);
  });
});

// No import cycle in lib/: every module's imports (type-only ones and re-exports too), read with the
// TypeScript compiler's own pre-processor, form a graph without a loop. A cycle ties two modules
// together for good (neither can be read, tested or bundled without the other); this fails on a new one.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const LIB = join(ROOT, 'lib');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Module -> the lib/ modules it imports (relative specifiers only; packages are not lib/). */
function importGraph(files: string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets = importedFiles
      .map((f) => f.fileName)
      .filter((name) => name.startsWith('.'))
      .map((name) => resolve(dirname(file), name));
    graph.set(
      relative(ROOT, file),
      targets.map((t) => relative(ROOT, t)),
    );
  }
  return graph;
}

/** Each cycle as the list of modules on it (one per strongly connected component, Tarjan). */
function cycles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next);
    next += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) ?? 0, index.get(w) ?? 0));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string | undefined;
      do {
        w = stack.pop();
        if (w === undefined) break;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe('lib/ imports', () => {
  const graph = importGraph(sources(LIB));

  it('reads every module and its imports (type-only ones too)', () => {
    expect(graph.size).toBeGreaterThan(40);
    expect(graph.get('lib/jobs/notices.ts')).toContain('lib/queryable.ts');
    expect(graph.get('lib/jobs/definition.ts')).toContain('lib/jobs/needs.ts');
  });

  it('the cycle finder finds a loop, a self-import and nothing in a tree', () => {
    const loop = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a', 'd']],
      ['d', []],
    ]);
    expect(cycles(loop)).toEqual([['a', 'b', 'c']]);
    expect(cycles(new Map([['a', ['a']]]))).toEqual([['a']]);
    expect(
      cycles(
        new Map([
          ['a', ['b', 'c']],
          ['b', ['c']],
          ['c', []],
        ]),
      ),
    ).toEqual([]);
  });

  it('a job definition does not pull in the preflight (only the types of lib/jobs/needs.ts)', () => {
    const reach = (from: string, seen = new Set<string>()): Set<string> => {
      for (const to of graph.get(from) ?? []) if (!seen.has(to)) reach(to, seen.add(to));
      return seen;
    };
    for (const job of ['partition-manager', 'tiering', 'retention', 'rollup-refresh']) {
      const reached = reach(`lib/jobs/${job}.ts`);
      expect(
        [...reached].filter((m) => /lib\/jobs\/check/.test(m)),
        job,
      ).toEqual([]);
    }
  });

  it('have no cycle', () => {
    expect(cycles(graph)).toEqual([]);
  });
});

// docs/lakets-contract.md lists what the jobs need of LakeTS, and the jobs' definitions say it again
// (their `needs`, which the preflight check and npm run grants act on): the two must not drift. Every
// function a job needs is written down with the argument types the check requires, and every registry
// it needs is among the ones the document describes.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { JOB_LIST } from '../../lib/jobs/catalog.ts';

const DOC = readFileSync(new URL('../../docs/lakets-contract.md', import.meta.url), 'utf8');

// Postgres's own spelling of the types (oidvectortypes), as the check compares them.
const TYPE_NAMES: Record<string, string> = {
  int: 'integer',
  int4: 'integer',
  timestamptz: 'timestamp with time zone',
  bool: 'boolean',
};

/** The argument types of each `lakets.<name>(p_a type [DEFAULT …], …)` written in the document's SQL blocks. */
function documentedSignatures(doc: string): Map<string, string[]> {
  const sql = [...doc.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1] ?? '').join('\n');
  const found = new Map<string, string[]>();
  for (const m of sql.matchAll(/lakets\.(\w+)\(([^)]*)\)/g)) {
    const types = (m[2] ?? '')
      .split(',')
      .map((p) => p.replace(/\s+DEFAULT\s[\s\S]*$/i, '').trim())
      .filter((p) => p !== '')
      .map((p) => p.split(/\s+/).slice(1).join(' '))
      .map((t) => TYPE_NAMES[t] ?? t);
    found.set(m[1] ?? '', [...(found.get(m[1] ?? '') ?? []), types.join(', ')]);
  }
  return found;
}

describe('docs/lakets-contract.md against what the jobs need', () => {
  const signatures = documentedSignatures(DOC);

  it('reads the signatures it documents (the parser itself)', () => {
    expect(
      documentedSignatures(
        "```sql\nlakets.f(p_a integer, p_b text DEFAULT 'public',\n  p_c timestamptz DEFAULT NULL) RETURNS int\n```",
      ),
    ).toEqual(new Map([['f', ['integer, text, timestamp with time zone']]]));
  });

  it.each(JOB_LIST.map((job) => [job.name, job] as const))(
    '%s: each LakeTS function it needs, with the argument types the check requires',
    (_, job) => {
      for (const [name, args] of job.needs.functions) {
        expect(signatures.get(name), `lakets.${name}(${args})`).toContain(args);
      }
    },
  );

  it.each(JOB_LIST.map((job) => [job.name, job] as const))(
    '%s: each registry it needs is described',
    (_, job) => {
      for (const [table] of job.needs.tables) expect(DOC, table).toContain(`| \`${table}\` |`);
    },
  );
});

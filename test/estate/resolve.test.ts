// Which target an invocation is for: the event's name against the deployment's targets (the bundled
// constant, LAKETS_TARGETS, or the single-target environment as target `default`).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { describe, expect, test } from 'vitest';
import { ConfigError } from '../../lib/config.ts';
import { PayloadError } from '../../lib/jobs/payload.ts';
import { targetResolver } from '../../lib/target.ts';

const single = {
  LAKETS_PROJECT: 'lakets-prod',
  DATABRICKS_HOST: 'https://dbc-1.cloud.databricks.com',
  LAKETS_SP_SECRET_ID: 'lakets/sp',
};
const entry = (name: string, extra: Record<string, string> = {}) => ({
  name,
  databricksHost: 'https://dbc-1.cloud.databricks.com',
  spSecretName: 'lakets/sp',
  lakebaseProject: name,
  ...extra,
});

describe('targetResolver', () => {
  test('no targets: the single-target environment is target "default", with or without its name', () => {
    const resolve = targetResolver(single);
    expect(resolve(undefined)).toEqual({
      name: 'default',
      config: expect.objectContaining({ project: 'projects/lakets-prod' }),
    });
    expect(resolve('default').name).toBe('default');
    expect(() => resolve('eu-prod')).toThrow(PayloadError);
    expect(() => resolve('eu-prod')).toThrow(
      /^target "eu-prod" is not a target of this deployment: it maintains one database, target "default"/,
    );
  });

  test('one target needs no name; several do', () => {
    expect(targetResolver({ LAKETS_TARGETS: JSON.stringify([entry('solo')]) })(undefined).name).toBe('solo');
    const resolve = targetResolver({ LAKETS_TARGETS: JSON.stringify([entry('a'), entry('b')]) });
    expect(() => resolve(undefined)).toThrow(/^this deployment maintains 2 targets: name one/);
    expect(resolve('b').config).toMatchObject({ project: 'projects/b' });
  });

  test('each target’s configuration is its own entry only: nothing from the shell’s variables', () => {
    const resolve = targetResolver({
      ...single,
      LAKETS_PG_ROLE: 'shell_role',
      LAKETS_DATABASE: 'shell_db',
      LAKETS_TARGETS: JSON.stringify([entry('a'), entry('b', { database: 'metrics' })]),
    });
    expect(resolve('a').config).toEqual({
      kind: 'databricks',
      project: 'projects/a',
      host: 'https://dbc-1.cloud.databricks.com',
      secretId: 'lakets/sp',
      database: 'databricks_postgres',
    });
    expect(resolve('b').config).toMatchObject({ database: 'metrics' });
    expect(resolve('b').config).not.toHaveProperty('pgRole');
  });

  test('a target whose settings the handlers refuse is a CONFIG_INVALID naming it; the others still resolve', () => {
    const resolve = targetResolver({
      LAKETS_TARGETS: JSON.stringify([entry('good'), entry('bad', { databricksHost: 'http://dbc-1' })]),
    });
    let error: unknown;
    try {
      resolve('bad');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe('CONFIG_INVALID');
    expect((error as Error).message).toBe(
      'target "bad": DATABRICKS_HOST="http://dbc-1" must use https: set it to https://<workspace-host>',
    );
    expect(resolve('good').name).toBe('good');
  });

  test('an unknown name lists at most 20 targets', () => {
    const many = Array.from({ length: 1000 }, (_, i) => entry(`t${i}`));
    const resolve = targetResolver({ LAKETS_TARGETS: JSON.stringify(many) });
    expect(() => resolve('nope')).toThrow(
      /^target "nope" is not a target of this deployment; targets: t0, t1, .*, t19, … and 980 more$/,
    );
  });
});

describe('the bundled targets (__LAKETS_TARGETS__)', () => {
  test('a bundle built with the constant resolves its targets and ignores LAKETS_TARGETS', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lakets-estate-'));
    try {
      const entryFile = join(dir, 'entry.ts');
      writeFileSync(
        entryFile,
        `import { targetResolver } from ${JSON.stringify(join(import.meta.dirname, '../../lib/target.ts'))};
const resolve = targetResolver(process.env);
const out = [];
for (const name of process.argv.slice(2)) {
  try { out.push(resolve(name).config); } catch (e) { out.push(e.message); }
}
console.log(JSON.stringify(out));`,
      );
      const outfile = join(dir, 'out.mjs');
      await build({
        entryPoints: [entryFile],
        bundle: true,
        platform: 'node',
        format: 'esm',
        outfile,
        logLevel: 'silent',
        define: { __LAKETS_TARGETS__: JSON.stringify(JSON.stringify([entry('bundled')])) },
      });
      const { stdout } = await promisify(execFile)(process.execPath, [outfile, 'bundled', 'other'], {
        env: { PATH: process.env.PATH ?? '', LAKETS_TARGETS: JSON.stringify([entry('other')]) },
      });
      expect(JSON.parse(stdout)).toEqual([
        expect.objectContaining({ project: 'projects/bundled' }),
        'target "other" is not a target of this deployment; targets: bundled',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

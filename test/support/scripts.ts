// Runs one of scripts/ (npm run check, npm run invoke, ...) as its own process, as a user runs it:
// asynchronously, so that fakes served by the test's process keep answering.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

export interface ScriptRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `node scripts/<script> ...args` with only PATH, the test CA and `env`; never throws on exit codes. */
export function runScript(script: string, args: string[], env: Record<string, string>): Promise<ScriptRun> {
  return promisify(execFile)(
    process.execPath,
    [join(import.meta.dirname, '../../scripts', script), ...args],
    {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH ?? '',
        NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS ?? '',
        ...env,
      },
    },
  ).then(
    (out) => ({ code: 0, stdout: out.stdout, stderr: out.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );
}

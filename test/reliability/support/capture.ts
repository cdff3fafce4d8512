// Everything a test file's code prints — console (where Powertools' logger writes with
// POWERTOOLS_DEV=true) and raw stdout/stderr writes — plus every report and error message the
// tests saw, kept so that the file can check at the end that no secret value appears in any of it.
import { afterAll, beforeAll } from 'vitest';

export interface Capture {
  /** Every captured line or text, in order. */
  readonly texts: string[];
  /** Adds a text the tests saw (a report, an error message). */
  note(text: string): void;
  /** The known secrets (>= 8 characters) found in any captured text. */
  leaks(secrets: Iterable<string>): string[];
}

const METHODS = ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const;

/**
 * Captures the file's output from beforeAll to afterAll: kept, not shown (set RELIABILITY_ECHO=1 to
 * see it too).
 */
export function captureOutput(): Capture {
  const texts: string[] = [];
  const echo = process.env['RELIABILITY_ECHO'] === '1';
  const restore: Array<() => void> = [];
  beforeAll(() => {
    for (const method of METHODS) {
      const original = console[method];
      console[method] = (...args: unknown[]) => {
        texts.push(args.map((a) => (typeof a === 'string' ? a : safeString(a))).join(' '));
        if (echo) original.apply(console, args);
      };
      restore.push(() => {
        console[method] = original;
      });
    }
    for (const stream of [process.stdout, process.stderr]) {
      const original = stream.write;
      stream.write = function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]) {
        texts.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'));
        if (echo) return (original as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
        const callback = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
        callback?.();
        return true;
      } as typeof stream.write;
      restore.push(() => {
        stream.write = original;
      });
    }
  });
  afterAll(() => {
    for (const undo of restore.reverse()) undo();
  });
  return {
    texts,
    note(text) {
      texts.push(text);
    },
    leaks(secrets) {
      const found = new Set<string>();
      for (const secret of secrets) {
        if (secret.length >= 8 && texts.some((t) => t.includes(secret))) found.add(secret);
      }
      return [...found];
    },
  };
}

function safeString(value: unknown): string {
  if (value instanceof Error) return `${value.name}: ${value.message}\n${value.stack ?? ''}`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** A short, non-revealing label for a secret in an assertion message. */
export function label(secret: string): string {
  return `${secret.slice(0, 4)}…(${secret.length} chars)`;
}

// The handlers log through console (Powertools' logger and metrics): tests read what they print.
import { vi } from 'vitest';

/** Sends every console line into `into` instead of the terminal (undone by vi.restoreAllMocks). */
export function captureConsole(into: string[]): void {
  for (const level of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      into.push(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '));
    });
  }
}

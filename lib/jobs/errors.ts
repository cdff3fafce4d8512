// One line for any error that ends an item or a run. Postgres errors keep their SQLSTATE, which is
// what an operator searches for.
export function errorLine(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const line = error.message.split('\n')[0] ?? error.message;
    return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? `${line} (SQLSTATE ${code})` : line;
  }
  return String(error);
}

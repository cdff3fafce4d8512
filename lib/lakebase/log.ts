// The few log calls the connection library makes. A Powertools Logger fits this shape, so a handler
// passes its own; attributes never hold secret values (names, counts, hosts and timings only).
// (A rest parameter, because that is the shape Powertools' `...extraInput` accepts.)
export interface Log {
  debug(message: string, ...attributes: Record<string, unknown>[]): void;
  info(message: string, ...attributes: Record<string, unknown>[]): void;
  warn(message: string, ...attributes: Record<string, unknown>[]): void;
}

export const silentLog: Log = {
  debug() {},
  info() {},
  warn() {},
};

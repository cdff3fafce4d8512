// A stand-in for the Lambda Runtime API (2018-06-01), the loopback HTTP service a runtime client
// (aws-lambda-ric) polls: `GET /runtime/invocation/next` hands out one queued event at a time with
// the documented headers, `POST /runtime/invocation/{id}/response` and `/{id}/error` settle it, and
// `POST /runtime/init/error` reports a failed init. One function instance, one invocation at a time,
// as Lambda runs it. Requests outside the documented paths are answered 404 and recorded, so a test
// sees a runtime client that strays.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const PREFIX = '/2018-06-01/runtime';

export type InvocationResult =
  | { kind: 'response'; requestId: string; body: unknown; ms: number }
  | { kind: 'error'; requestId: string; errorType: string | undefined; body: unknown; ms: number };

export interface InitError {
  errorType: string | undefined;
  body: unknown;
}

export interface RuntimeApi {
  /** `host:port`, what AWS_LAMBDA_RUNTIME_API holds. */
  address: string;
  /**
   * Queues one event and resolves when the function answers it. `ms` runs from the moment the
   * runtime client picked the event up to its answer.
   */
  invoke(event: unknown, options?: { timeoutMs?: number; functionArn?: string }): Promise<InvocationResult>;
  /** Resolves when the runtime client first asks for an event (init is over), or reports an init error. */
  ready(): Promise<{ ok: true; ms: number } | { ok: false; error: InitError; ms: number }>;
  /** Requests that were not part of the API, as `METHOD path`. */
  strays: string[];
  close(): Promise<void>;
}

interface Pending {
  requestId: string;
  event: unknown;
  deadlineMs: number;
  functionArn: string;
  settle: (result: InvocationResult) => void;
  pickedAt?: number;
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export async function startRuntimeApi(
  options: { functionName?: string; startedAt?: number } = {},
): Promise<RuntimeApi> {
  const startedAt = options.startedAt ?? performance.now();
  const functionName = options.functionName ?? 'function';
  const queue: Pending[] = [];
  const byId = new Map<string, Pending>();
  const strays: string[] = [];
  let waiting: ((p: Pending) => void) | undefined;
  type ReadyState = Awaited<ReturnType<RuntimeApi['ready']>>;
  let settleReady: ((state: ReadyState) => void) | undefined;
  const ready = new Promise<ReadyState>((resolve) => {
    settleReady = resolve;
  });
  // The first GET /next or POST /init/error ends init; later calls change nothing.
  const markReady = (state: ReadyState) => {
    settleReady?.(state);
    settleReady = undefined;
  };

  const next = (res: ServerResponse) => {
    markReady({ ok: true, ms: performance.now() - startedAt });
    const hand = (p: Pending) => {
      p.pickedAt = performance.now();
      const body = JSON.stringify(p.event);
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'lambda-runtime-aws-request-id': p.requestId,
        'lambda-runtime-deadline-ms': String(p.deadlineMs),
        'lambda-runtime-invoked-function-arn': p.functionArn,
        'lambda-runtime-trace-id': `Root=1-${Math.floor(Date.now() / 1000).toString(16)}-${randomUUID().replaceAll('-', '').slice(0, 24)};Sampled=0`,
      });
      res.end(body);
    };
    const first = queue.shift();
    if (first) hand(first);
    else waiting = hand; // long poll, as the real API does
  };

  const server = createServer(async (req, res) => {
    const path = (req.url ?? '').split('?')[0] ?? '';
    const body = await readBody(req);
    if (req.method === 'GET' && path === `${PREFIX}/invocation/next`) return next(res);
    if (req.method === 'POST' && path === `${PREFIX}/init/error`) {
      const errorType = req.headers['lambda-runtime-function-error-type'];
      markReady({
        ok: false,
        error: { errorType: typeof errorType === 'string' ? errorType : undefined, body },
        ms: performance.now() - startedAt,
      });
      return reply(res, 202, { status: 'OK' });
    }
    const m = /^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/.exec(path);
    const pending = m?.[1] ? byId.get(decodeURIComponent(m[1])) : undefined;
    if (req.method === 'POST' && m && pending) {
      byId.delete(pending.requestId);
      const ms = performance.now() - (pending.pickedAt ?? performance.now());
      if (m[2] === 'response') pending.settle({ kind: 'response', requestId: pending.requestId, body, ms });
      else {
        const errorType = req.headers['lambda-runtime-function-error-type'];
        pending.settle({
          kind: 'error',
          requestId: pending.requestId,
          errorType: typeof errorType === 'string' ? errorType : undefined,
          body,
          ms,
        });
      }
      return reply(res, 202, { status: 'OK' });
    }
    strays.push(`${req.method} ${path}`);
    return reply(res, 404, { errorMessage: 'not a Runtime API path', errorType: 'InvalidRequest' });
  });
  // The long poll may wait for minutes between invocations.
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    address: `127.0.0.1:${port}`,
    strays,
    invoke(event, { timeoutMs = 60_000, functionArn } = {}) {
      return new Promise((settle) => {
        const p: Pending = {
          requestId: randomUUID(),
          event,
          deadlineMs: Date.now() + timeoutMs,
          functionArn: functionArn ?? `arn:aws:lambda:us-east-1:123456789012:function:${functionName}`,
          settle,
        };
        byId.set(p.requestId, p);
        const w = waiting;
        waiting = undefined;
        if (w) w(p);
        else queue.push(p);
      });
    },
    ready: () => ready,
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

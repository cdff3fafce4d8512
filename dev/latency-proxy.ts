// A TCP proxy on loopback that puts a network between a client and Postgres: every chunk of bytes is
// held for a set one-way delay (plus optional random jitter) in each direction, and never overtakes
// the chunk before it (delay, not reorder). It forwards raw TCP, so TLS passes through untouched and
// the client still checks the server's certificate (the dev server's names localhost and 127.0.0.1).
//
// On a plaintext connection it also counts the statements the client sends: one per Query message
// (simple protocol; one log_statement line, whatever it holds) and one per Parse message (extended
// protocol, what pg sends for a query with parameters). An encrypted connection is counted as such.
//
// From the command line (prints the counts when stopped with Ctrl-C):
//   node dev/latency-proxy.ts --target 127.0.0.1:5432 --listen 6432 --delay 20 [--jitter 2]
import net from 'node:net';

export interface LatencyProxyOptions {
  /** Where Postgres listens. */
  target: { host: string; port: number };
  /** One-way delay added to each direction, in ms. */
  delayMs: number;
  /** Up to this many ms more, drawn per chunk (still never reordering). Default 0. */
  jitterMs?: number;
  /** Port on 127.0.0.1 to listen on (default: a free one). */
  port?: number;
  /** Keep the text of every counted statement (for tests and evidence; default false). */
  record?: boolean;
}

export interface ProxyCounts {
  /** Query + Parse messages sent by clients on plaintext connections. */
  statements: number;
  /** Client connections accepted. */
  connections: number;
  /** Connections that went on in TLS (their statements cannot be counted). */
  encrypted: number;
  /** The counted statements' text, in order (only with `record`). */
  texts: string[];
}

export interface LatencyProxy {
  host: string;
  port: number;
  counts(): ProxyCounts;
  /** Zeroes the counts (connections stay open). */
  reset(): void;
  /** Changes the delay for bytes that arrive from now on. */
  setDelay(delayMs: number, jitterMs?: number): void;
  close(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;

/**
 * Reads the client side of the protocol: the untyped startup messages, then typed messages
 * (1-byte type, int32 length including itself). Stops at TLS.
 */
class ClientParser {
  private buf: Buffer = Buffer.alloc(0);
  private startup = true;
  /** An SSLRequest/GSSENCRequest is waiting for the server's one-byte answer. */
  awaitingAnswer = false;
  encrypted = false;

  private readonly onStatement: (text: string) => void;

  constructor(onStatement: (text: string) => void) {
    this.onStatement = onStatement;
  }

  feed(chunk: Buffer): void {
    if (this.encrypted) return;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.encrypted || this.awaitingAnswer) return;
      if (this.startup) {
        if (this.buf.length < 8) return;
        const len = this.buf.readInt32BE(0);
        if (this.buf.length < len) return;
        const code = this.buf.readInt32BE(4);
        this.buf = this.buf.subarray(len);
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) this.awaitingAnswer = true;
        else this.startup = false; // StartupMessage (or CancelRequest, after which nothing follows)
        continue;
      }
      if (this.buf.length < 5) return;
      const len = this.buf.readInt32BE(1);
      if (this.buf.length < len + 1) return;
      const type = String.fromCharCode(this.buf[0] as number);
      const body = this.buf.subarray(5, len + 1);
      if (type === 'Q') this.onStatement(cstring(body, 0).text);
      else if (type === 'P') {
        const name = cstring(body, 0);
        this.onStatement(cstring(body, name.next).text);
      }
      this.buf = this.buf.subarray(len + 1);
    }
  }

  /** The server's answer to an SSLRequest: 'S' means TLS from here on, 'N' a plaintext startup. */
  answer(byte: number): void {
    this.awaitingAnswer = false;
    if (byte === 0x53 /* S */ || byte === 0x47 /* G */) {
      this.encrypted = true;
      this.buf = Buffer.alloc(0);
    }
  }
}

function cstring(buf: Buffer, from: number): { text: string; next: number } {
  const end = buf.indexOf(0, from);
  const stop = end < 0 ? buf.length : end;
  return { text: buf.toString('utf8', from, stop), next: stop + 1 };
}

/**
 * One direction of a connection: chunks leave `delay` (+ jitter) after they arrived, in arrival
 * order: a chunk's due time is never earlier than the one before it.
 */
class DelayedPipe {
  private queue: Array<{ due: number; chunk: Buffer }> = [];
  private lastDue = 0;
  private timer: NodeJS.Timeout | undefined;
  private ended = false;

  private readonly to: net.Socket;
  private readonly delay: () => { delayMs: number; jitterMs: number };

  constructor(to: net.Socket, delay: () => { delayMs: number; jitterMs: number }) {
    this.to = to;
    this.delay = delay;
  }

  push(chunk: Buffer): void {
    const { delayMs, jitterMs } = this.delay();
    const due = Math.max(performance.now() + delayMs + Math.random() * jitterMs, this.lastDue);
    this.lastDue = due;
    this.queue.push({ due, chunk });
    this.schedule();
  }

  /** Ends the other side once everything queued has left. */
  end(): void {
    this.ended = true;
    this.schedule();
  }

  destroy(): void {
    if (this.timer) clearTimeout(this.timer);
    this.queue = [];
  }

  private schedule(): void {
    if (this.timer) return;
    const head = this.queue[0];
    if (!head) {
      if (this.ended) this.to.end();
      return;
    }
    const wait = head.due - performance.now();
    if (wait <= 0) {
      this.flush();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, wait);
  }

  private flush(): void {
    const now = performance.now();
    while (this.queue.length > 0 && (this.queue[0] as { due: number }).due <= now) {
      const { chunk } = this.queue.shift() as { chunk: Buffer };
      if (!this.to.destroyed) this.to.write(chunk);
    }
    this.schedule();
  }
}

export async function startLatencyProxy(options: LatencyProxyOptions): Promise<LatencyProxy> {
  let delay = { delayMs: options.delayMs, jitterMs: options.jitterMs ?? 0 };
  const check = (ms: number, what: string) => {
    if (!Number.isFinite(ms) || ms < 0)
      throw new RangeError(`${what} must be a number of ms >= 0, got ${ms}`);
  };
  check(delay.delayMs, 'delayMs');
  check(delay.jitterMs, 'jitterMs');
  const counts: ProxyCounts = { statements: 0, connections: 0, encrypted: 0, texts: [] };
  const sockets = new Set<net.Socket>();

  const server = net.createServer((client) => {
    counts.connections++;
    client.setNoDelay(true);
    const upstream = net.connect({ host: options.target.host, port: options.target.port });
    upstream.setNoDelay(true);
    sockets.add(client);
    sockets.add(upstream);
    const parser = new ClientParser((text) => {
      counts.statements++;
      if (options.record) counts.texts.push(text);
    });
    const toServer = new DelayedPipe(upstream, () => delay);
    const toClient = new DelayedPipe(client, () => delay);
    client.on('data', (chunk: Buffer) => {
      parser.feed(chunk);
      toServer.push(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (parser.awaitingAnswer && chunk.length > 0) {
        parser.answer(chunk[0] as number);
        if (parser.encrypted) counts.encrypted++;
        else parser.feed(Buffer.alloc(0));
      }
      toClient.push(chunk);
    });
    const close = () => {
      toServer.destroy();
      toClient.destroy();
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('end', () => toServer.end());
    upstream.on('end', () => toClient.end());
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', () => {
      sockets.delete(client);
      if (!upstream.destroyed) toServer.end();
    });
    upstream.on('close', () => {
      sockets.delete(upstream);
      if (!client.destroyed) toClient.end();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const address = server.address() as net.AddressInfo;
  return {
    host: '127.0.0.1',
    port: address.port,
    counts: () => ({ ...counts, texts: [...counts.texts] }),
    reset: () => {
      counts.statements = 0;
      counts.connections = 0;
      counts.encrypted = 0;
      counts.texts = [];
    },
    setDelay: (delayMs, jitterMs = 0) => {
      check(delayMs, 'delayMs');
      check(jitterMs, 'jitterMs');
      delay = { delayMs, jitterMs };
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function parseArgs(argv: string[]): LatencyProxyOptions {
  const get = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const usage =
    'usage: node dev/latency-proxy.ts --target <host>:<port> [--listen <port>] --delay <ms> [--jitter <ms>]';
  const target = get('--target');
  const m = target ? /^(.+):(\d+)$/.exec(target) : null;
  const delayMs = Number(get('--delay'));
  if (!m || !Number.isFinite(delayMs)) throw new Error(usage);
  return {
    target: { host: m[1] as string, port: Number(m[2]) },
    delayMs,
    jitterMs: Number(get('--jitter') ?? 0),
    port: Number(get('--listen') ?? 0),
  };
}

if (import.meta.main) {
  try {
    const options = parseArgs(process.argv.slice(2));
    const proxy = await startLatencyProxy(options);
    process.stderr.write(
      `latency proxy on ${proxy.host}:${proxy.port} -> ${options.target.host}:${options.target.port}, ${options.delayMs} ms each way (+ up to ${options.jitterMs ?? 0} ms jitter); Ctrl-C to stop\n`,
    );
    process.once('SIGINT', async () => {
      const c = proxy.counts();
      process.stderr.write(
        `\n${c.connections} connections, ${c.statements} statements counted (${c.encrypted} encrypted connections not counted)\n`,
      );
      await proxy.close();
      process.exit(0);
    });
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  }
}

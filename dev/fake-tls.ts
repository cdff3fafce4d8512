// Certificates for the local fakes (workspace, Secrets Manager): a throwaway CA and server
// certificates it signs for localhost / 127.0.0.1, made with the openssl CLI. Processes that talk
// to the fakes trust the CA the way production trusts a private CA: NODE_EXTRA_CA_CERTS, which Node
// reads only at start. The test run's global setup makes one CA and exports its location to the
// test workers; a script that starts the fakes itself passes `fakeTls().env` to the child processes
// that use them.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where the current CA lives; set by createFakeTls() for this process and its children. */
export const FAKE_TLS_DIR_ENV = 'LAKETS_FAKE_TLS_DIR';

export interface ServerCertificate {
  /** PEM certificate (with nothing else in the chain: the CA is what clients trust). */
  cert: string;
  /** PEM private key. */
  key: string;
}

export interface FakeTls extends ServerCertificate {
  dir: string;
  /** PEM file holding the CA certificate (and any CA that was already in NODE_EXTRA_CA_CERTS). */
  caFile: string;
  caPem: string;
  /** What a child process needs in its environment to trust the fakes. */
  env: { NODE_EXTRA_CA_CERTS: string; [FAKE_TLS_DIR_ENV]: string };
  /** A certificate from this CA for other names (e.g. one that does not match the host). */
  issue(names: string[]): ServerCertificate;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(dir: string, name: string): void {
  openssl(
    [
      'req',
      '-x509',
      ...KEY,
      '-days',
      '3',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
}

let serial = 0;

function issueIn(dir: string, names: string[]): ServerCertificate {
  const base = `leaf-${process.pid}-${++serial}`;
  const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  writeFileSync(
    join(dir, `${base}.ext`),
    `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`,
  );
  openssl(
    ['req', ...KEY, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${names[0] ?? 'x'}`],
    dir,
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${base}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-set_serial',
      String(Date.now() * 1000 + serial),
      '-days',
      '3',
      '-extfile',
      `${base}.ext`,
      '-out',
      `${base}.crt`,
    ],
    dir,
  );
  return {
    cert: readFileSync(join(dir, `${base}.crt`), 'utf8'),
    key: readFileSync(join(dir, `${base}.key`), 'utf8'),
  };
}

function load(dir: string): FakeTls {
  const caFile = join(dir, 'trust.pem');
  return {
    dir,
    caFile,
    caPem: readFileSync(join(dir, 'ca.crt'), 'utf8'),
    cert: readFileSync(join(dir, 'server.crt'), 'utf8'),
    key: readFileSync(join(dir, 'server.key'), 'utf8'),
    env: { NODE_EXTRA_CA_CERTS: caFile, [FAKE_TLS_DIR_ENV]: dir },
    issue: (names) => issueIn(dir, names),
  };
}

/**
 * Makes a new CA in a new directory, with a server certificate for localhost and 127.0.0.1, and
 * exports it in this process's environment (so child processes started afterwards trust it).
 */
export function createFakeTls(): FakeTls {
  const dir = mkdtempSync(join(tmpdir(), 'lakets-fake-ca-'));
  makeCa(dir, 'LakeTS fakes test CA');
  const leaf = issueIn(dir, ['localhost', '127.0.0.1']);
  writeFileSync(join(dir, 'server.crt'), leaf.cert);
  writeFileSync(join(dir, 'server.key'), leaf.key, { mode: 0o600 });
  // A CA someone already trusts through NODE_EXTRA_CA_CERTS stays trusted.
  const previous = process.env.NODE_EXTRA_CA_CERTS;
  const kept = previous && existsSync(previous) ? readFileSync(previous, 'utf8') : '';
  writeFileSync(join(dir, 'trust.pem'), `${kept.trim()}\n${readFileSync(join(dir, 'ca.crt'), 'utf8')}`);
  const tls = load(dir);
  Object.assign(process.env, tls.env);
  return tls;
}

/** The fakes' CA of this run: the one named by LAKETS_FAKE_TLS_DIR, else a new one (see createFakeTls). */
export function fakeTls(): FakeTls {
  const dir = process.env[FAKE_TLS_DIR_ENV];
  return dir && existsSync(join(dir, 'server.crt')) ? load(dir) : createFakeTls();
}

/** Removes a CA directory (the global teardown). */
export function removeFakeTls(tls: FakeTls): void {
  rmSync(tls.dir, { recursive: true, force: true });
}

/** A certificate for localhost / 127.0.0.1 signed by another throwaway CA that nobody trusts. */
export function untrustedCertificate(names: string[] = ['localhost', '127.0.0.1']): ServerCertificate {
  const dir = mkdtempSync(join(tmpdir(), 'lakets-other-ca-'));
  try {
    makeCa(dir, 'Some other CA');
    return issueIn(dir, names);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

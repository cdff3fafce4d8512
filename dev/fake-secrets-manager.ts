// AWS Secrets Manager answered locally: a loopback endpoint speaking the AWS JSON 1.1 protocol for
// `secretsmanager.GetSecretValue`, used by the real SecretsManagerClient through its `endpoint`
// option with dummy credentials. Secrets can be rotated (new value and VersionId) and reads can fail.
// HTTPS only, with a certificate from the fakes' CA (dev/fake-tls.ts), as the real endpoint.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { createSecretsManagerClient } from '../lib/lakebase/secret.ts';
import { fakeTls, type ServerCertificate } from './fake-tls.ts';

export interface FakeSecretsManagerOptions {
  /** Secret name -> SecretString. */
  secrets?: Record<string, string>;
  region?: string;
  accountId?: string;
  /** Certificate the server presents. Default: the fakes' CA's localhost certificate. */
  certificate?: ServerCertificate;
}

export interface SecretsManagerFault {
  /** AWS error type, e.g. ResourceNotFoundException, AccessDeniedException, InternalServiceError. */
  type: string;
  /** HTTP status; 400 by default (500 for InternalServiceError). */
  status?: number;
  message?: string;
  /** How many requests it applies to; default: all until cleared. */
  times?: number;
}

export interface SecretsManagerCall {
  target: string;
  secretId: string | undefined;
  status: number;
  /** Whether the request carried a SigV4 Authorization header (the real client signs). */
  signed: boolean;
}

export interface FakeSecretsManager {
  url: string;
  region: string;
  calls: SecretsManagerCall[];
  count(): number;
  /** The ARN of a stored secret (ARNs end with a random 6-character suffix, as in AWS). */
  arn(name: string): string;
  /** Creates or rotates a secret: a new value and a new VersionId. */
  setSecret(name: string, value: string): void;
  deleteSecret(name: string): void;
  setFault(fault: SecretsManagerFault | undefined): void;
  /** Presents another certificate from now on; open connections are closed (clients reconnect). */
  setCertificate(certificate: ServerCertificate): void;
  /** The jobs' own client (createSecretsManagerClient) pointed at this endpoint (dummy credentials, no retries). */
  client(): SecretsManagerClient;
  close(): Promise<void>;
}

interface Stored {
  value: string;
  versionId: string;
  suffix: string;
  created: number;
}

function send(res: ServerResponse, status: number, body: unknown, errorType?: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.1',
    'content-length': Buffer.byteLength(text),
    'x-amzn-requestid': randomUUID(),
    ...(errorType ? { 'x-amzn-errortype': errorType } : {}),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startFakeSecretsManager(
  options: FakeSecretsManagerOptions = {},
): Promise<FakeSecretsManager> {
  const region = options.region ?? 'us-east-1';
  const accountId = options.accountId ?? '123456789012';
  const store = new Map<string, Stored>();
  const calls: SecretsManagerCall[] = [];
  let fault: SecretsManagerFault | undefined;
  const suffix = () => Math.random().toString(36).slice(2, 8).padEnd(6, 'x');
  const arnOf = (name: string, s: Stored) =>
    `arn:aws:secretsmanager:${region}:${accountId}:secret:${name}-${s.suffix}`;

  function setSecret(name: string, value: string): void {
    const existing = store.get(name);
    store.set(name, {
      value,
      versionId: randomUUID(),
      suffix: existing?.suffix ?? suffix(),
      created: existing?.created ?? Date.now() / 1000,
    });
  }
  for (const [name, value] of Object.entries(options.secrets ?? {})) setSecret(name, value);

  function lookup(secretId: string): [string, Stored] | undefined {
    const direct = store.get(secretId);
    if (direct) return [secretId, direct];
    for (const [name, s] of store) if (arnOf(name, s) === secretId) return [name, s];
    return undefined;
  }

  const certificate = options.certificate ?? fakeTls();
  const server = createServer({ cert: certificate.cert, key: certificate.key }, (req, res) => {
    void (async () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      const signed = /^AWS4-HMAC-SHA256 /.test(String(req.headers.authorization ?? ''));
      let input: { SecretId?: unknown } = {};
      try {
        input = JSON.parse((await readBody(req)) || '{}') as { SecretId?: unknown };
      } catch {
        input = {};
      }
      const secretId = typeof input.SecretId === 'string' ? input.SecretId : undefined;
      const call: SecretsManagerCall = { target, secretId, status: 0, signed };
      calls.push(call);
      res.on('finish', () => {
        call.status = res.statusCode;
      });

      if (fault) {
        const f = fault;
        if (f.times !== undefined && --f.times <= 0) fault = undefined;
        const status = f.status ?? (f.type === 'InternalServiceError' ? 500 : 400);
        return send(res, status, { __type: f.type, Message: f.message ?? `Injected ${f.type}.` }, f.type);
      }
      if (target !== 'secretsmanager.GetSecretValue') {
        return send(res, 400, { __type: 'UnknownOperationException' }, 'UnknownOperationException');
      }
      if (!signed) {
        return send(res, 400, {
          __type: 'MissingAuthenticationTokenException',
          Message: 'Missing Authentication Token',
        });
      }
      const found = secretId ? lookup(secretId) : undefined;
      if (!found) {
        return send(
          res,
          400,
          {
            __type: 'ResourceNotFoundException',
            Message: "Secrets Manager can't find the specified secret.",
          },
          'ResourceNotFoundException',
        );
      }
      const [name, s] = found;
      return send(res, 200, {
        ARN: arnOf(name, s),
        Name: name,
        VersionId: s.versionId,
        SecretString: s.value,
        VersionStages: ['AWSCURRENT'],
        CreatedDate: s.created,
      });
    })().catch(() => {
      if (!res.headersSent) send(res, 500, { __type: 'InternalServiceError' }, 'InternalServiceError');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    region,
    calls,
    count: () => calls.length,
    arn: (name) => {
      const s = store.get(name);
      if (!s) throw new Error(`no secret ${name} in the fake Secrets Manager`);
      return arnOf(name, s);
    },
    setSecret,
    deleteSecret: (name) => {
      store.delete(name);
    },
    setFault: (f) => {
      fault = f ? { ...f } : undefined;
    },
    client: () =>
      createSecretsManagerClient({
        endpoint: url,
        region,
        credentials: { accessKeyId: 'AKIDFAKEFAKEFAKE', secretAccessKey: 'fake-secret-access-key' },
        maxAttempts: 1,
      }),
    setCertificate: (next) => {
      server.setSecureContext({ cert: next.cert, key: next.key });
      server.closeAllConnections();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

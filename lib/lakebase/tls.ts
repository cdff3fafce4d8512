// Verified TLS for every HTTPS request the jobs make (Databricks REST, OIDC discovery, the OAuth
// token exchange, Secrets Manager). The server certificate is checked against Node's roots plus
// NODE_EXTRA_CA_CERTS, with `rejectUnauthorized: true` set on the agent itself: agent options win
// over per-request options, so neither the Databricks SDK's own request option (which
// DATABRICKS_SDK_PROXY_STRICT_SSL=false turns off) nor NODE_TLS_REJECT_UNAUTHORIZED=0 (which only
// changes the default) can turn verification off. There is deliberately no option to do so.
import { Agent, type AgentOptions } from 'node:https';
import type { Duplex } from 'node:stream';

/** Node's codes for a server certificate that failed verification. */
export const TLS_FAILURE_CODES: ReadonlySet<string> = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_CA',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** The certificate-failure code of `error`, if it is one. */
export function tlsFailureCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && TLS_FAILURE_CODES.has(code) ? code : undefined;
}

export interface TlsFailure {
  /** host[:port] whose certificate failed. */
  host: string;
  code: string;
}

/**
 * An HTTPS agent that always verifies, and remembers the last certificate failure: the Databricks
 * SDK rewraps errors of OIDC discovery and the token exchange as text, so the error that reaches us
 * no longer carries Node's code; the agent saw the socket fail and still knows it.
 */
export class VerifiedAgent extends Agent {
  #lastFailure: TlsFailure | undefined;
  #seq = 0;

  /** Connection pooling and timeout only: nothing about trust can be passed in. */
  constructor(options: Pick<AgentOptions, 'keepAlive' | 'keepAliveMsecs' | 'maxSockets' | 'timeout'> = {}) {
    const { keepAlive, keepAliveMsecs, maxSockets, timeout } = options;
    super({
      ...(keepAlive === undefined ? {} : { keepAlive }),
      ...(keepAliveMsecs === undefined ? {} : { keepAliveMsecs }),
      ...(maxSockets === undefined ? {} : { maxSockets }),
      ...(timeout === undefined ? {} : { timeout }),
      rejectUnauthorized: true,
    });
  }

  /** The last certificate failure on this agent's connections. */
  get lastFailure(): TlsFailure | undefined {
    return this.#lastFailure;
  }

  /** How many certificate failures there have been (compare before and after a call). */
  get failures(): number {
    return this.#seq;
  }

  override createConnection(
    options: Parameters<Agent['createConnection']>[0],
    callback?: Parameters<Agent['createConnection']>[1],
  ): Duplex {
    const socket = super.createConnection(options, callback) as Duplex;
    const target = options as { host?: string; hostname?: string; port?: number | string };
    socket.once('error', (error: unknown) => {
      const code = tlsFailureCode(error);
      if (!code) return;
      const host = target.host ?? target.hostname ?? 'unknown host';
      const port = target.port && String(target.port) !== '443' ? `:${target.port}` : '';
      this.#seq += 1;
      this.#lastFailure = { host: `${host}${port}`, code };
    });
    return socket;
  }
}

/** Node's own wording for a code, e.g. "self-signed certificate", for the one-line message. */
export function describeTlsCode(code: string): string {
  switch (code) {
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return 'the certificate is not for this host name';
    case 'CERT_HAS_EXPIRED':
      return 'the certificate has expired';
    case 'CERT_NOT_YET_VALID':
      return 'the certificate is not valid yet';
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return 'the certificate is self-signed or from a CA this function does not trust';
    default:
      return 'the certificate does not chain to a CA this function trusts';
  }
}

/** The one-line message of a certificate failure: names the host and what to check; never how to skip it. */
export function untrustedMessage(what: string, host: string, code: string): string {
  return `the TLS certificate of ${host} failed verification while ${what} (${code}: ${describeTlsCode(code)}); nothing was sent: check that the host is right and, behind a TLS-inspecting proxy, add its CA with NODE_EXTRA_CA_CERTS. Verification cannot be turned off`;
}

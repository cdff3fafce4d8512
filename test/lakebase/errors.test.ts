// Redaction and one-line messages: the last line of defence before a log line.
import { Logger } from '@aws-lambda-powertools/logger';
import { expect, test, vi } from 'vitest';
import { registerSecret } from '../../lib/lakebase/errors.ts';
import { LakebaseError, type Log, redact } from '../../lib/lakebase/index.ts';
import { backoffDelay } from '../../lib/lakebase/retry.ts';

test('registered secrets are removed wherever they appear', () => {
  registerSecret('fake-pg-token-0123456789');
  expect(redact('login with fake-pg-token-0123456789 failed (fake-pg-token-0123456789)')).toBe(
    'login with *** failed (***)',
  );
});

test('the client secret stays redacted however many credentials a warm container mints', () => {
  const clientSecret = 'sp-client-secret-that-lives-long';
  registerSecret(clientSecret, { pin: true });
  // Minted tokens are bounded (the oldest forgotten first); a day of hourly mints and more.
  for (let i = 0; i < 200; i += 1) registerSecret(`fake-pg-token-minted-${i.toString().padStart(4, '0')}`);
  expect(redact(`401 for ${clientSecret}`)).toBe('401 for ***');
  expect(redact('fake-pg-token-minted-0199')).toBe('***');
});

test.each([
  ['Authorization: Bearer abc.def-ghi_123', 'Authorization: Bearer ***'],
  ['header Basic dXNlcjpwYXNz', 'header Basic ***'],
  ['token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTYifQ.sig-nature', 'token ***'],
  ['secret dose0123456789abcdef0123 here', 'secret *** here'],
  ['postgres://jobs:p4ss%40word@host:5432/db', 'postgres://jobs:***@host:5432/db'],
  ['{"client_secret": "abc", "access_token":"xyz"}', '{"client_secret": "***", "access_token":"***"}'],
  ['store {"client_secret": "<OAuth secret>"}', 'store {"client_secret": "<OAuth secret>"}'],
])('credential-shaped text is masked: %s', (input, expected) => {
  expect(redact(input)).toBe(expected);
});

test('LakebaseError: one line, redacted, stable code, short', () => {
  registerSecret('dose-registered-secret-xyz');
  const error = new LakebaseError(
    'OAUTH_FAILED',
    `line one\n  line two with dose-registered-secret-xyz\r\n${'x'.repeat(2000)}`,
  );
  expect(error.code).toBe('OAUTH_FAILED');
  expect(error.message).not.toMatch(/[\r\n]/);
  expect(error.message).toMatch(/^line one line two with \*\*\* x+\.\.\.$/);
  expect(error.message.length).toBeLessThanOrEqual(700);
  expect(error).not.toHaveProperty('cause');
});

test('backoff: exponential cap, equal jitter, never above the maximum', () => {
  const policy = { budgetMs: 20_000, baseDelayMs: 250, maxDelayMs: 4_000 };
  expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, policy, () => 0))).toEqual([
    125, 250, 500, 1000, 2000, 2000,
  ]);
  expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, policy, () => 1))).toEqual([
    250, 500, 1000, 2000, 4000, 4000,
  ]);
});

test('a Powertools Logger can be passed as the library log', () => {
  const lines: string[] = [];
  const logger = new Logger({ serviceName: 'lakets-test', logLevel: 'DEBUG' });
  const log: Log = logger;
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    log.info('resolved the Lakebase endpoint', { endpoint: 'projects/p/branches/b/endpoints/e' });
  } finally {
    spy.mockRestore();
  }
  expect(lines.join('')).toContain('"endpoint":"projects/p/branches/b/endpoints/e"');
});

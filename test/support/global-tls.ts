// Vitest global setup: the fakes' throwaway CA for the run. Set in NODE_EXTRA_CA_CERTS here, before
// the test workers are forked (they inherit this process's environment), so the tests trust the fake
// workspace and Secrets Manager exactly the way a deployed function trusts a private CA.
import { createFakeTls, type FakeTls, removeFakeTls } from '../../dev/fake-tls.ts';

let tls: FakeTls | undefined;

export function setup(): void {
  tls = createFakeTls();
}

export function teardown(): void {
  if (tls) removeFakeTls(tls);
}

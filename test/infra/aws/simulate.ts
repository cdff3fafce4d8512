// AWS's decision on one request, from a real IAM policy evaluator (@cloud-copilot/iam-simulate): identity
// policies of the calling role, and the resource's own policy (a trust policy, a queue or topic policy).
import { runSimulation } from '@cloud-copilot/iam-simulate';
import type { Request } from './requests.ts';

export type Decision = 'Allowed' | 'ExplicitlyDenied' | 'ImplicitlyDenied';

// biome-ignore lint/suspicious/noExplicitAny: IAM policy documents are untyped JSON
export type PolicyDocument = Record<string, any>;

export interface Policies {
  /** The policies attached to the calling role (none for a service principal). */
  readonly identity?: readonly PolicyDocument[];
  /** The resource's policy: a role's trust policy, a queue policy, a topic policy. */
  readonly resource?: PolicyDocument;
}

/** The account an ARN belongs to (IAM ARNs have no region, so the account is always field 5). */
function accountOf(arn: string): string {
  const account = arn.split(':')[4];
  if (!account || !/^\d{12}$/.test(account)) throw new Error(`no account in ${arn}`);
  return account;
}

export async function decide(request: Request, policies: Policies): Promise<Decision> {
  const response = await runSimulation(
    {
      request: {
        principal: request.principal,
        action: request.action,
        resource: { resource: request.resource, accountId: accountOf(request.resource) },
        contextVariables: { ...request.context },
      },
      identityPolicies: (policies.identity ?? []).map((policy, i) => ({ name: `policy${i}`, policy })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      ...(policies.resource && { resourcePolicy: policies.resource }),
    },
    {},
  );
  // A request or policy the simulator cannot read is a broken test, never a denial.
  if (response.resultType === 'error') throw new Error(`simulation: ${JSON.stringify(response.errors)}`);
  return response.overallResult as Decision;
}

// The requests AWS makes on the deployment's behalf, each with the request context its service documents.
// Each is written once, here, and named after the call it models; the tests only pick which resource.
// Every request is made over TLS (aws:SecureTransport "true") unless a test says otherwise: AWS services
// call each other over HTTPS, and the queues and the topic deny anything else.

export interface Request {
  /** An IAM principal ARN (a role session), or a service principal such as scheduler.amazonaws.com. */
  readonly principal: string;
  readonly action: string;
  readonly resource: string;
  readonly context: Readonly<Record<string, string>>;
}

const TLS = { 'aws:SecureTransport': 'true' } as const;

/** A role's session, as the principal of the calls it makes (the session name does not matter to policies). */
export function roleSession(roleArn: string, session = 'session'): string {
  const m = /^arn:([^:]+):iam::(\d{12}):role\/(?:.*\/)?([^/]+)$/.exec(roleArn);
  if (!m) throw new Error(`not a role ARN: ${roleArn}`);
  return `arn:${m[1]}:sts::${m[2]}:assumed-role/${m[3]}/${session}`;
}

/**
 * EventBridge Scheduler assumes a schedule's execution role. EventBridge Scheduler User Guide, "Setting up
 * the execution role" and "Confused deputy prevention": Scheduler presents aws:SourceAccount (the account)
 * and aws:SourceArn = the ARN of the schedule's *group* (arn:…:scheduler:<region>:<account>:schedule-group/<group>);
 * the guide says not to scope aws:SourceArn to a schedule or a schedule name prefix.
 */
export function schedulerAssumesRole(roleArn: string, account: string, scheduleGroupArn: string): Request {
  return {
    principal: 'scheduler.amazonaws.com',
    action: 'sts:AssumeRole',
    resource: roleArn,
    context: { ...TLS, 'aws:SourceAccount': account, 'aws:SourceArn': scheduleGroupArn },
  };
}

/**
 * The schedule's target call, made with the execution role: lambda:InvokeFunction on the function's
 * (unqualified) ARN. EventBridge Scheduler User Guide, "Setting up the execution role" (the role's
 * permissions for the target) and the Lambda target ("Using universal and templated targets").
 */
export function schedulerInvokesFunction(roleArn: string, functionArn: string): Request {
  return {
    principal: roleSession(roleArn),
    action: 'lambda:InvokeFunction',
    resource: functionArn,
    context: TLS,
  };
}

/**
 * A delivery Scheduler gave up on goes to the schedule's dead-letter queue, written with the execution role.
 * EventBridge Scheduler User Guide, "Configuring a dead-letter queue": the role needs sqs:SendMessage on it.
 */
export function schedulerWritesDeadLetter(roleArn: string, queueArn: string): Request {
  return { principal: roleSession(roleArn), action: 'sqs:SendMessage', resource: queueArn, context: TLS };
}

/**
 * Lambda's on-failure destination for asynchronous invocations is written with the function's execution
 * role. Lambda Developer Guide, "Asynchronous invocation" (destinations): the role needs sqs:SendMessage.
 */
export function lambdaWritesFailureDestination(executionRoleArn: string, queueArn: string): Request {
  return {
    principal: roleSession(executionRoleArn),
    action: 'sqs:SendMessage',
    resource: queueArn,
    context: TLS,
  };
}

/**
 * The handler reads the service principal's secret with the function's execution role. Secrets Manager
 * User Guide, "Authentication and access control" (GetSecretValue on the secret's ARN, which ends in
 * "-" and six random characters). A secret encrypted with a customer managed key also needs
 * kms:Decrypt: functionDecryptsSecret.
 */
export function functionReadsSecret(executionRoleArn: string, secretArn: string): Request {
  return {
    principal: roleSession(executionRoleArn),
    action: 'secretsmanager:GetSecretValue',
    resource: secretArn,
    context: TLS,
  };
}

/**
 * GetSecretValue of a secret under a customer managed key: Secrets Manager calls kms:Decrypt on the key
 * with the caller's credentials, and KMS sets kms:ViaService = secretsmanager.<region>.amazonaws.com
 * (AWS KMS Developer Guide, "kms:ViaService"; Secrets Manager User Guide, "Secret encryption and
 * decryption"). `viaSecretsManager: false` is the function calling KMS directly, without that key.
 */
export function functionDecryptsSecret(
  executionRoleArn: string,
  keyArn: string,
  region: string,
  viaSecretsManager: boolean,
): Request {
  const account = keyArn.split(':')[4] ?? '';
  return {
    principal: roleSession(executionRoleArn),
    action: 'kms:Decrypt',
    resource: keyArn,
    context: {
      ...TLS,
      'kms:CallerAccount': account,
      ...(viaSecretsManager && { 'kms:ViaService': `secretsmanager.${region}.amazonaws.com` }),
    },
  };
}

/**
 * A CloudWatch alarm's SNS action publishes to the topic as the service principal cloudwatch.amazonaws.com,
 * with aws:SourceAccount = the alarm's account and aws:SourceArn = the alarm's ARN
 * (arn:…:cloudwatch:<region>:<account>:alarm:<name>). Amazon SNS Developer Guide, "Example cases for
 * Amazon SNS access control" (AWS service publishing, confused deputy) and CloudWatch User Guide, "Using
 * Amazon SNS topics with alarms". `secure: false` is the same publish over plain HTTP.
 */
export function cloudWatchPublishesAlarm(
  topicArn: string,
  account: string,
  alarmArn: string,
  secure = true,
): Request {
  return {
    principal: 'cloudwatch.amazonaws.com',
    action: 'sns:Publish',
    resource: topicArn,
    context: {
      'aws:SecureTransport': String(secure),
      'aws:SourceAccount': account,
      'aws:SourceArn': alarmArn,
    },
  };
}

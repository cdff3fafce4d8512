// A Lambda context for running the real handlers outside Lambda (the CLI, the demo, the tests).
import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';
import type { JobName } from '../lib/jobs/types.ts';

export function lambdaContext(job: JobName, timeoutMs = 15 * 60_000): Context {
  const deadline = Date.now() + timeoutMs;
  const functionName = `lakets-${job}`;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: '256',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

/** The event EventBridge Scheduler sends (the stack's schedules pass these context attributes). */
export function schedulerEvent(job: JobName, at = new Date()): Record<string, string> {
  return {
    source: 'aws.scheduler',
    scheduleArn: `arn:aws:scheduler:local:000000000000:schedule/default/lakets-${job}`,
    scheduledTime: at.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    executionId: randomUUID(),
  };
}

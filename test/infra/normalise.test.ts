// The snapshot normaliser: asset hashes (code) must not churn the snapshot; infrastructure must.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { describe, expect, it } from 'vitest';
import { HASH_PLACEHOLDER, normaliseString, normaliseTemplate } from './normalise.ts';

// biome-ignore lint/suspicious/noTemplateCurlyInString: a CloudFormation Fn::Sub string, not a JS template
const BOOTSTRAP_BUCKET = 'cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}';

/** A real synthesized template whose function code is an asset directory holding `source`. */
function templateWith(source: string, timeoutSeconds = 60) {
  const dir = mkdtempSync(join(tmpdir(), 'lakets-normalise-'));
  writeFileSync(join(dir, 'index.mjs'), source);
  const app = new App();
  const stack = new Stack(app, 'Probe');
  new lambda.Function(stack, 'Fn', {
    runtime: lambda.Runtime.NODEJS_24_X,
    handler: 'index.handler',
    code: lambda.Code.fromAsset(dir),
    timeout: Duration.seconds(timeoutSeconds),
  });
  return app.synth().getStackByName('Probe').template;
}

describe('normaliseTemplate', () => {
  it('makes templates that differ only in asset hash equal', () => {
    const a = templateWith('export const handler = async () => 1;');
    const b = templateWith('export const handler = async () => 2;');
    expect(JSON.stringify(a)).not.toEqual(JSON.stringify(b)); // the hashes really differ
    expect(normaliseTemplate(a)).toEqual(normaliseTemplate(b));
    expect(JSON.stringify(normaliseTemplate(a))).toContain(`${HASH_PLACEHOLDER}.zip`);
  });

  it('keeps a changed timeout visible', () => {
    const a = templateWith('export const handler = async () => 1;', 60);
    const b = templateWith('export const handler = async () => 2;', 61);
    expect(normaliseTemplate(a)).not.toEqual(normaliseTemplate(b));
  });

  it('replaces hashes in keys and values, including legacy asset parameter names', () => {
    const hash = 'ab'.repeat(32);
    const input = {
      Parameters: { [`AssetParameters${hash}S3Bucket1A2B3C4D`]: { Type: 'String' } },
      S3Key: `${hash}.zip`,
      Image: `123456789012.dkr.ecr.eu-west-1.amazonaws.com/cdk-hnb659fds-container-assets-123456789012-eu-west-1:${hash}`,
      Path: `asset.${hash}`,
      Untouched: [BOOTSTRAP_BUCKET, 42, true, null],
    };
    expect(normaliseTemplate(input)).toEqual({
      Parameters: { [`AssetParameters${HASH_PLACEHOLDER}S3Bucket`]: { Type: 'String' } },
      S3Key: `${HASH_PLACEHOLDER}.zip`,
      Image: `123456789012.dkr.ecr.eu-west-1.amazonaws.com/cdk-hnb659fds-container-assets-123456789012-eu-west-1:${HASH_PLACEHOLDER}`,
      Path: `asset.${HASH_PLACEHOLDER}`,
      Untouched: [BOOTSTRAP_BUCKET, 42, true, null],
    });
  });

  it('leaves shorter hex strings (logical id suffixes, account ids) alone', () => {
    expect(normaliseString('FunctionServiceRole675BB04A')).toBe('FunctionServiceRole675BB04A');
    expect(normaliseString('a'.repeat(63))).toBe('a'.repeat(63));
  });
});

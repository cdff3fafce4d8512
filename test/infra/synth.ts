// Synthesizes the real app (bundling the four functions with esbuild) for the infra tests.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { expect } from 'vitest';
import { defineApp, type LakeTsJobsStack } from '../../infra/stack.ts';
import { JOB_LIST } from '../../lib/jobs/catalog.ts';

export const REQUIRED_CONTEXT = {
  lakebaseProject: 'demo',
  databricksHost: 'https://x.cloud.databricks.com',
  spSecretName: 'lakets/sp',
} as const;

export interface ValidationReport {
  pluginReports: { pluginName: string; violations: { ruleName: string; severity: string }[] }[];
}

export interface Synthesized {
  readonly app: App;
  readonly stack: LakeTsJobsStack;
  // biome-ignore lint/suspicious/noExplicitAny: a CloudFormation template is untyped JSON
  readonly template: Record<string, any>;
  readonly report: ValidationReport;
  /** The cloud assembly's directory (the functions' bundles are its asset.<hash>/index.mjs). */
  readonly directory: string;
}

/** Synthesizes like `cdk synth` does; throws if cdk-nag (or any validation plugin) reports an error. */
export function synth(context: Record<string, unknown>): Synthesized {
  const app = new App({ context });
  const stack = defineApp(app);
  const assembly = app.synth();
  const template = assembly.getStackByName(stack.stackName).template;
  const report = JSON.parse(readFileSync(join(assembly.directory, 'validation-report.json'), 'utf8'));
  return { app, stack, template, report, directory: assembly.directory };
}

/**
 * Every cdk-nag AwsSolutions acknowledgement recorded with Validations.of(x).acknowledge(), by construct
 * path. (aws-cdk-lib records its own for other plugins, e.g. CloudFormation-Validate::W3010.)
 */
export function acknowledgements(root: IConstruct): { path: string; id: string; reason: string }[] {
  return root.node.findAll().flatMap((c) =>
    c.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) =>
        Object.entries(m.data as Record<string, string>).map(([id, reason]) => ({
          path: c.node.path,
          id: id.replace(/^annotation::/i, ''),
          reason,
        })),
      )
      .filter((ack) => ack.id.startsWith('AwsSolutions-')),
  );
}

/**
 * cdk-nag AwsSolutions findings with acknowledgements ignored, i.e. what the acknowledgements hide.
 * Lets a test prove every acknowledgement is still needed and every finding is acknowledged.
 */
export function findingsIgnoringAcknowledgements(root: IConstruct): { path: string; id: string }[] {
  const pack = new AwsSolutionsChecks();
  // isAcknowledged is private API of cdk-nag 3; overriding it on the instance keeps the rules themselves real.
  Object.defineProperty(pack, 'isAcknowledged', { value: () => false });
  return pack
    .validateScope(root)
    .violations.flatMap((v) =>
      v.violatingResources.map((r) => ({ path: r.constructPath ?? '', id: v.ruleName })),
    );
}

/** A synthesized function's asset folder: the assembly holds it in asset.<hash>/ (the code's S3 key). */
export function assetDirOf(directory: string, fn: { Properties: { Code: { S3Key: string } } }): string {
  return join(directory, `asset.${fn.Properties.Code.S3Key.replace(/\.zip$/, '')}`);
}

/** The bundle of a synthesized function (its asset folder's index.mjs). */
export function bundleOf(directory: string, fn: { Properties: { Code: { S3Key: string } } }): string {
  return readFileSync(join(assetDirOf(directory, fn), 'index.mjs'), 'utf8');
}

/**
 * The LakeTS calls only `job` makes (`lakets.<fn>(`): a bundle holding another job's logic holds that
 * job's calls.
 */
export function ownCalls(job: (typeof JOB_LIST)[number]): string[] {
  return job.needs.functions
    .map(([fn]) => fn)
    .filter((fn) =>
      JOB_LIST.every((other) => other === job || other.needs.functions.every(([f]) => f !== fn)),
    )
    .map((fn) => `lakets.${fn}(`);
}

/** Asserts that `code` (a function's bundle) holds job `name`'s own LakeTS calls and no other job's. */
export function expectOwnJobOnly(code: string, name: string | undefined): void {
  expect(
    JOB_LIST.some((j) => j.name === name),
    `a job named ${name}`,
  ).toBe(true);
  for (const job of JOB_LIST) {
    const calls = ownCalls(job);
    expect(calls.length).toBeGreaterThan(0);
    for (const call of calls) {
      if (job.name === name) expect(code).toContain(call);
      else expect(code, `${name} bundle holds ${job.name}'s ${call}`).not.toContain(call);
    }
  }
}

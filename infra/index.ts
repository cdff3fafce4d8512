// The package's public API: what a CDK app imports from 'lakets-jobs-aws' (docs/construct.md).
export { type JobOverride, parseTargets, type TargetEntry, type TargetJobName } from '../lib/estate.ts';
export type { EstateTarget } from './config.ts';
export { type AlarmTarget, ConfigError, type VpcConfig } from './config.ts';
export type { LakeTsJob } from './job.ts';
export { LakeTsJobs, type LakeTsJobsProps } from './lakets-jobs.ts';
export type { Monitoring } from './monitoring.ts';

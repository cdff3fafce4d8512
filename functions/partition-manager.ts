// Lambda handler for the partition-manager job (every 6 h: lakets._ensure_partitions() per ChronoTable).
// Thin on purpose: the job (its whole definition) is lib/jobs/partition-manager.ts, the middy/Powertools wiring
// lib/job-handler.ts. Only this job is imported, so the bundle holds no other job.
import { makeHandler } from '../lib/job-handler.ts';
import { partitionManager } from '../lib/jobs/partition-manager.ts';

export const handler = makeHandler(partitionManager);

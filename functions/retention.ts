// Lambda handler for the retention job (daily 03:00: drops expired partitions, only when proven durable).
// Thin on purpose: the job (its whole definition) is lib/jobs/retention.ts, the middy/Powertools wiring
// lib/job-handler.ts. Only this job is imported, so the bundle holds no other job.
import { makeHandler } from '../lib/job-handler.ts';
import { retention } from '../lib/jobs/retention.ts';

export const handler = makeHandler(retention);

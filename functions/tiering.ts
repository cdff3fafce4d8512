// Lambda handler for the tiering job (daily 02:00: flags cold chunks proven durable in Unity Catalog as tiered).
// Thin on purpose: the job (its whole definition) is lib/jobs/tiering.ts, the middy/Powertools wiring
// lib/job-handler.ts. Only this job is imported, so the bundle holds no other job.
import { makeHandler } from '../lib/job-handler.ts';
import { tiering } from '../lib/jobs/tiering.ts';

export const handler = makeHandler(tiering);

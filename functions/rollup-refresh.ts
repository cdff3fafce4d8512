// Lambda handler for the rollup-refresh job (every 15 min: refreshes RollUps in dependency order).
// Thin on purpose: the job (its whole definition) is lib/jobs/rollup-refresh.ts, the middy/Powertools wiring
// lib/job-handler.ts. Only this job is imported, so the bundle holds no other job.
import { makeHandler } from '../lib/job-handler.ts';
import { rollupRefresh } from '../lib/jobs/rollup-refresh.ts';

export const handler = makeHandler(rollupRefresh);

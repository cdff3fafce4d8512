// Lambda handler for the rollup-refresh job (every 15 min: refreshes RollUps in dependency order).
// Thin on purpose: the job is lib/jobs/rollup-refresh.ts, the middy/Powertools wiring lib/job-handler.ts.
import { makeHandler } from '../lib/job-handler.ts';

export const handler = makeHandler('rollup-refresh');

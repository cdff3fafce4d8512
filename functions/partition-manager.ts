// Lambda handler for the partition-manager job (every 6 h: lakets._ensure_partitions() per ChronoTable).
// Thin on purpose: the job is lib/jobs/partition-manager.ts, the middy/Powertools wiring lib/job-handler.ts.
import { makeHandler } from '../lib/job-handler.ts';

export const handler = makeHandler('partition-manager');

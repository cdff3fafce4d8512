// Lambda handler for the retention job (daily 03:00: drops expired partitions, only when proven durable).
// Thin on purpose: the job is lib/jobs/retention.ts, the middy/Powertools wiring lib/job-handler.ts.
import { makeHandler } from '../lib/job-handler.ts';

export const handler = makeHandler('retention');

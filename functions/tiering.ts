// Lambda handler for the tiering job (daily 02:00: flags cold chunks proven durable in Unity Catalog as tiered).
// Thin on purpose: the job is lib/jobs/tiering.ts, the middy/Powertools wiring lib/job-handler.ts.
import { makeHandler } from '../lib/job-handler.ts';

export const handler = makeHandler('tiering');

// The catalogue: the four job definitions, for what must list every job (infra/, npm run invoke,
// npm run check, the demo, the report renderer). A handler imports its own job's definition instead,
// so its bundle holds that job only.
import { partitionManager } from './partition-manager.ts';
import { retention } from './retention.ts';
import { rollupRefresh } from './rollup-refresh.ts';
import type { JobName } from './spec.ts';
import { tiering } from './tiering.ts';

export type { JobName };

/** In schedule order: the order of the stack's functions, the dashboard's rows and npm run check's items. */
export const JOB_LIST = [partitionManager, tiering, retention, rollupRefresh] as const;

// Compile-time: the list holds a definition for every JobName (it cannot hold a name that is not one).
const everyNameListed: [JobName] extends [(typeof JOB_LIST)[number]['name']] ? true : never = true;
void everyNameListed;

export const JOB_NAMES: readonly JobName[] = JOB_LIST.map((j) => j.name);

/** The definitions by name. */
export const JOBS = Object.fromEntries(JOB_LIST.map((j) => [j.name, j])) as {
  readonly [N in JobName]: Extract<(typeof JOB_LIST)[number], { name: N }>;
};

/** The definition of a job named on a command line or in a test. */
export function jobNamed(name: JobName): (typeof JOB_LIST)[number] {
  return JOBS[name];
}

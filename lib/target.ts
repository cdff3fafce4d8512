// Which database an invocation is for: the event's target name, resolved against the deployment's
// targets (lib/estate.ts) to that target's connection configuration, parsed by the same rules as
// today's single-target environment. A deployment without targets is a one-target estate, `default`.
import { getConfig, type LakebaseConfig, parseConfig } from './config.ts';
import {
  DEFAULT_TARGET,
  deployedTargets,
  findTarget,
  listNames,
  type TargetEntry,
  targetEnv,
} from './estate.ts';
import { PayloadError } from './jobs/payload.ts';
import { ConfigError } from './settings.ts';

export interface ResolvedTarget {
  readonly name: string;
  readonly config: LakebaseConfig;
}

export type TargetResolver = (requested: string | undefined) => ResolvedTarget;

function quoted(name: string): string {
  return JSON.stringify(name.length > 60 ? `${name.slice(0, 57)}...` : name);
}

/**
 * A resolver for the deployment's targets, read on first use from `env` (the bundled constant wins)
 * and kept; each target's configuration is parsed once and kept too. Throws PayloadError for a missing
 * or unknown target (listing the names), ConfigError (naming the target) for a target whose settings
 * the handlers' rules refuse.
 */
export function targetResolver(env: Record<string, string | undefined> = process.env): TargetResolver {
  let entries: TargetEntry[] | null | undefined;
  const configs = new Map<string, LakebaseConfig>();
  return (requested) => {
    if (entries === undefined) entries = deployedTargets(env).entries ?? null;
    if (entries === null) {
      if (requested !== undefined && requested !== DEFAULT_TARGET) {
        throw new PayloadError(
          `target ${quoted(requested)} is not a target of this deployment: it maintains one database, target "${DEFAULT_TARGET}"; send {"target": "${DEFAULT_TARGET}"} or no target`,
        );
      }
      return { name: DEFAULT_TARGET, config: env === process.env ? getConfig() : parseConfig(env) };
    }
    let entry: TargetEntry | undefined;
    if (requested === undefined) {
      // One target needs no name; several do.
      if (entries.length === 1) entry = entries[0];
      else {
        throw new PayloadError(
          `this deployment maintains ${entries.length} targets: name one, e.g. {"target": "${entries[0]?.name}"}; targets: ${listNames(entries)}`,
        );
      }
    } else {
      entry = findTarget(entries, requested);
      if (!entry) {
        throw new PayloadError(
          `target ${quoted(requested)} is not a target of this deployment; targets: ${listNames(entries)}`,
        );
      }
    }
    if (!entry) throw new Error('unreachable: no target entry');
    let config = configs.get(entry.name);
    if (!config) {
      try {
        config = parseConfig(targetEnv(entry));
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        throw new ConfigError(error.variable, `target "${entry.name}": ${error.message}`);
      }
      configs.set(entry.name, config);
    }
    return { name: entry.name, config };
  };
}

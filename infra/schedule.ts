// Each job's EventBridge Scheduler expression and time zone, chosen so that no run is lost or doubled
// when clocks change. Scheduler evaluates a cron in ScheduleExpressionTimezone, skips a local time that
// does not exist on a day (spring forward) and runs a repeated one once (fall back):
// - a sub-daily job has no business with a wall clock: its cron runs in UTC, where every hour exists once,
//   so RollUp Refresh never loses the repeated hour and Partition Manager keeps its 6-hour beat;
// - a daily job runs at a local time of the configured zone, which must exist exactly once on every day.
//   When a job's preferred time does not (02:00 in most of Europe and North America), all daily jobs move
//   later together by whole hours, keeping their order and spacing, to the first times that do.
import type { JobSpec } from '../lib/jobs/spec.ts';

export interface SchedulePlan {
  /** ScheduleExpression, e.g. cron(0 3 * * ? *). */
  readonly expression: string;
  /** ScheduleExpressionTimezone: UTC for sub-daily jobs, the configured zone for daily ones. */
  readonly timezone: string;
}

const DAY_MINUTES = 24 * 60;
/** Years checked for a daily time, from the year of the synth: the rules a deployment will meet. */
export const CHECKED_YEARS = 5;
const DAILY_CRON = /^cron\((\d{1,2}) (\d{1,2}) \* \* \? \*\)$/;

export const isDaily = (spec: JobSpec): boolean => spec.periodMinutes === DAY_MINUTES;

/** The preferred local time of a daily job, from its `cron(<minute> <hour> * * ? *)`. */
export function dailyTime(spec: JobSpec): { hour: number; minute: number } {
  const m = DAILY_CRON.exec(spec.schedule);
  if (!m || Number(m[1]) > 59 || Number(m[2]) > 23)
    throw new Error(
      `${spec.name}: a daily job's schedule must be cron(<minute> <hour> * * ? *), not ${spec.schedule}`,
    );
  return { minute: Number(m[1]), hour: Number(m[2]) };
}

/** The schedule of one job, given the zone and the shift of the daily jobs (dailyShiftHours). */
export function jobSchedule(spec: JobSpec, zone: string, shiftHours: number): SchedulePlan {
  if (!isDaily(spec)) return { expression: spec.schedule, timezone: 'UTC' };
  const { hour, minute } = dailyTime(spec);
  return { expression: `cron(${minute} ${(hour + shiftHours) % 24} * * ? *)`, timezone: zone };
}

/**
 * The smallest whole-hour shift (0-23) after which the local time of every daily job exists exactly once
 * on every day of `years` years from `fromYear` in `zone`; undefined when there is none (no real zone).
 */
export function dailyShiftHours(
  zone: string,
  specs: readonly JobSpec[],
  fromYear: number,
  years = CHECKED_YEARS,
): number | undefined {
  const times = specs.filter(isDaily).map(dailyTime);
  const clock = new ZoneClock(zone);
  for (let shift = 0; shift < 24; shift++) {
    const shifted = times.map(({ hour, minute }) => ({ hour: (hour + shift) % 24, minute }));
    if (shifted.every((t) => clock.onceEveryDay(t.hour, t.minute, fromYear, years))) return shift;
  }
  return undefined;
}

/** Wall-clock arithmetic in one IANA zone with Intl only. */
class ZoneClock {
  readonly #format: Intl.DateTimeFormat;

  constructor(zone: string) {
    this.#format = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
    });
  }

  /** The wall time of an instant, as if it were UTC (ms), to compare with Date.UTC values. */
  wall(instant: number): number {
    const p = Object.fromEntries(this.#format.formatToParts(instant).map((x) => [x.type, Number(x.value)]));
    return Date.UTC(p.year ?? 0, (p.month ?? 1) - 1, p.day, p.hour, p.minute);
  }

  /** How many instants show the wall time `local` (a Date.UTC value): 0 skipped, 1, or 2 repeated. */
  occurrences(local: number): number {
    // Offsets in force a day either side cover any transition near `local`; zone rules never change twice in two days.
    const offsets = new Set(
      [-1, 0, 1].map((d) => this.wall(local + d * 86_400_000) - (local + d * 86_400_000)),
    );
    return [...offsets].filter((offset) => this.wall(local - offset) === local).length;
  }

  onceEveryDay(hour: number, minute: number, fromYear: number, years: number): boolean {
    const end = Date.UTC(fromYear + years, 0, 1);
    for (let day = Date.UTC(fromYear, 0, 1); day < end; day += 86_400_000) {
      if (this.occurrences(day + (hour * 60 + minute) * 60_000) !== 1) return false;
    }
    return true;
  }
}

/**
 * The flexible time window of a job's schedules in an estate, in minutes (0 is OFF): Scheduler starts each
 * target's run at a random moment inside it, so a thousand targets do not start in the same second.
 * Sized so a run started at the window's end, delivered late (its retries) and running to its timeout,
 * still ends before the next slot, and so Tiering (daily, an hour before Retention) ends before Retention
 * may start: daily 30 minutes (30 + 15-minute timeout < 60); 6-hourly 60 minutes. A job every 15 minutes
 * has no room (3 + 1 + 10 minutes of its 15 are taken): OFF, and spread by `staggered` instead.
 */
export function flexibleWindowMinutes(spec: JobSpec): number {
  if (spec.periodMinutes < 60) return 0;
  return isDaily(spec) ? 30 : 60;
}

const SUB_HOURLY_CRON = /^cron\(0\/(\d{1,2}) (.+)\)$/;

/**
 * A sub-hourly job's schedule for one target, its minutes offset by a hash of the target's name (stable
 * when targets are added or removed): the targets of an estate spread evenly over the period, and each
 * keeps the job's exact spacing. Other jobs keep their plan (their window spreads them).
 */
export function staggered(plan: SchedulePlan, spec: JobSpec, target: string): SchedulePlan {
  const m = SUB_HOURLY_CRON.exec(plan.expression);
  if (!m || spec.periodMinutes >= 60) return plan;
  let hash = 0x811c9dc5;
  for (const c of target) hash = Math.imul(hash ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return { ...plan, expression: `cron(${hash % Number(m[1])}/${m[1]} ${m[2]})` };
}

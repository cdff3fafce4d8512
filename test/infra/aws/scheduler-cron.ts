// When EventBridge Scheduler fires a schedule: its ScheduleExpression read in ScheduleExpressionTimezone,
// with the rule its user guide gives for daylight saving time ("Schedule types", cron expressions and
// time zones): a local time that does not exist on a day is skipped, a local time that occurs twice runs
// once. The evaluation walks real instants and reads each one's wall clock in the zone (Intl), so a skipped
// time simply never shows up, and a repeated one is kept at its first occurrence.
//
// Supported: cron(minutes hours day-of-month month day-of-week year) with *, ?, numbers, names, lists,
// ranges and /steps (no L, W or #), and rate(n minutes|hours|days). Every UTC offset in use is a multiple
// of 15 minutes, so a walk in 15-minute steps meets every local quarter hour; cron minutes must be
// multiples of 15 too (anything else throws, rather than be silently missed).

const STEP_MS = 15 * 60_000;
const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

type Field = ReadonlySet<number> | 'any';

function field(text: string, min: number, max: number, names: readonly string[] = [], base = 1): Field {
  if (text === '*' || text === '?') return 'any';
  const value = (v: string): number => {
    const named = names.indexOf(v.toUpperCase());
    const n = named >= 0 ? named + base : Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`cron value ${v} outside ${min}-${max}`);
    return n;
  };
  const out = new Set<number>();
  for (const item of text.split(',')) {
    if (/[LW#]/.test(item)) throw new Error(`cron ${item}: L, W and # are not supported here`);
    const [range = '', stepText] = item.split('/');
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1) throw new Error(`cron step ${stepText}`);
    const [from, to] =
      range === '*'
        ? [min, max]
        : range.includes('-')
          ? (range.split('-').map(value) as [number, number])
          : [value(range), stepText === undefined ? value(range) : max];
    for (let v = from; v <= to; v += step) out.add(v);
  }
  return out;
}

const matches = (f: Field, v: number) => f === 'any' || f.has(v);

interface Wall {
  readonly instant: number;
  readonly key: string;
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  /** 1 = Sunday … 7 = Saturday, as Scheduler's cron counts. */
  readonly weekday: number;
}

const wallCache = new Map<string, Wall[]>();

/** Every 15-minute instant of [from, to) with its wall clock in `zone`. */
function walls(zone: string, from: number, to: number): Wall[] {
  const cacheKey = `${zone} ${from} ${to}`;
  const cached = wallCache.get(cacheKey);
  if (cached) return cached;
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone: zone,
    hourCycle: 'h23',
    weekday: 'short',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
  });
  const out: Wall[] = [];
  for (let instant = from; instant < to; instant += STEP_MS) {
    const p = Object.fromEntries(format.formatToParts(instant).map((x) => [x.type, x.value]));
    const [year, month, day, hour, minute] = [p.year, p.month, p.day, p.hour, p.minute].map(Number) as [
      number,
      number,
      number,
      number,
      number,
    ];
    out.push({
      instant,
      key: `${year}-${month}-${day} ${hour}:${minute}`,
      year,
      month,
      day,
      hour,
      minute,
      weekday: DAYS.indexOf(String(p.weekday).toUpperCase()) + 1,
    });
  }
  wallCache.set(cacheKey, out);
  return out;
}

/** The instants (ms) at which Scheduler fires `expression` in `zone`, within [from, to). */
export function fireTimes(expression: string, zone: string, from: number, to: number): number[] {
  const rate = /^rate\((\d+) (minutes?|hours?|days?)\)$/.exec(expression);
  if (rate) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000 }[rate[2]?.[0] as 'm' | 'h' | 'd'];
    const every = Number(rate[1]) * unit;
    const out: number[] = [];
    for (let t = from; t < to; t += every) out.push(t);
    return out;
  }
  const cron = /^cron\((\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\)$/.exec(expression);
  if (!cron) throw new Error(`not a cron or rate expression: ${expression}`);
  const [minutes, hours, dom, month, dow, year] = [
    field(cron[1] as string, 0, 59),
    field(cron[2] as string, 0, 23),
    field(cron[3] as string, 1, 31),
    field(cron[4] as string, 1, 12, MONTHS),
    field(cron[5] as string, 1, 7, DAYS),
    field(cron[6] as string, 1970, 2199),
  ];
  if (minutes === 'any' || [...minutes].some((m) => m % 15 !== 0))
    throw new Error(`${expression}: minutes must be multiples of 15 for this evaluation`);
  const seen = new Set<string>();
  const out: number[] = [];
  for (const w of walls(zone, from, to)) {
    const due =
      matches(minutes, w.minute) &&
      matches(hours, w.hour) &&
      matches(dom, w.day) &&
      matches(month, w.month) &&
      matches(dow, w.weekday) &&
      matches(year, w.year);
    // A repeated local time (fall back) runs once: at its first occurrence.
    if (due && !seen.has(w.key)) {
      seen.add(w.key);
      out.push(w.instant);
    }
  }
  return out;
}

// The preflight check's report as text (npm run check, the demo).
import type { CheckReport } from '../lib/jobs/check.ts';

/** A check report as text: a header line, then one line per item and its fix. */
export function formatCheck(report: CheckReport): string {
  const who = report.role ? ` as role "${report.role}" on database "${report.database}"` : '';
  const { pass, warn, fail } = report.totals;
  const lines = [
    `LakeTS preflight check for ${report.jobs.join(', ')}${who}: ${report.status.toUpperCase()} (${pass} pass, ${warn} warn, ${fail} fail)`,
  ];
  const width = Math.min(48, Math.max(...report.items.map((i) => i.check.length)));
  for (const i of report.items) {
    lines.push(`  ${i.status.toUpperCase().padEnd(4)}  ${i.check.padEnd(width)}  ${i.detail}`);
    if (i.fix) lines.push(`  ${''.padEnd(4)}  ${''.padEnd(width)}  fix: ${i.fix}`);
  }
  return `${lines.join('\n')}\n`;
}

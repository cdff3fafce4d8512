// Renders a job report as text tables for people (the demo); `npm run invoke` prints JSON instead.
import { jobNamed } from '../lib/jobs/catalog.ts';
import type { ItemResult, JobReport } from '../lib/jobs/types.ts';

export function table(headers: string[], rows: string[][], maxWidth = 96): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  // The last column takes what is left and wraps.
  const fixed = widths.slice(0, -1).reduce((a, b) => a + b + 3, 0);
  const last = Math.max(20, maxWidth - fixed);
  widths[widths.length - 1] = Math.min(widths.at(-1) ?? last, last);
  const line = (cells: string[]) => {
    const wrapped = cells.map((c, i) => wrap(c, widths[i] ?? 10));
    const height = Math.max(...wrapped.map((w) => w.length));
    const out: string[] = [];
    for (let k = 0; k < height; k++) {
      out.push(`  ${wrapped.map((w, i) => (w[k] ?? '').padEnd(widths[i] ?? 0)).join(' | ')}`.trimEnd());
    }
    return out.join('\n');
  };
  const rule = `  ${widths.map((w) => '-'.repeat(w)).join('-+-')}`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

function wrap(text: string, width: number): string[] {
  if (text.length <= width) return [text];
  const lines: string[] = [];
  let current = '';
  for (const word of text.split(' ')) {
    if (current && current.length + 1 + word.length > width) {
      lines.push(current);
      current = '';
    }
    current = current ? `${current} ${word}` : word;
    while (current.length > width) {
      lines.push(current.slice(0, width));
      current = current.slice(width);
    }
  }
  if (current) lines.push(current);
  return lines;
}

function detail(counted: string, item: ItemResult): string {
  const parts: string[] = [];
  if (item.count !== undefined)
    parts.push(`${item.count} ${item.outcome.startsWith('would-') ? 'would be ' : ''}${counted}`);
  if (item.reason) parts.push(item.reason);
  return parts.join(': ');
}

export function formatReport(report: JobReport): string {
  const job = jobNamed(report.job);
  const totals = Object.entries(report.totals)
    .filter(([k, v]) => v > 0 && k !== 'items')
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const title = `${job.title}: ${report.status} in ${report.durationMs} ms${totals ? ` (${totals})` : ''}`;
  const head = [title, ...(report.warnings ?? []).map((w) => `  warning: ${w}`)].join('\n');
  if (report.items.length === 0) return `${head}\n  ${report.reason ?? 'nothing to do'}`;
  return `${head}\n${table(
    ['item', 'outcome', 'detail'],
    report.items.map((i) => [`${i.kind} ${i.name}`, i.outcome, detail(job.counted, i)]),
  )}`;
}

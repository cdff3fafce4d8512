// `npm run docs:settings`: rewrites the configuration table of docs/operations.md from lib/settings.ts,
// the one list of settings (test/infra/settings.test.ts fails while the two disagree).
import { readFileSync, writeFileSync } from 'node:fs';
import { withSettingsTable } from '../lib/settings.ts';

const path = new URL('../docs/operations.md', import.meta.url);
const before = readFileSync(path, 'utf8');
const after = withSettingsTable(before);
if (after === before) {
  console.log('docs/operations.md: the settings table is up to date');
} else {
  writeFileSync(path, after);
  console.log('docs/operations.md: settings table rewritten');
}

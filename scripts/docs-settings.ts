// `npm run docs:settings`: rewrites the configuration table of README.md from lib/settings.ts, the one
// list of settings (test/infra/settings.test.ts fails while the two disagree).
import { readFileSync, writeFileSync } from 'node:fs';
import { withSettingsTable } from '../lib/settings.ts';

const path = new URL('../README.md', import.meta.url);
const before = readFileSync(path, 'utf8');
const after = withSettingsTable(before);
if (after === before) {
  console.log('README.md: the settings table is up to date');
} else {
  writeFileSync(path, after);
  console.log('README.md: settings table rewritten');
}

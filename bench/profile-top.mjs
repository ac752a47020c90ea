#!/usr/bin/env node
// Prints the functions with the most self time in a V8 .cpuprofile (as
// written by `npm run bench -- --profile`), and the total time under each
// of lockwire's own source files.
// Usage: node bench/profile-top.mjs <file.cpuprofile> [rows, default 30]
import { readFileSync } from 'node:fs';

const [file, rowsArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: node bench/profile-top.mjs <file.cpuprofile> [rows]\n');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const self = new Map();
const interval = (profile.endTime - profile.startTime) / profile.samples.length / 1000;
for (const id of profile.samples) self.set(id, (self.get(id) ?? 0) + interval);

const label = (node) => {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url ? `${url.replace(/^.*\/(node_modules|dist|src)\//, '$1/')}:${lineNumber + 1}` : '';
  return `${functionName || '(anonymous)'} ${where}`.trim();
};

const totals = new Map();
let all = 0;
for (const [id, ms] of self) {
  const key = label(byId.get(id));
  totals.set(key, (totals.get(key) ?? 0) + ms);
  all += ms;
}
const rows = Number(rowsArg ?? 30);
process.stdout.write(`${all.toFixed(0)} ms sampled\nself ms   share  function\n`);
for (const [key, ms] of [...totals].sort((a, b) => b[1] - a[1]).slice(0, rows)) {
  process.stdout.write(`${ms.toFixed(1).padStart(8)} ${((ms / all) * 100).toFixed(1).padStart(5)}%  ${key}\n`);
}

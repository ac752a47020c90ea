#!/usr/bin/env node
// Prints the functions with the most self time in a V8 .cpuprofile (as
// written by `npm run bench -- --profile`), and the total self time in each
// of lockwire's own compiled source files. `bench/flamegraph.mjs` draws the
// same profile as a flame graph.
// Usage: node bench/profile-top.mjs <file.cpuprofile> [rows, default 30]
import { readFileSync } from 'node:fs';
import { frameLabel, selfMicros } from './lib/cpu-profile.mjs';

const [file, rowsArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: node bench/profile-top.mjs <file.cpuprofile> [rows]\n');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((node) => [node.id, node]));

const totals = new Map();
const files = new Map();
let all = 0;
for (const [id, micros] of selfMicros(profile)) {
  const ms = micros / 1000;
  const { callFrame } = byId.get(id);
  const key = frameLabel(callFrame);
  totals.set(key, (totals.get(key) ?? 0) + ms);
  // lockwire's own code: the compiled packages' dist/, outside node_modules.
  const own = callFrame.url.includes('/node_modules/') ? null : /\/(server|shared|client)\/dist\/(.+)$/.exec(callFrame.url);
  if (own) {
    const name = `${own[1]}/${own[2]}`;
    files.set(name, (files.get(name) ?? 0) + ms);
  }
  all += ms;
}
const rows = Number(rowsArg ?? 30);
const line = (ms, label) => `${ms.toFixed(1).padStart(8)} ${((ms / all) * 100).toFixed(1).padStart(5)}%  ${label}\n`;
process.stdout.write(`${all.toFixed(0)} ms sampled\nself ms   share  function\n`);
for (const [key, ms] of [...totals].sort((a, b) => b[1] - a[1]).slice(0, rows)) process.stdout.write(line(ms, key));
const ownMs = [...files.values()].reduce((sum, ms) => sum + ms, 0);
process.stdout.write(`\nself ms   share  lockwire's own file (${ownMs.toFixed(0)} ms in all)\n`);
for (const [name, ms] of [...files].sort((a, b) => b[1] - a[1]).slice(0, rows)) process.stdout.write(line(ms, name));

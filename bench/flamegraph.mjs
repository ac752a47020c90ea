#!/usr/bin/env node
// Draws a V8 .cpuprofile (`node --cpu-prof`, `npm run bench -- --profile`)
// as a flame graph: a standalone SVG, written beside the profile (or at
// --out), to open in a browser. With --folded it prints the folded stacks
// instead, for flamegraph.pl, inferno or speedscope. Idle time is left out
// unless --idle.
// Usage: node bench/flamegraph.mjs <file.cpuprofile> [--out=<file.svg>] [--folded] [--idle]
import { readFileSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { flameGraphSvg, foldStacks, foldedText } from './lib/cpu-profile.mjs';

const usage = 'usage: node bench/flamegraph.mjs <file.cpuprofile> [--out=<file.svg>] [--folded] [--idle]\n';
let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: { out: { type: 'string' }, folded: { type: 'boolean', default: false }, idle: { type: 'boolean', default: false } },
  });
} catch (error) {
  process.stderr.write(`${error.message}\n${usage}`);
  process.exit(2);
}
const { values, positionals } = parsed;
if (positionals.length !== 1) {
  process.stderr.write(usage);
  process.exit(2);
}
const [file] = positionals;
// A reader that stops early (`| head`) is not an error.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});
const folded = foldStacks(JSON.parse(readFileSync(file, 'utf8')), { idle: values.idle });
if (values.folded) {
  process.stdout.write(foldedText(folded));
} else {
  const out = values.out ?? `${file.replace(/\.cpuprofile$/, '')}.svg`;
  writeFileSync(out, flameGraphSvg(folded, { title: basename(file) }));
  process.stdout.write(`${out}\n`);
}

#!/usr/bin/env node
// lockwire's benchmark suite: `npm run bench [-- --quick] [-- --only=a,b] [-- --profile]`.
// Servers run in their own processes on one core, this load generator on
// the other (taskset); every figure is printed next to an anchor measured in
// the same run, as a ratio, because the machine is shared and absolute
// numbers drift between runs. Writes latest.json and latest.md to bench/results
// (or --out).
//   --quick     a smoke run of every figure with smaller sizes (under a minute)
//   --only=...  run only the named figures (see FIGURES)
//   --profile   start lockwire servers with --cpu-prof; a flame graph (.svg) beside each profile (bench/results/profiles)
//   --no-build  skip `tsc -b` (the servers run the compiled dist/)
//   --tree=DIR  run the compiled server of another checkout (built there; implies --no-build)
//   --base=DIR  add that checkout's compiled Redis store to the store API figure's rotation
//   --out=DIR   write latest.json and latest.md there instead of bench/results
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { flameGraphSvg, foldStacks } from './lib/cpu-profile.mjs';
import { CORES, canPin, pinSelf } from './lib/processes.mjs';
import { describeMachine, machineLine, markdownTable } from './lib/report.mjs';
import { FIGURES } from './figures/index.mjs';
import { createContext } from './lib/context.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    profile: { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    tree: { type: 'string' },
    base: { type: 'string' },
    out: { type: 'string' },
  },
});

const log = (line) => process.stderr.write(`[bench] ${line}\n`);

if (flags.base) process.env.BENCH_BASE_TREE = resolve(flags.base);
if (flags.tree) process.env.BENCH_TREE = resolve(flags.tree);
else if (!flags['no-build']) {
  const built = spawnSync('npx', ['--no-install', 'tsc', '-b'], { cwd: root, stdio: 'inherit' });
  if (built.status !== 0) {
    log('tsc -b failed; the benchmark runs the compiled dist/ and needs a clean build');
    process.exit(1);
  }
}

// Described before pinning: nproc counts only the cores this process may use.
const machine = describeMachine();
machine.pinning = canPin && pinSelf()
  ? `servers pinned to core ${CORES.server}, load generator to core ${CORES.load} (taskset)`
  : 'not pinned (taskset unavailable)';
const only = flags.only ? new Set(flags.only.split(',')) : null;
const unknown = only ? [...only].filter((name) => !FIGURES.some((f) => f.name === name)) : [];
if (unknown.length > 0) {
  log(`unknown figure(s) ${unknown.join(', ')}; known: ${FIGURES.map((f) => f.name).join(', ')}`);
  process.exit(2);
}

const startedAt = Date.now();
log(`${flags.quick ? 'quick' : 'full'} run on ${machineLine(machine)}`);
const ctx = createContext({ quick: flags.quick, profile: flags.profile, root, log });
const rows = [];
const raw = {};
try {
  for (const figure of FIGURES) {
    if (only && !only.has(figure.name)) continue;
    const t0 = Date.now();
    log(`${figure.name}...`);
    const result = await figure.run(ctx);
    raw[figure.name] = result.raw;
    rows.push(...result.rows);
    for (const row of result.rows) {
      const ratio = row.ratio === undefined ? '' : `  ratio ${row.ratio}`;
      const met = row.met === null ? '' : row.met ? '  ok' : '  MISSED';
      log(`  ${row.figure}: ${row.value.toFixed(3)} ${row.unit}${ratio}  [${row.target}]${met}`);
    }
    log(`  (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }
} finally {
  await ctx.close();
}
if (flags.profile) {
  // The servers wrote their profiles as they stopped: a flame graph beside each of this run's.
  const dir = join(root, 'bench', 'results', 'profiles');
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    const file = join(dir, name);
    if (!name.endsWith('.cpuprofile') || statSync(file).mtimeMs < startedAt) continue;
    const svg = file.replace(/\.cpuprofile$/, '.svg');
    writeFileSync(svg, flameGraphSvg(foldStacks(JSON.parse(readFileSync(file, 'utf8'))), { title: name }));
    log(`flame graph: ${relative(root, svg)}`);
  }
}

const seconds = (Date.now() - startedAt) / 1000;
const results = { mode: flags.quick ? 'quick' : 'full', date: new Date().toISOString(), seconds, machine, rows, raw };
const table = markdownTable(rows);
const markdown = `# lockwire benchmark (${results.mode} run)\n\n${results.date}, ${seconds.toFixed(0)} s; ${machineLine(machine)}\n\n${table}\n`;
const outDir = flags.out ? resolve(flags.out) : join(root, 'bench', 'results');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(join(outDir, 'latest.md'), markdown);
process.stdout.write(`${markdown}\n`);
const missed = rows.filter((row) => row.met === false).length;
const shown = relative(root, outDir).startsWith('..') ? outDir : relative(root, outDir);
log(`${rows.length} figures, ${missed} target(s) missed, ${seconds.toFixed(0)} s; results in ${shown}/latest.{json,md}`);

#!/usr/bin/env node
// `npm run soak -- --minutes N [--store memory|redis|redis-cluster|both] [--seed S] [--epoch-seconds E] [--epoch K]
//    [--server-log FILE] [--log-level LEVEL]`
//
// Random traffic and random faults against lockwire, with the recorded
// history checked every epoch (test/soak/run.ts): one memory-store node, and
// three Redis-store nodes on a redis-server of their own (or, with
// `--store redis-cluster`, on a Redis Cluster of three primaries). Everything runs on
// loopback and is started by the soak; it stops after N minutes per store,
// kills only the processes it started, prints the operations, faults and
// violations of each store, and exits 1 on any violation.
import { spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
// Inside node_modules, so the compiled soak resolves ws, redis and @lockwire/* as the sources do.
const outDir = join(root, 'node_modules', '.cache', 'lockwire-soak');

const USAGE = `Usage: npm run soak -- --minutes N [--store memory|redis|redis-cluster|both] [--seed S] [--epoch-seconds E] [--epoch K]
                     [--server-log FILE] [--log-level LEVEL]

  --minutes N        how long each store is soaked (default 1)
  --store KIND       memory, redis (one redis-server), redis-cluster (three
                     primaries) or both (memory and redis; the default)
  --seed S           seed of the random workload (default: from the clock)
  --epoch-seconds E  the history is checked every E seconds (default 15)
  --epoch K          run only epoch K of the run seeded S (needs --seed; --minutes
                     is ignored): the workload and faults that epoch draws in a
                     full run, each epoch having a seed of its own; timings differ
  --server-log FILE  append every node's log lines to FILE, each prefixed with
                     the node's PID (JSON lines; their "time" is the wall clock
                     in ms, as the violations' times are)
  --log-level LEVEL  the nodes' --log-level (default warn)
`;

function fail(message) {
  process.stderr.write(`soak: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function parse() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        minutes: { type: 'string', default: '1' },
        store: { type: 'string', default: 'both' },
        seed: { type: 'string' },
        'epoch-seconds': { type: 'string', default: '15' },
        epoch: { type: 'string' },
        'server-log': { type: 'string' },
        'log-level': { type: 'string', default: 'warn' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (error) {
    fail(error.message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const minutes = Number(values.minutes);
  if (!(minutes > 0) || minutes > 24 * 60) fail(`--minutes must be a number from 0 to 1440, got ${values.minutes}`);
  if (!['memory', 'redis', 'redis-cluster', 'both'].includes(values.store)) {
    fail(`--store must be memory, redis, redis-cluster or both, got ${values.store}`);
  }
  const epochSeconds = Number(values['epoch-seconds']);
  if (!(epochSeconds >= 2)) fail(`--epoch-seconds must be at least 2, got ${values['epoch-seconds']}`);
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  if (seed !== undefined && !Number.isSafeInteger(seed)) fail(`--seed must be an integer, got ${values.seed}`);
  const epoch = values.epoch === undefined ? undefined : Number(values.epoch);
  if (epoch !== undefined && !(Number.isSafeInteger(epoch) && epoch >= 1)) fail(`--epoch must be a positive integer, got ${values.epoch}`);
  if (epoch !== undefined && seed === undefined) fail('--epoch needs the --seed of the run');
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace'].includes(values['log-level'])) {
    fail(`--log-level must be fatal, error, warn, info, debug or trace, got ${values['log-level']}`);
  }
  return {
    minutes,
    stores: values.store === 'both' ? ['memory', 'redis'] : [values.store],
    epochSeconds,
    seed,
    epoch,
    serverLog: values['server-log'],
    logLevel: values['log-level'],
  };
}

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, encoding: 'utf8' });
  if (result.status !== 0) {
    process.stderr.write(`soak: ${command} ${args.join(' ')} failed:\n${result.stdout}${result.stderr}`);
    process.exit(1);
  }
}

const options = parse();
process.stdout.write('[soak] compiling the server and the soak\n');
run('npx', ['tsc', '-b', 'server']);
run('npx', ['tsc', '-p', 'test/soak/tsconfig.json', '--noEmit', 'false', '--outDir', outDir]);
const { runSoak, summarize } = await import(pathToFileURL(join(outDir, 'soak', 'run.js')).href);

// Ctrl-C (or SIGTERM) ends the epoch under way, checks it, and stops every
// process the soak started before exiting; a second one exits at once.
const interrupt = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (interrupt.signal.aborted) process.exit(130);
    process.stdout.write(`[soak] ${signal}: ending this epoch and stopping the processes the soak started\n`);
    interrupt.abort();
  });
}

const serverLog = options.serverLog === undefined ? undefined : createWriteStream(options.serverLog, { flags: 'a' });
const results = [];
for (const store of options.stores) {
  if (interrupt.signal.aborted) break;
  process.stdout.write(
    options.epoch === undefined
      ? `[soak] ${store}: ${options.minutes} min\n`
      : `[soak] ${store}: epoch ${options.epoch} of seed ${options.seed} (${options.epochSeconds} s)\n`,
  );
  const result = await runSoak({
    store,
    durationMs: options.minutes * 60_000,
    epochMs: options.epochSeconds * 1000,
    build: false,
    ...(options.seed === undefined ? {} : { seed: options.seed }),
    ...(options.epoch === undefined ? {} : { epoch: options.epoch }),
    log: (line) => process.stdout.write(`${line}\n`),
    signal: interrupt.signal,
    logLevel: options.logLevel,
    ...(serverLog === undefined ? {} : { serverLog: (line) => serverLog.write(`${store} ${line}\n`) }),
  });
  results.push(result);
}
if (serverLog !== undefined) await new Promise((resolve) => serverLog.end(resolve));
for (const result of results) process.stdout.write(`[soak] ${summarize(result)}\n`);
const violations = results.reduce((n, r) => n + r.violations.length, 0);
process.stdout.write(violations === 0 ? '[soak] no violations\n' : `[soak] ${violations} violations\n`);
process.exitCode = violations > 0 ? 1 : interrupt.signal.aborted ? 130 : 0;

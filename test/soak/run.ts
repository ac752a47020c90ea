/**
 * The soak: random traffic and random faults against a deployment for a
 * given time, with the history checked as it goes.
 *
 * The run is cut into epochs (default 15 s). At the end of each, every
 * connection is dropped at once and the soak waits until every node reports
 * an empty lock table; the epoch's history is then complete - every hold has
 * ended, every request is answered or unknown - and is checked on its own,
 * with a fenced resource of its own (tokens of later epochs are higher, so a
 * fresh resource judges their writes exactly as the old one would). Checking
 * between epochs keeps the checker's CPU time away from the timings it checks.
 *
 * Each epoch draws its workload and faults from a seed of its own, derived
 * from the run's seed and the epoch's number, so one epoch can be run again
 * alone (`epoch`): the same choices, though not the same timings.
 */
import { checkHistory, type CheckOptions, type Violation } from '../checker/check.js';
import { HistoryRecorder, type History } from '../checker/history.js';
import { FencedResource } from '../checker/oracle.js';
import { random } from '../checker/simulation.js';
import { buildServer } from '../helpers/lockwire-process.js';
import { onRedis, startDeployment, type SoakStore } from './deployment.js';
import { TIMER_TOLERANCE_MS, noDeviations, setDeviationsApart, type Deviations } from './deviations.js';
import { FaultKind, startEpoch, type EpochSettings, type EpochStats } from './workload.js';

export interface SoakOptions {
  store: SoakStore;
  /** How long the traffic runs, ms. */
  durationMs: number;
  /** Length of one checked epoch, ms. Default 15000. */
  epochMs?: number;
  /** Seed of the workload's choices. Default: from the clock. */
  seed?: number;
  /**
   * Runs only this epoch (numbered from 1) of the run with `seed`, for
   * `epochMs` whatever `durationMs` says: its client names and random
   * choices are those that epoch has in a full run.
   */
  epoch?: number;
  /** Concurrent connections. Default 16. */
  workers?: number;
  /** Progress lines. Default: none. */
  log?: (line: string) => void;
  /** Compile the server first. Default true. */
  build?: boolean;
  /**
   * The slack of the arrival-order check of a `lost` against the next grant
   * on the Redis store, ms (see `checkLostBeforeGrant`): the spread of
   * delivery times between nodes. Default 100.
   */
  redisLostOrderSlackMs?: number;
  /**
   * Ends the soak early: the epoch under way is cut short and checked, then
   * every process the soak started is stopped.
   */
  signal?: AbortSignal;
  /** Each log line of every node (its stderr, JSON at `logLevel`), prefixed with the node's PID. Default: dropped. */
  serverLog?: (line: string) => void;
  /** The nodes' `--log-level`. Default `warn`. */
  logLevel?: string;
}

export interface SoakResult {
  store: SoakStore;
  /** Known deviations, counted apart from violations (see `deviations.ts`). */
  deviations: Deviations;
  seed: number;
  epochs: number;
  operations: number;
  grants: number;
  events: number;
  faults: Record<FaultKind, number>;
  violations: Violation[];
}

const HEARTBEAT_MS = 200;
const NODE_TTL_MS = 1000;

/**
 * Checker options: arrival order of `lost` against the next grant is checked
 * with a slack for the Redis store, where the two messages leave from
 * different nodes; on a Redis Cluster only answers about the key and pongs
 * are causal evidence (see `CheckOptions.causalAnswers`). The close bounds are hang guards (`handoffGuardMs`): a
 * waiter without a timeout still queued seconds after a fault, with nobody
 * else holding the key, is a lost hand-off whatever the machine's load.
 */
function checkOptions(store: SoakStore, redisSlackMs = 100): CheckOptions {
  return {
    lostOrderSlackMs: onRedis(store) ? redisSlackMs : 20,
    // On a Redis Cluster a `lost` crosses the cluster bus from its key's primary, and an answer about
    // another key (from another primary) often overtakes it: the store promises the causal order for
    // answers about the key and for pings only. On one redis-server every answer is held to it.
    ...(store === 'redis-cluster' ? { causalAnswers: 'same-key' as const } : {}),
  };
}

/**
 * What happened around a violation: the events of its keys and of the
 * clients it names, from 100 ms before its first event to 200 ms after its
 * second, times relative to the first; at most 60 lines besides the
 * violation's own events, which are always shown (marked `>`): the first 40
 * and the last 20 of a longer stretch.
 */
function story(history: History, violation: Violation): string[] {
  const [first, second] = violation.events;
  if (!first) return [];
  const from = first.at - 100;
  const to = (second ?? first).at + 200;
  const own = new Set(violation.events);
  const keys = new Set(violation.events.flatMap((e) => ('key' in e ? [e.key] : [])));
  const clients = new Set(violation.events.map((e) => e.client));
  const around = history
    .filter((e) => own.has(e) || (e.at >= from && e.at <= to && (('key' in e && keys.has(e.key)) || clients.has(e.client))))
    .sort((a, b) => a.at - b.at);
  const others = around.filter((e) => !own.has(e));
  const shown = others.length <= 60 ? new Set(others) : new Set([...others.slice(0, 40), ...others.slice(-20)]);
  return around
    .filter((e) => own.has(e) || shown.has(e))
    .map((e) => `${own.has(e) ? '>' : ' '}${(e.at - first.at).toFixed(1).padStart(7)} ms ${JSON.stringify({ ...e, at: undefined })}`);
}

/** The seed of epoch `epoch` of a run seeded `seed` (a 32-bit mix of the two). */
export function epochSeed(seed: number, epoch: number): number {
  let h = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch, 0x85ebca77)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** Waits until every node's lock table is empty, probing over HTTP; returns false if it stays busy. */
async function tablesEmpty(urls: () => string[], ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    const counts = await Promise.all(
      urls().map(async (url) => {
        try {
          const http = url.replace(/^ws:/, 'http:').replace(/\/v1$/, '');
          const body = (await fetch(`${http}/v1/locks?limit=10000`).then((r) => r.json())) as { locks: unknown[] };
          return body.locks.length;
        } catch {
          return 1;
        }
      }),
    );
    if (counts.every((n) => n === 0)) return true;
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Resolves after `ms`, or as soon as `signal` aborts. */
function epochEnd(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Runs one soak against a deployment it starts and stops itself. */
export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const seed = options.seed ?? Date.now() % 2 ** 31;
  const log = options.log ?? (() => {});
  const epochMs = options.epochMs ?? 15_000;
  const first = options.epoch ?? 1;
  if (!Number.isSafeInteger(first) || first < 1) throw new Error(`epoch must be a positive integer, got ${first}`);
  if (options.build ?? true) buildServer();
  const deployment = await startDeployment({
    store: options.store,
    heartbeat: HEARTBEAT_MS,
    nodeTtl: NODE_TTL_MS,
    ...(options.serverLog ? { onLog: options.serverLog } : {}),
    ...(options.logLevel ? { logLevel: options.logLevel } : {}),
  });
  const result: SoakResult = {
    store: options.store,
    seed,
    epochs: 0,
    operations: 0,
    grants: 0,
    events: 0,
    faults: { [FaultKind.Kill]: 0, [FaultKind.HalfOpen]: 0, [FaultKind.NodeKill]: 0 },
    violations: [],
    deviations: noDeviations(),
  };
  const endAt = performance.now() + (options.epoch === undefined ? options.durationMs : epochMs);
  try {
    for (
      let epoch = first;
      performance.now() < endAt && !options.signal?.aborted && (options.epoch === undefined || epoch === first);
      epoch++
    ) {
      const rand = random(epochSeed(seed, epoch));
      const settings: EpochSettings = {
        epoch,
        workers: options.workers ?? 16,
        hotKeys: 3,
        coldKeys: 500,
        heartbeat: HEARTBEAT_MS,
        nodeTtl: NODE_TTL_MS,
        faultEveryMs: 700,
        nodeKillEveryMs: 5000,
        cleanBoundMs: 100,
      };
      const recorder = new HistoryRecorder();
      const resource = new FencedResource({ recorder });
      const stats: EpochStats = {
        operations: 0,
        grants: 0,
        faults: { [FaultKind.Kill]: 0, [FaultKind.HalfOpen]: 0, [FaultKind.NodeKill]: 0 },
      };
      const running = startEpoch({ settings, deployment, recorder, resource, rand, stats });
      await epochEnd(Math.max(1000, Math.min(epochMs, endAt - performance.now())), options.signal);
      await running.stop();

      const quiet = await tablesEmpty(() => deployment.nodes().map((n) => n.url), NODE_TTL_MS + 5000);
      const history = recorder.history();
      const started = performance.now();
      const checked = checkHistory(history, checkOptions(options.store, options.redisLostOrderSlackMs));
      const checkMs = performance.now() - started;
      const violations = setDeviationsApart(checked.violations, result.deviations);
      if (!quiet) {
        violations.push({
          rule: 'release-bound',
          message: `epoch ${epoch}: locks or waiters were left in a node's table after every connection had ended`,
          events: [],
        });
      }
      result.epochs++;
      result.operations += stats.operations;
      result.grants += stats.grants;
      result.events += history.length;
      for (const kind of Object.values(FaultKind)) result.faults[kind] += stats.faults[kind];
      result.violations.push(...violations);
      const faults = Object.values(stats.faults).reduce((a, b) => a + b, 0);
      log(
        `[soak ${options.store}] epoch ${epoch}: ${stats.operations} operations, ${stats.grants} grants, ${faults} faults, ` +
          `${violations.length} violations (${history.length} events checked in ${Math.round(checkMs)} ms)`,
      );
      if (violations.length > 0) {
        log(`  run this epoch alone: npm run soak -- --store ${options.store} --seed ${seed} --epoch ${epoch} --epoch-seconds ${epochMs / 1000}`);
      }
      for (const violation of violations.slice(0, 5)) {
        log(`  [${violation.rule}] ${violation.message}`);
        for (const line of story(history, violation)) log(`    ${line}`);
      }
    }
  } finally {
    await deployment.stop();
  }
  return result;
}

/** The one-line summary of a soak. */
export function summarize(result: SoakResult): string {
  const faults = Object.entries(result.faults)
    .map(([kind, n]) => `${n} ${kind}`)
    .join(', ');
  const total = Object.values(result.faults).reduce((a, b) => a + b, 0);
  const early = result.deviations.earlyTimers;
  return (
    `${result.store}: ${result.operations} operations (${result.grants} grants) in ${result.epochs} epochs, ` +
    `${total} faults (${faults}), ${result.violations.length} violations, seed ${result.seed}; ` +
    `${early.count} timeouts under ${TIMER_TOLERANCE_MS} ms early (at most ${early.maxMs.toFixed(3)} ms)`
  );
}

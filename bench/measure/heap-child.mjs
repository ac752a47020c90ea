// Run by the benchmark as `node --expose-gc bench/measure/heap-child.mjs`:
// the JS heap the memory store keeps per held lock and per queued waiter,
// measured in this process alone (no sockets), after full GCs. Prints one
// JSON line. Keys are created inside the loop, so the key strings the store
// keeps (`lock:123456`, ~12 characters) are part of the per-lock figure.
// env BENCH_LOCKS (default 1,000,000), BENCH_WAITERS (default 100,000).
import { pathToFileURL } from 'node:url';
import { exclusiveAcquire } from '../lib/store-input.mjs';

// BENCH_TREE: the checkout whose compiled server/dist to measure (default this one).
const dist = process.env.BENCH_TREE ? pathToFileURL(`${process.env.BENCH_TREE}/server/dist/`) : new URL('../../server/dist/', import.meta.url);
const { createMemoryStore } = await import(new URL('index.js', dist).href);

if (typeof globalThis.gc !== 'function') throw new Error('run with --expose-gc');
const LOCKS = Number(process.env.BENCH_LOCKS ?? 1_000_000);
const WAITERS = Number(process.env.BENCH_WAITERS ?? 100_000);
const PER_SESSION = 1000;
const WAITING_KEYS = 10;

function heapUsed() {
  globalThis.gc();
  globalThis.gc();
  return process.memoryUsage().heapUsed;
}

// Tokens are seeded from the clock as in production (~1.8e15: heap numbers, not small integers).
const store = createMemoryStore();
await store.start({ granted() {}, acquireTimedOut() {}, waitDone() {}, lost() {} });
let ticket = 1;
const acquire = (session, key) => store.acquire(session, exclusiveAcquire(ticket++, key));

// Each session's id is one string, made before the heap is read: the server
// hands the store its connection's own id with every request, so the ids
// are the connections' memory, not the store's.
const sessionIds = (prefix, count) => Array.from({ length: count }, (_, n) => `${prefix}${n}`);

// Held locks: LOCKS distinct keys, PER_SESSION per session (the default
// maxLocksPerSession), no hold timeout.
const holders = sessionIds('s', Math.ceil(LOCKS / PER_SESSION));
const beforeLocks = heapUsed();
for (let i = 0; i < LOCKS; i++) {
  const outcome = await acquire(holders[Math.floor(i / PER_SESSION)], `lock:${i}`);
  if (outcome.status !== 'granted') throw new Error(`lock ${i} not granted`);
}
const afterLocks = heapUsed();

// Queued waiters: WAITING_KEYS keys held by one session, each with
// WAITERS / WAITING_KEYS waiters (at most the default maxWaitersPerKey);
// each waiting session waits on every one of these keys, so the cost of a
// session's own record is shared by WAITING_KEYS waiters.
const perKey = Math.ceil(WAITERS / WAITING_KEYS);
for (let k = 0; k < WAITING_KEYS; k++) await acquire('holder', `queue:${k}`);
const waiting = sessionIds('w', perKey);
const beforeWaiters = heapUsed();
for (let i = 0; i < WAITERS; i++) {
  const outcome = await acquire(waiting[i % perKey], `queue:${Math.floor(i / perKey)}`);
  if (outcome.status !== 'queued') throw new Error(`waiter ${i} not queued`);
}
const afterWaiters = heapUsed();

const inspection = store.inspect();
process.stdout.write(
  `${JSON.stringify({
    locks: LOCKS,
    waiters: WAITERS,
    bytesPerLock: (afterLocks - beforeLocks) / LOCKS,
    bytesPerWaiter: (afterWaiters - beforeWaiters) / WAITERS,
    keys: inspection.keys,
    sessions: inspection.sessions,
  })}\n`,
);

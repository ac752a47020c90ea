// A Prefect-style job runner: five workers want the same expensive report.
// The first to take the lock computes it; the others wait for that lock to
// end (the server pushes the moment it does: no polling) and then read the
// result the first one stored. The calls are those of Prefect's lock
// manager: acquireLock, releaseLock, waitForLock.
//
//   npm run build && node examples/job-runner/run.mjs
import { setTimeout as sleep } from 'node:timers/promises';
import { LockClient } from '@lockwire/client';
import { createLockServer } from '@lockwire/server';

const WORKERS = 5;
const KEY = 'report:2024';
const COMPUTE_MS = 300;

/** Stands in for a shared result store (a database table, an object store). */
const results = new Map();

async function computeReport() {
  await sleep(COMPUTE_MS);
  return { rows: 1234, total: 98765 };
}

/** One worker on its own connection (its own lock holder). Resolves what it did. */
async function worker(name, url) {
  const client = await LockClient.connect(url);
  const started = Date.now();
  try {
    if (results.has(KEY)) return { name, did: 'read', result: results.get(KEY), ms: 0 };
    // Try once; whoever gets it computes, with a hold timeout in case it dies mid-way.
    if (await client.acquireLock(KEY, { acquireTimeout: 0, holdTimeout: 60_000 })) {
      try {
        // Checked again under the lock: a worker that finished just now may have stored it.
        if (!results.has(KEY)) results.set(KEY, await computeReport());
        return { name, did: 'computed', result: results.get(KEY), ms: Date.now() - started };
      } finally {
        await client.releaseLock(KEY);
      }
    }
    const free = await client.waitForLock(KEY, { timeout: 60_000 });
    if (!free) throw new Error(`${name}: gave up waiting for ${KEY}`);
    return { name, did: 'waited', result: results.get(KEY), ms: Date.now() - started };
  } finally {
    await client.close();
  }
}

const server = await createLockServer({ port: 0 });
console.log(`lockwire listening on ${server.url}`);
const outcomes = await Promise.all(Array.from({ length: WORKERS }, (_, i) => worker(`worker-${i + 1}`, server.url)));
await server.close();

for (const outcome of outcomes) {
  const result = JSON.stringify(outcome.result);
  if (outcome.did === 'computed') console.log(`${outcome.name} computed ${KEY} in ${outcome.ms} ms: ${result}`);
  else if (outcome.did === 'waited') console.log(`${outcome.name} waited ${outcome.ms} ms, then read ${KEY}: ${result}`);
  else console.log(`${outcome.name} read the stored ${KEY}: ${result}`);
}
const computed = outcomes.filter((outcome) => outcome.did === 'computed').length;
console.log(`${KEY} computed ${computed} time(s) for ${WORKERS} workers`);
process.exitCode = computed === 1 ? 0 : 1;

#!/usr/bin/env node
// Where the time of disconnect-to-grant goes, on its floor: the bare relay
// anchor (`servers/relay.mjs`), where a dropped connection's next in line is
// sent one frame. Each drop is split in three on the monotonic clock every
// process of the machine shares (`process.hrtime`):
//   - the load generator's own `terminate()` call (the socket's close, whose
//     FIN the kernel hands to the server within that system call);
//   - from the cut until the relay sees the socket's end;
//   - from then until the next in line has the frame.
// Each drop is followed by an echo round trip (`servers/echo.mjs`), as in
// the benchmark, and every phase is also given over the echo's p50. With
// --reset the socket is reset (RST) instead of closed (FIN).
// Usage: node bench/drop-phases.mjs [drops, default 300] [--reset]
import { fileURLToPath } from 'node:url';
import { summarize } from './lib/stats.mjs';
import { pinSelf, startServerProcess } from './lib/processes.mjs';
import { WireClient, closeAll } from './lib/wire-client.mjs';
import { echoProbe, relayDisconnect } from './measure/wire.mjs';

const args = process.argv.slice(2);
const RESET = args.includes('--reset');
const DROPS = Number(args.find((arg) => arg !== '--reset') ?? 300);
const WAITERS = 10;
const WARMUP = 20;
if (!(Number.isInteger(DROPS) && DROPS >= 10)) {
  process.stderr.write('usage: node bench/drop-phases.mjs [drops, an integer of at least 10] [--reset]\n');
  process.exit(2);
}

const server = (name) => fileURLToPath(new URL(`./servers/${name}.mjs`, import.meta.url));
const hrMs = (bigint) => Number(bigint) / 1e6;
/**
 * Where `performance.now()` (the clients' arrival times) starts on the
 * `process.hrtime` clock, in ms: read between two readings of the latter,
 * the closest pair of a few (the first `performance.now()` is slow).
 */
function hrOriginOfNow() {
  let best = { spread: Infinity, origin: 0 };
  for (let i = 0; i < 20; i++) {
    const before = hrMs(process.hrtime.bigint());
    const now = performance.now();
    const after = hrMs(process.hrtime.bigint());
    if (after - before < best.spread) best = { spread: after - before, origin: (before + after) / 2 - now };
  }
  return best.origin;
}
const hrOrigin = hrOriginOfNow();

const pinned = pinSelf();
const relay = await startServerProcess(server('relay'));
const echo = await startServerProcess(server('echo'));
const clients = [];
let drops = null;
try {
  const echoClient = await WireClient.connect(echo.info.url);
  clients.push(echoClient);
  const probe = echoProbe(echoClient);
  drops = await relayDisconnect(relay.info.url, WAITERS, RESET ? (ws) => ws._socket.resetAndDestroy() : undefined);

  const phases = { call: [], toEnd: [], endToFrame: [], total: [] };
  const echoes = [];
  for (let i = 0; i < DROPS + WARMUP; i++) {
    const { cutAt, cutReturnedAt, at } = await drops.sample();
    // When the relay saw the end, on this process' performance.now() clock.
    const seen = hrMs(BigInt(await relay.call('lastDrop'))) - hrOrigin;
    const anchor = await probe();
    if (i < WARMUP) continue;
    phases.call.push(cutReturnedAt - cutAt);
    phases.toEnd.push(seen - cutAt);
    phases.endToFrame.push(at - seen);
    phases.total.push(at - cutAt);
    echoes.push(...anchor);
  }

  const echoP50 = summarize(echoes).p50;
  const rows = [
    [`${RESET ? 'resetAndDestroy()' : 'terminate()'} call in the load generator`, phases.call],
    ['cut -> relay sees the end', phases.toEnd],
    ['relay sees the end -> frame received', phases.endToFrame],
    ['cut -> frame received (the relay row of the benchmark)', phases.total],
  ];
  const ms = (value) => value.toFixed(4).padStart(8);
  process.stdout.write(`${DROPS} drops (${RESET ? 'RST' : 'FIN'}), ${WAITERS} waiting; ${pinned ? 'pinned as in the benchmark' : 'not pinned (taskset unavailable)'}\n`);
  process.stdout.write(`echo round trip p50 ${ms(echoP50)} ms\n`);
  process.stdout.write(`${'phase'.padEnd(56)}  p50 ms    p90 ms   p50 / echo p50\n`);
  for (const [label, samples] of rows) {
    const { p50, p90 } = summarize(samples);
    process.stdout.write(`${label.padEnd(56)} ${ms(p50)}  ${ms(p90)}   ${(p50 / echoP50).toFixed(2)}x\n`);
  }
} finally {
  await drops?.close();
  await closeAll(clients);
  await relay.stop();
  await echo.stop();
}

// One game-server process. It wants to host a match in each room it is
// given; a room hosts one match at a time, so it locks room:<id> for the
// length of the match. Other game servers asking for the same room queue up
// and get it, pushed, when the match ends (or this process dies).
//
// Prints one JSON line per match: who, which room, the fencing token, and
// when it started and ended. The token goes with every write to the shared
// match store, which refuses a token older than one it has seen.
//
//   node game-server.mjs <lockwire url> <name> <room> [<room> ...]
import { setTimeout as sleep } from 'node:timers/promises';
import { LockClient } from '@lockwire/client';

const [url, name, ...rooms] = process.argv.slice(2);
if (!url || !name || rooms.length === 0) {
  console.error('usage: node game-server.mjs <url> <name> <room>...');
  process.exit(2);
}

const client = await LockClient.connect(url);
const MATCH_MS = 150;

await Promise.all(
  rooms.map(async (room) => {
    const key = `room:${room}`;
    const lease = await client.acquire(key, {
      holdTimeout: 30_000, // a hung match frees the room after 30 s
      meta: { server: name, pid: process.pid },
    });
    if (!lease) return;
    const start = Date.now();
    try {
      // A real match would stop if the lock went (lease.signal aborts).
      await sleep(MATCH_MS, undefined, { signal: lease.signal });
      console.log(JSON.stringify({ server: name, room: key, token: lease.token, start, end: Date.now() }));
    } finally {
      await lease.release();
    }
  }),
);
await client.close();

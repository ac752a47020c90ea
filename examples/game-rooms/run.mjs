// Game rooms: starts a lockwire server and three game-server processes that
// all want to host a match in rooms 1, 2 and 3. Each room hosts one match
// at a time; the others queue for it. Prints who ran which match, when, with
// which fencing token, and checks that no room ever hosted two matches at
// once and that each room's tokens only grew.
//
//   npm run build && node examples/game-rooms/run.mjs
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createLockServer } from '@lockwire/server';

const SERVERS = ['game-1', 'game-2', 'game-3'];
const ROOMS = ['1', '2', '3'];
const gameServer = fileURLToPath(new URL('./game-server.mjs', import.meta.url));

const server = await createLockServer({ port: 0 });
console.log(`lockwire listening on ${server.url}`);

/** Runs one game-server process; resolves the matches it reported. */
function runGameServer(name, rooms) {
  const child = spawn(process.execPath, [gameServer, server.url, name, ...rooms], { stdio: ['ignore', 'pipe', 'inherit'] });
  const matches = [];
  createInterface({ input: child.stdout }).on('line', (line) => matches.push(JSON.parse(line)));
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => (code === 0 ? resolve(matches) : reject(new Error(`${name} exited with ${code}`))));
  });
}

// Each process asks for the rooms in a different order, so they contend.
const results = await Promise.all(
  SERVERS.map((name, i) => runGameServer(name, [...ROOMS.slice(i), ...ROOMS.slice(0, i)])),
);
await server.close();

const matches = results.flat().sort((a, b) => a.room.localeCompare(b.room) || a.start - b.start);
const t0 = Math.min(...matches.map((match) => match.start));
let problems = 0;
for (const room of ROOMS.map((id) => `room:${id}`)) {
  const inRoom = matches.filter((match) => match.room === room);
  for (const [i, match] of inRoom.entries()) {
    console.log(`${room}  match ${i + 1} hosted by ${match.server}  token ${match.token}  ${match.start - t0}-${match.end - t0} ms`);
    const before = inRoom[i - 1];
    if (before && match.start < before.end) {
      problems++;
      console.log(`  OVERLAP: ${match.server} started before ${before.server} ended`);
    }
    if (before && match.token <= before.token) {
      problems++;
      console.log(`  STALE TOKEN: ${match.token} after ${before.token}`);
    }
  }
}
const expected = SERVERS.length * ROOMS.length;
if (matches.length !== expected) {
  problems++;
  console.log(`expected ${expected} matches, got ${matches.length}`);
}
console.log(problems === 0 ? `${matches.length} matches, never two in one room at once` : `${problems} problems`);
process.exitCode = problems === 0 ? 0 : 1;

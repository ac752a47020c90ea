import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { LockServer } from '../src/server.js';
import { sessionInGrace } from './resume-harness.js';
import { RawClient, within } from './server-harness.js';

const servers: LockServer[] = [];
const clients: RawClient[] = [];
/** Opens the store gates a failed test left shut, so its resume and server can end. */
const gates: Array<() => void> = [];
afterEach(async () => {
  for (const open of gates.splice(0)) open();
  for (const client of clients.splice(0)) client.ws.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** The raw bytes of a WebSocket upgrade of `target`. */
const upgrade = (target: string) =>
  `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

/** Collects the process's uncaught exceptions until `stop()`, which returns them. */
function catchUncaught() {
  const caught: unknown[] = [];
  const note = (error: unknown) => void caught.push(error);
  process.on('uncaughtException', note);
  return {
    stop: () => {
      process.off('uncaughtException', note);
      return caught;
    },
  };
}

describe('a peer that resets its connection during the upgrade', () => {
  it('while its resume reads the store leaves the server serving and the session in grace for the next resume', async () => {
    const { server, session, query, ...gated } = await sessionInGrace(servers, gates);
    gated.hold();

    const uncaught = catchUncaught();
    try {
      const socket = connect(server.port, '127.0.0.1');
      socket.on('error', () => undefined);
      await within(new Promise((resolve) => socket.once('connect', resolve)), 'the TCP connection');
      socket.write(upgrade(`/v1${query}`));
      await within(gated.reading, 'the resume to read the store');
      socket.resetAndDestroy();
      await within(new Promise((resolve) => socket.once('close', resolve)), 'the reset');
      // Answered once the server went through what came before it: the reset included.
      expect((await within(fetch(`${server.httpUrl}/healthz`), 'GET /healthz')).status).toBe(200);
    } finally {
      gated.release();
      expect(uncaught.stop()).toEqual([]);
    }

    const resumed = await RawClient.connect(`${server.url}${query}`);
    clients.push(resumed.client);
    expect(resumed.welcome).toMatchObject({ session, resumed: true, held: [expect.objectContaining({ key: 'k' })] });
  });
});

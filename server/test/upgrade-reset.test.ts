import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { createMemoryStore } from '../src/memory-store.js';
import { createLockServer, type LockServer } from '../src/server.js';
import type { LockStore, SessionId } from '../src/store.js';
import { RawClient, sessionLog, within } from './server-harness.js';

const servers: LockServer[] = [];
const clients: RawClient[] = [];
/** Opens the store gates a failed test left shut, so its resume and server can end. */
const gates: Array<() => void> = [];
afterEach(async () => {
  for (const open of gates.splice(0)) open();
  for (const client of clients.splice(0)) client.ws.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/**
 * A memory store whose `status` (what a resume reads) waits at a gate once
 * `hold()` was called: `reading` resolves when such a call arrives, `release()` lets it go on.
 */
function gatedStore() {
  const clock = createManualClock(Date.now());
  const inner = createMemoryStore({ clock });
  let holding = false;
  let arrived: () => void = () => undefined;
  const reading = new Promise<void>((resolve) => (arrived = resolve));
  let open: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (open = resolve));
  gates.push(open);
  const store: LockStore = {
    ...inner,
    status: async (key: string, viewer: SessionId | null) => {
      if (holding) {
        arrived();
        await gate;
      }
      return inner.status(key, viewer);
    },
  };
  return { clock, store, reading, hold: () => void (holding = true), release: open };
}

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
    const gated = gatedStore();
    const log = sessionLog();
    const server = await createLockServer({
      port: 0,
      heartbeatInterval: 0,
      clock: gated.clock,
      store: gated.store,
      sessionGrace: 60_000,
      logger: log.logger,
    });
    servers.push(server);
    const { client, welcome } = await RawClient.connect(server.url);
    expect(await client.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
    client.ws.terminate();
    await log.closed(1, 'the session to detach');
    const query = `?session=${encodeURIComponent(String(welcome.session))}&resume=${encodeURIComponent(String(welcome.resume))}`;
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
    expect(resumed.welcome).toMatchObject({ session: welcome.session, resumed: true, held: [expect.objectContaining({ key: 'k' })] });
  });
});

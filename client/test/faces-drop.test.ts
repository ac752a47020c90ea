import { afterEach, describe, expect, it } from 'vitest';
import type { LockClient } from '@lockwire/client';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { fastReconnect, nextEvent, recordingTransport, startHarness, within, type Harness } from './fixtures.js';

// Two faces of one client on one key across a drop: a Web Locks request waiting in the server queue at the drop is
// sent again after the reconnect, and the other faces' acquires of the key must go on beside it without a second
// request of the session for the key (the server refuses one with bad_request).

let h: Harness;
let proxy: TcpProxy;
afterEach(async () => {
  await h.close();
  await proxy.close();
});

/** Alice through a proxy the test cuts (her frames recorded, the server's `queued` frames awaited), and bob. */
async function setup(options: { sessionGrace?: number }) {
  h = await startHarness(options);
  proxy = await startTcpProxy(h.server.port);
  const queued: (() => void)[] = [];
  const { transport, sent } = recordingTransport((frame) => {
    if (frame.type === "queued") queued.shift()?.();
  });
  const alice = await h.connectTo(proxy.url(h.server.url), { transport, reconnect: fastReconnect });
  const bob = await h.connect();
  const nextQueued = () => within(new Promise<void>((resolve) => queued.push(resolve)), 2000, 'a queued frame');
  return { alice, bob, sent, nextQueued };
}

/** Cuts alice off and lets her reconnect; resolves with her `reconnect` event. */
async function dropAndReconnect(alice: LockClient) {
  const down = nextEvent(alice, 'disconnect');
  proxy.refuse();
  expect(await down).toMatchObject({ reconnecting: true });
  const up = nextEvent(alice, 'reconnect');
  proxy.unblock();
  return up;
}

for (const sessionGrace of [0, 30_000]) {
  describe(`sessionGrace ${sessionGrace}`, () => {
    it('an acquire made while a steal of the key beside a Web Lock request sent again is out waits for that request, and sends no second request of the key', async () => {
      const { alice, bob, sent, nextQueued } = await setup({ sessionGrace });
      const bobs = await bob.acquire('doc');
      let release!: () => void;
      let granted!: (token: number | undefined) => void;
      const token = new Promise<number | undefined>((resolve) => (granted = resolve));
      const isQueued = nextQueued();
      const request = alice.locks
        .request('doc', (lock) => {
          granted(lock?.token);
          return new Promise<void>((resolve) => (release = resolve));
        })
        .catch((error: unknown) => error);
      await isQueued;
      const queuedAgain = nextQueued();
      await dropAndReconnect(alice);
      await queuedAgain;

      // The session waits in the queue of the key: the server refuses the steal, which is sent at once.
      const steal = alice.acquire('doc', { steal: true });
      const acquire = alice.acquire('doc');
      void acquire.catch(() => undefined);
      await expect(within(steal)).rejects.toMatchObject({ code: 'bad_request' });
      // A round trip: the server has read whatever the client sent for the key by its answer.
      await alice.ping();
      // The acquire before the drop and the one sent again, nothing beside the one in the server queue.
      expect(sent.filter((frame) => frame.op === 'acquire' && frame.key === 'doc' && !frame.steal)).toHaveLength(2);
      await bobs?.release();
      const lease = await within(acquire);
      expect(lease?.token).toBe(await within(token));
      expect(lease?.held).toBe(true);
      release();
      expect(await within(request)).toBeUndefined();
      expect(lease?.state).toBe('released');
      expect((await bob.status('doc')).locked).toBe(false);
    });
  });
}

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockClient } from '@lockwire/client';
import { defaultResponse, startFakeServer, type FakeServer, type Frame } from './fake-server.js';
import { abortedWith } from './fixtures.js';

/**
 * A lease released while an acquire of its key is out. A release names only
 * the key, so sent beside that acquire it ends whatever the session holds
 * when the server reads it: the acquire's new hold, if the lease's own hold
 * ended meanwhile (expired, stolen) and its `lost` is still on the way.
 */
let fake: FakeServer;
let client: LockClient;

beforeEach(async () => {
  // The first acquire is granted token 1; the test answers the others.
  let acquires = 0;
  fake = await startFakeServer({
    respond: (frame: Frame) => {
      if (frame.op === 'acquire' && ++acquires === 1) return { acquired: true, token: 1, expiresAt: null };
      return defaultResponse(frame);
    },
  });
  client = await LockClient.connect(fake.url, { reconnect: false });
});
afterEach(async () => {
  await client.close();
  await fake.close();
});

/** Holds k (token 1), acquires it again, and releases the first lease while that acquire is unanswered. */
async function releaseBesideReacquire() {
  const first = await client.acquire('k');
  if (!first) throw new Error('not granted');
  const again = client.acquire('k', { acquireTimeout: 0 });
  const releasing = first.release();
  const server = await fake.connection(0);
  await server.nextRequest('acquire');
  const second = await server.nextRequest('acquire');
  return { first, again, releasing, server, second };
}

describe('releasing a lease while an acquire of its key is out', () => {
  it('sends no release when the acquire is answered with a new hold after the lease was lost: the new lease stays held', async () => {
    const { first, again, releasing, server, second } = await releaseBesideReacquire();
    // The first hold expired before the server read the second acquire, which it then granted anew.
    server.send({ type: 'lost', key: 'k', token: 1, reason: 'expired' });
    server.reply(second.id, { acquired: true, token: 2, expiresAt: null });
    await releasing;
    const lease = await again;
    expect(await abortedWith(first.signal)).toMatchObject({ code: 'expired' });
    expect({ token: lease?.token, held: lease?.held, inBook: client.leases.get('k') === lease }).toEqual({ token: 2, held: true, inBook: true });
    // Anything sent before the ping has reached the server once it is answered.
    await client.ping();
    expect(server.received.map((frame) => frame.op)).toEqual(['acquire', 'acquire', 'ping']);
  });

  it('releases the hold once the acquire is answered with it: both calls name the one lease, released', async () => {
    const { first, again, releasing, server, second } = await releaseBesideReacquire();
    // A re-acquire by the holder is answered with the hold the session has.
    server.reply(second.id, { acquired: true, token: 1, expiresAt: null });
    expect(await again).toBe(first);
    expect(await server.nextRequest('release')).toMatchObject({ key: 'k' });
    await releasing;
    expect({ state: first.state, leases: client.leases.size }).toEqual({ state: 'released', leases: 0 });
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import type { Lock, LockClient } from '@lockwire/client';
import type { LockMode } from '@lockwire/protocol';
import { releaseWatchingTransport, startHarness, within, type Harness } from './fixtures.js';

// The manual clock refills no rate budget until a test advances it: a session may send exactly `rateBurst`
// frames, so each test picks which frame of the steal the server refuses. The rate lets one more frame
// through per millisecond once the clock moves.
const RATE = 1000;

let h: Harness;
afterEach(() => h.close());

/** A request of `client` that holds `name` until `end()`; resolves once granted. */
async function holding(client: LockClient, name: string, mode: LockMode = 'exclusive') {
  let granted!: (lock: Lock | null) => void;
  let end!: () => void;
  const lock = new Promise<Lock | null>((resolve) => (granted = resolve));
  const ended = new Promise<void>((resolve) => (end = resolve));
  const state = { settled: false };
  const done = client.locks
    .request(name, { mode }, (l) => {
      granted(l);
      return ended.then(() => 'ended');
    })
    .then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    )
    .finally(() => (state.settled = true));
  return { lock: await within(lock), done, end, state };
}

/** The holds of `name` as the server shows them to `observer`. */
async function holdsOf(observer: LockClient, name: string) {
  const { holders } = await observer.status(name);
  return holders.map(({ session, token }) => ({ session, token }));
}

describe('client.locks: a steal over an exclusive hold of this client, refused by the server', () => {
  it('refused on its hand-back of the hold, rejects with the refusal and leaves the holder holding with its token', async () => {
    // Frames: the holder's acquire, the steal's first acquire (answered with the hold as it is); the release is refused.
    h = await startHarness({ limits: { rateLimit: RATE, rateBurst: 2 } });
    const { transport, released } = releaseWatchingTransport();
    const alice = await h.connect({ transport, reconnect: false });
    const observer = await h.connect({ reconnect: false });
    const holder = await holding(alice, 'doc:1');

    await expect(within(alice.locks.request('doc:1', { steal: true }, () => 'stolen'))).rejects.toMatchObject({
      name: 'LockError',
      code: 'rate_limited',
    });
    expect(await holdsOf(observer, 'doc:1')).toEqual([{ session: alice.session, token: holder.lock?.token }]);
    expect(holder.state.settled).toBe(false);
    expect(alice.leases.get('doc:1')?.held).toBe(true);

    // The hold is still the client's: the holder ends as usual and its release frees the name.
    h.clock.advance(1000);
    const accepted = released();
    holder.end();
    expect(await within(holder.done)).toEqual({ value: 'ended' });
    await accepted;
    expect((await observer.status('doc:1')).locked).toBe(false);
  });

  it('refused on its final steal acquire, rejects with the refusal after the hold was given up and the holder robbed', async () => {
    // Frames: the holder's acquire, the steal's first acquire, the accepted release; the steal acquire is refused.
    h = await startHarness({ limits: { rateLimit: RATE, rateBurst: 3 } });
    const alice = await h.connect({ reconnect: false });
    const observer = await h.connect({ reconnect: false });
    const holder = await holding(alice, 'doc:2');

    await expect(within(alice.locks.request('doc:2', { steal: true }, () => 'stolen'))).rejects.toMatchObject({
      name: 'LockError',
      code: 'rate_limited',
    });
    const outcome = await within(holder.done);
    expect('error' in outcome && outcome.error).toBeInstanceOf(DOMException);
    expect(outcome).toMatchObject({ error: { name: 'AbortError' } });
    expect(await holdsOf(observer, 'doc:2')).toEqual([]);
    expect(alice.leases.size).toBe(0);
    // query() asks the server (list), for which the session needs budget again.
    h.clock.advance(1000);
    expect(await alice.locks.query()).toEqual({ held: [], pending: [] });
  });
});

describe('client.locks: a steal over a shared hold of this client, refused by the server', () => {
  it('refused on its hand-back of the hold, rejects with the refusal and leaves the holder holding with its token', async () => {
    // Frames: the holder's acquire; the steal's release is refused.
    h = await startHarness({ limits: { rateLimit: RATE, rateBurst: 1 } });
    const alice = await h.connect({ reconnect: false });
    const observer = await h.connect({ reconnect: false });
    const holder = await holding(alice, 'doc:3', 'shared');

    await expect(within(alice.locks.request('doc:3', { steal: true }, () => 'stolen'))).rejects.toMatchObject({
      name: 'LockError',
      code: 'rate_limited',
    });
    expect(await holdsOf(observer, 'doc:3')).toEqual([{ session: alice.session, token: holder.lock?.token }]);
    expect(holder.state.settled).toBe(false);
    h.clock.advance(1000);
    expect((await alice.locks.query()).held).toEqual([{ name: 'doc:3', mode: 'shared', clientId: alice.session }]);
  });
});

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Lock, LockClient } from '@lockwire/client';
import { SECRET, token } from '../../server/test/auth-harness.js';
import { startHarness, within, type Harness } from './fixtures.js';

let h: Harness;
/** Full rights on every key. */
let admin: LockClient;

beforeEach(async () => {
  h = await startHarness({ auth: { secret: SECRET } });
  admin = await connectAs({ locks: ['*'], watch: ['*'], steal: ['*'] });
});
afterEach(() => h.close());

/** Connects with a token of these permission claims (a claim left out allows nothing). */
async function connectAs(claims: { locks?: string[]; watch?: string[]; steal?: string[] }): Promise<LockClient> {
  const bearer = await token({ sub: 'svc', ...claims }, { now: h.clock.now() });
  return h.connect({ reconnect: false, headers: { Authorization: `Bearer ${bearer}` } });
}

/**
 * Starts a request on `client` that holds `name` until `release` resolves; resolves once granted, with
 * the request's outcome (`done`) and whether it has settled yet.
 */
async function holding(client: LockClient, name: string, release: Promise<unknown>, mode: Lock['mode'] = 'exclusive') {
  let granted!: (lock: Lock | null) => void;
  const lock = new Promise<Lock | null>((resolve) => (granted = resolve));
  const state = { settled: false };
  const done = client.locks
    .request(name, { mode }, (l) => {
      granted(l);
      return release;
    })
    .then(
      (value: unknown) => ({ value }),
      (error: unknown) => ({ error }),
    )
    .finally(() => (state.settled = true));
  return { lock: await within(lock), done, state };
}

const never = new Promise<never>(() => undefined);

describe('client.locks with credentials that may lock a name but not watch it', () => {
  it('query() lists the own holds of such names at their place in grant order, and the own requests waiting for them', async () => {
    const alice = await connectAs({ locks: ['*'], watch: ['pub:*'] });
    await holding(alice, 'doc:1', never);
    await holding(admin, 'pub:1', never);
    await holding(alice, 'doc:2', never, 'shared');
    const waiting = alice.locks.request('doc:1', () => 'later');
    void waiting.catch(() => undefined);

    expect(await within(alice.locks.query())).toEqual({
      held: [
        { name: 'doc:1', mode: 'exclusive', clientId: alice.session },
        { name: 'pub:1', mode: 'exclusive', clientId: admin.session },
        { name: 'doc:2', mode: 'shared', clientId: alice.session },
      ],
      pending: [{ name: 'doc:1', mode: 'exclusive', clientId: alice.session }],
    });
  });
});

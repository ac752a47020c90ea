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
      (value: unknown): { value?: unknown; error?: unknown } => ({ value }),
      (error: unknown): { value?: unknown; error?: unknown } => ({ error }),
    )
    .finally(() => (state.settled = true));
  return { lock: await within(lock), done, state };
}

const never = new Promise<never>(() => undefined);

describe('client.locks with credentials that may lock a name but not watch it', () => {
  it('a shared request made inside a shared callback of the same name is granted when nobody else waits', async () => {
    const alice = await connectAs({ locks: ['doc:*'] });
    const nested = alice.locks.request('doc:3', { mode: 'shared' }, () =>
      alice.locks.request('doc:3', { mode: 'shared' }, (inner) => inner?.mode),
    );
    expect(await within(nested, 2000, 'the nested shared request')).toBe('shared');
  });

  it('an ifAvailable shared request beside a shared holder of the same client gets the lock', async () => {
    const alice = await connectAs({ locks: ['doc:*'] });
    let release!: () => void;
    const holder = await holding(alice, 'doc:4', new Promise<void>((resolve) => (release = resolve)), 'shared');

    const beside = alice.locks.request('doc:4', { mode: 'shared', ifAvailable: true }, (lock) => lock?.mode ?? null);
    expect(await within(beside)).toBe('shared');
    release();
    expect(await within(holder.done)).toEqual({ value: undefined });
  });

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

describe('client.locks: a steal the server refuses while this client holds the name exclusive', () => {
  it('rejects with the refusal and leaves the holder holding the lock with its token', async () => {
    const alice = await connectAs({ locks: ['doc:*'], watch: ['doc:*'] });
    const holder = await holding(alice, 'doc:5', never);

    const steal = alice.locks.request('doc:5', { steal: true }, () => 'stolen');
    await expect(within(steal)).rejects.toMatchObject({ name: 'LockError', code: 'forbidden' });
    const status = await alice.status('doc:5');
    expect(status.holders.map(({ session, token }) => ({ session, token }))).toEqual([
      { session: alice.session, token: holder.lock?.token },
    ]);
    expect(holder.state.settled).toBe(false);
  });

  it('the next request of the client is granted once the holder ends', async () => {
    const alice = await connectAs({ locks: ['doc:*'], watch: ['doc:*'] });
    let release!: () => void;
    const holder = await holding(alice, 'doc:6', new Promise<void>((resolve) => (release = resolve)));
    await expect(within(alice.locks.request('doc:6', { steal: true }, () => 'stolen'))).rejects.toMatchObject({
      code: 'forbidden',
    });

    const next = alice.locks.request('doc:6', (lock) => lock?.token ?? 0);
    release();
    expect(await within(holder.done)).toEqual({ value: undefined });
    expect(await within(next)).toBeGreaterThan(holder.lock?.token ?? Infinity);
  });

  it('a holder that ends while the server is asked settles with its result, and the hold is released by then', async () => {
    const alice = await connectAs({ locks: ['doc:*'], watch: ['doc:*'] });
    let release!: () => void;
    const holder = await holding(alice, 'doc:7', new Promise<void>((resolve) => (release = resolve)));

    const steal = alice.locks.request('doc:7', { steal: true }, () => 'stolen');
    const refused = expect(within(steal)).rejects.toMatchObject({ code: 'forbidden' });
    release();
    expect(await within(holder.done)).toEqual({ value: undefined });
    expect((await admin.status('doc:7')).locked).toBe(false);
    await refused;
  });
});

describe('client.locks: a steal the server allows while this client holds the name exclusive', () => {
  it('a holder that ends while the server is asked is robbed, as the steal was made first, and the steal gets a new token', async () => {
    const alice = await connectAs({ locks: ['doc:*'], watch: ['doc:*'], steal: ['doc:*'] });
    let release!: () => void;
    const holder = await holding(alice, 'doc:8', new Promise<void>((resolve) => (release = resolve)));

    const steal = alice.locks.request('doc:8', { steal: true }, async (lock) => {
      const { holders } = await admin.status('doc:8');
      return { mine: lock?.token, server: holders.map((h) => h.token) };
    });
    release();
    expect((await within(holder.done)).error).toMatchObject({ name: 'AbortError' });
    const { mine, server } = await within(steal);
    expect(mine).toBeGreaterThan(holder.lock?.token ?? Infinity);
    expect(server).toEqual([mine]);
    expect((await admin.status('doc:8')).locked).toBe(false);
  });
});

describe('client.locks: a steal the server refuses while this client holds the name shared', () => {
  it('has already taken the lock from the holders and handed the hold back', async () => {
    const alice = await connectAs({ locks: ['doc:*'], watch: ['doc:*'] });
    const holder = await holding(alice, 'doc:9', never, 'shared');

    await expect(within(alice.locks.request('doc:9', { steal: true }, () => 'stolen'))).rejects.toMatchObject({
      code: 'forbidden',
    });
    expect((await within(holder.done)).error).toMatchObject({ name: 'AbortError' });
    expect((await admin.status('doc:9')).locked).toBe(false);
  });
});

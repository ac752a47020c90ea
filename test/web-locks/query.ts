import {
  assert,
  assertArrayEquals,
  assertEquals,
  background,
  deferred,
  neverSettled,
  untilQueued,
  type WebLocksSuite,
} from './harness.js';
import type { LockClient, LockInfo } from '@lockwire/client';

const modes = (list: LockInfo[], name: string) => list.filter((item) => item.name === name).map((item) => item.mode);
const clients = (list: LockInfo[], name: string) =>
  list.filter((item) => item.name === name).map((item) => item.clientId);

/** Makes `client` (a worker) take `name` and keep it; resolves once granted. */
async function holdIn(client: LockClient, name: string, mode: 'shared' | 'exclusive' = 'exclusive'): Promise<void> {
  const granted = deferred();
  background(
    client.locks.request(name, { mode }, () => {
      granted.resolve();
      return neverSettled();
    }),
  );
  await granted.promise;
}

/** Port of `web-locks/query.https.any.js`. */
export const querySuite: WebLocksSuite = {
  name: 'query',
  cases: [
    {
      name: 'query() returns dictionaries with expected properties',
      async run(t) {
        const res = t.uniqueName();
        await t.locks.request(res, async () => {
          let secondAcquired = false;
          background(t.locks.request(res, () => void (secondAcquired = true)));
          await t.locks.request(res, { ifAvailable: true }, async (third) => {
            assert(!secondAcquired, 'the second request is blocked');
            assertEquals(third, null, 'the third request failed');
            const state = await t.locks.query();
            for (const [list, info] of [
              ['pending', state.pending[0]],
              ['held', state.held[0]],
            ] as const) {
              assert(Array.isArray(state[list]), `${list} is an array`);
              for (const property of ['name', 'mode', 'clientId']) {
                assert(info && Object.hasOwn(info, property), `${list} info has ${property}`);
              }
            }
          });
        });
      },
    },
    {
      name: 'query() reports individual held locks',
      async run(t) {
        const res = t.uniqueName();
        await t.locks.request(res, async () => {
          assertArrayEquals(modes((await t.locks.query()).held, res), ['exclusive'], 'held once');
        });
        await t.locks.request(res, { mode: 'shared' }, async () => {
          assertArrayEquals(modes((await t.locks.query()).held, res), ['shared'], 'held once');
        });
      },
    },
    {
      name: 'query() reports multiple held locks',
      async run(t) {
        const [res1, res2] = [t.uniqueName(), t.uniqueName()];
        await t.locks.request(res1, async () => {
          await t.locks.request(res2, { mode: 'shared' }, async () => {
            const state = await t.locks.query();
            assertArrayEquals(modes(state.held, res1), ['exclusive'], 'first');
            assertArrayEquals(modes(state.held, res2), ['shared'], 'second');
          });
        });
      },
    },
    {
      name: 'query() reports pending and held locks',
      async run(t) {
        const res = t.uniqueName();
        await t.locks.request(res, async () => {
          background(t.locks.request(res, () => undefined));
          await t.locks.request(res, { ifAvailable: true }, async (lock) => {
            assertEquals(lock, null, 'not available');
            const state = await t.locks.query();
            assertArrayEquals(modes(state.pending, res), ['exclusive'], 'pending once');
            assertArrayEquals(modes(state.held, res), ['exclusive'], 'held once');
          });
        });
      },
    },
    {
      name: 'query() reports held shared locks with appropriate count',
      async run(t) {
        const res = t.uniqueName();
        await t.locks.request(res, { mode: 'shared' }, async () => {
          await t.locks.request(res, { mode: 'shared' }, async () => {
            assertArrayEquals(modes((await t.locks.query()).held, res), ['shared', 'shared'], 'held twice');
          });
        });
      },
    },
    {
      name: 'query() reports pending shared locks with appropriate count',
      async run(t) {
        const res = t.uniqueName();
        await t.locks.request(res, async () => {
          let acquired = false;
          background(t.locks.request(res, { mode: 'shared' }, () => void (acquired = true)));
          background(t.locks.request(res, { mode: 'shared' }, () => void (acquired = true)));
          await t.locks.request(res, { ifAvailable: true }, async (lock) => {
            assertEquals(lock, null, 'not available');
            assert(!acquired, 'the shared requests are blocked');
            const state = await t.locks.query();
            assertArrayEquals(modes(state.held, res), ['exclusive'], 'held once');
            assertArrayEquals(modes(state.pending, res), ['shared', 'shared'], 'pending twice');
          });
        });
      },
    },
    {
      name: 'query() reports the same clientId for held locks from the same context',
      async run(t) {
        const [res1, res2] = [t.uniqueName(), t.uniqueName()];
        await t.locks.request(res1, async () => {
          await t.locks.request(res2, async () => {
            const state = await t.locks.query();
            const first = clients(state.held, res1);
            const second = clients(state.held, res2);
            assertEquals(first.length, 1, 'one holder of the first');
            assertEquals(second.length, 1, 'one holder of the second');
            assertArrayEquals(first, second, 'same clientId');
            assertEquals(first[0], t.client.session, 'the clientId is the session');
          });
        });
      },
    },
    {
      name: 'query() reports different ids for held locks from different contexts',
      async run(t) {
        const res = t.uniqueName();
        const worker = await t.connect();
        await holdIn(worker, res, 'shared');
        await t.locks.request(res, { mode: 'shared' }, async () => {
          const ids = clients((await t.locks.query()).held, res);
          assertEquals(ids.length, 2, 'two holders');
          assert(ids[0] !== ids[1], 'different ids');
          assertArrayEquals([...ids].sort(), [worker.session, t.client.session].sort(), 'the sessions');
        });
      },
    },
    {
      name: 'query() can observe a deadlock',
      async run(t) {
        const [res1, res2] = [t.uniqueName(), t.uniqueName()];
        const worker = await t.connect();
        await holdIn(worker, res1);
        await holdIn(t.client, res2);
        background(worker.locks.request(res2, () => undefined));
        await untilQueued(t.client, res2, 1);
        assertEquals(await worker.locks.request(res2, { ifAvailable: true }, (lock) => lock), null, 'fails');
        background(t.locks.request(res1, () => undefined));
        await untilQueued(t.client, res1, 1);

        const state = await t.locks.query();
        const [held1, held2] = [clients(state.held, res1), clients(state.held, res2)];
        const [pending1, pending2] = [clients(state.pending, res1), clients(state.pending, res2)];
        for (const list of [held1, held2, pending1, pending2]) assertEquals(list.length, 1, 'one each');
        assertEquals(held1[0], pending2[0], 'the holder of the first waits for the second');
        assertEquals(held2[0], pending1[0], 'the holder of the second waits for the first');
      },
    },
  ],
};

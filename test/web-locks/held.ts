import { assert, assertArrayEquals, assertEquals, assertRejects, deferred, type WebLocksSuite } from './harness.js';

/** Port of `web-locks/held.https.any.js`. */
export const heldSuite: WebLocksSuite = {
  name: 'held',
  cases: [
    {
      name: "callback's result is promisified if not async",
      async run(t) {
        const p = t.locks.request(t.uniqueName(), () => 123);
        assertEquals(Promise.resolve(p), p, 'request() result is a Promise');
        assertEquals(await p, 123, 'resolves to the returned value');
      },
    },
    {
      name: "lock is held until callback's returned promise resolves",
      async run(t) {
        const res = t.uniqueName();
        const granted = deferred();
        const release = deferred();
        const order: string[] = [];
        const first = t.locks.request(res, () => {
          granted.resolve();
          return release.promise;
        });
        await granted.promise;
        const second = t.locks.request(res, () => void order.push('2nd lock granted'));
        // Still queued behind the first: query() shows it waiting.
        const state = await t.locks.query();
        assertEquals(state.pending.filter((lock) => lock.name === res).length, 1, 'the second waits');
        order.push('1st lock released');
        release.resolve();
        await Promise.all([first, second]);
        assertArrayEquals(order, ['1st lock released', '2nd lock granted'], 'order');
      },
    },
    {
      name: "lock is held until callback's returned promise rejects",
      async run(t) {
        const res = t.uniqueName();
        const granted = deferred();
        const release = deferred();
        const order: string[] = [];
        const failure = new Error('this rejection is expected');
        const first = t.locks.request(res, () => {
          granted.resolve();
          return release.promise;
        });
        const firstRejects = assertRejects(first, { value: failure }, 'the first request rejects');
        await granted.promise;
        const second = t.locks.request(res, () => void order.push('2nd lock granted'));
        const state = await t.locks.query();
        assertEquals(state.pending.filter((lock) => lock.name === res).length, 1, 'the second waits');
        order.push('reject');
        release.reject(failure);
        await Promise.all([firstRejects, second]);
        assertArrayEquals(order, ['reject', '2nd lock granted'], 'order');
      },
    },
    {
      name: 'held lock prevents the same client from acquiring it',
      async run(t) {
        const res = t.uniqueName();
        let called = false;
        await t.locks.request(res, async () => {
          await t.locks.request(res, { ifAvailable: true }, (lock) => {
            called = true;
            assertEquals(lock, null, 'the request fails while held');
          });
        });
        assert(called, 'callback ran');
      },
    },
  ],
};

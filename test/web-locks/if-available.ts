import { assert, assertEquals, assertRejects, type WebLocksContext, type WebLocksSuite } from './harness.js';
import type { LockMode } from '@lockwire/client';

/** Holds `res` in `outer` mode, asks for it again with `ifAvailable` in `inner` mode, and says whether it was granted. */
async function grantedWhileHeld(t: WebLocksContext, outer: LockMode, inner: LockMode): Promise<boolean> {
  const res = t.uniqueName();
  let granted: boolean | undefined;
  await t.locks.request(res, { mode: outer }, async () => {
    await t.locks.request(res, { mode: inner, ifAvailable: true }, (lock) => {
      granted = lock !== null;
    });
  });
  assert(granted !== undefined, 'callback should be called');
  return granted;
}

/** Port of `web-locks/ifAvailable.https.any.js`. */
export const ifAvailableSuite: WebLocksSuite = {
  name: 'ifAvailable',
  cases: [
    {
      name: 'Lock request with ifAvailable - lock available',
      async run(t) {
        let called = false;
        await t.locks.request(t.uniqueName(), { ifAvailable: true }, (lock) => {
          called = true;
          assert(lock !== null, 'lock should be granted');
        });
        assert(called, 'callback should be called');
      },
    },
    {
      name: 'Lock request with ifAvailable - lock not available',
      async run(t) {
        const res = t.uniqueName();
        let called = false;
        await t.locks.request(res, async () => {
          // Without ifAvailable this would wait forever.
          const result = await t.locks.request(res, { ifAvailable: true }, (lock) => {
            called = true;
            assertEquals(lock, null, 'lock should not be granted');
            return 123;
          });
          assertEquals(result, 123, 'result is the value returned by the callback');
        });
        assert(called, 'callback should be called');
      },
    },
    {
      name: 'Lock request with ifAvailable - lock not available, callback throws',
      async run(t) {
        const res = t.uniqueName();
        let called = false;
        await t.locks.request(res, async () => {
          const attempt = t.locks.request(res, { ifAvailable: true }, (lock) => {
            called = true;
            assertEquals(lock, null, 'lock should not be granted');
            throw 123;
          });
          await assertRejects(attempt, { value: 123 }, 'rejects with what the callback threw');
        });
        assert(called, 'callback should be called');
      },
    },
    {
      name: 'Lock request with ifAvailable - unrelated lock held',
      async run(t) {
        const [res, different] = [t.uniqueName(), t.uniqueName()];
        let called = false;
        await t.locks.request(res, async () => {
          await t.locks.request(different, { ifAvailable: true }, (lock) => {
            called = true;
            assert(lock !== null, 'lock should be granted');
          });
        });
        assert(called, 'callback should be called');
      },
    },
    {
      name: 'Shared lock request with ifAvailable - shared lock held',
      async run(t) {
        assertEquals(await grantedWhileHeld(t, 'shared', 'shared'), true, 'granted');
      },
    },
    {
      name: 'Exclusive lock request with ifAvailable - shared lock held',
      async run(t) {
        assertEquals(await grantedWhileHeld(t, 'shared', 'exclusive'), false, 'granted');
      },
    },
    {
      name: 'Shared lock request with ifAvailable - exclusive lock held',
      async run(t) {
        assertEquals(await grantedWhileHeld(t, 'exclusive', 'shared'), false, 'granted');
      },
    },
    {
      name: 'Returned Promise rejects if callback throws synchronously',
      async run(t) {
        const res = t.uniqueName();
        await t.locks.request(res, async () => {
          const failure = { name: 'test' };
          const p = t.locks.request(res, { ifAvailable: true }, (lock) => {
            assertEquals(lock, null, 'lock should not be available');
            throw failure;
          });
          assertEquals(Promise.resolve(p), p, 'request() result is a Promise');
          await assertRejects(p, { value: failure }, 'result should reject');
        });
      },
    },
    {
      name: 'Returned Promise rejects if async callback yields rejected promise',
      async run(t) {
        const res = t.uniqueName();
        await t.locks.request(res, async () => {
          const failure = { name: 'test' };
          const p = t.locks.request(res, { ifAvailable: true }, (lock) => {
            assertEquals(lock, null, 'lock should not be available');
            return Promise.reject(failure);
          });
          assertEquals(Promise.resolve(p), p, 'request() result is a Promise');
          await assertRejects(p, { value: failure }, 'result should reject');
        });
      },
    },
    {
      name: 'Locks are available once previous release is processed',
      async run(t) {
        const [res1, res2] = [t.uniqueName(), t.uniqueName()];
        const called = [false, false, false];
        await t.locks.request(res1, async () => {
          called[0] = true;
          await t.locks.request(res2, () => void (called[1] = true));
          // Fails if the release above had not reached the server yet.
          await t.locks.request(res2, { ifAvailable: true }, (lock) => {
            called[2] = true;
            assert(lock !== null, 'lock should be available');
          });
        });
        assertEquals(called.join(), 'true,true,true', 'every callback called');
      },
    },
    {
      name: 'Lock request with ifAvailable - lock not available (separate connections)',
      async run(t) {
        const res = t.uniqueName();
        const other = await t.connect();
        await t.locks.request(res, async () => {
          assertEquals(await other.locks.request(res, { ifAvailable: true }, (lock) => lock), null, 'not granted');
        });
        assert((await other.locks.request(res, { ifAvailable: true }, (lock) => lock)) !== null, 'granted once free');
      },
    },
  ],
};

import {
  assert,
  assertEquals,
  assertRejects,
  background,
  deferred,
  neverSettled,
  untilQueued,
  type WebLocksContext,
  type WebLocksSuite,
} from './harness.js';

/** Asserts `query()` shows one holder and one waiter for `res`. */
async function assertEnqueued(t: WebLocksContext, res: string): Promise<void> {
  const state = await t.locks.query();
  assertEquals(state.held.filter((lock) => lock.name === res).length, 1, 'held');
  assertEquals(state.pending.filter((lock) => lock.name === res).length, 1, 'pending');
}

const unreached = () => {
  throw new Error('callback should not run');
};

/** Port of `web-locks/signal.https.any.js`. */
export const signalSuite: WebLocksSuite = {
  name: 'signal',
  cases: [
    {
      name: 'The signal option must be an AbortSignal',
      async run(t) {
        const res = t.uniqueName();
        for (const signal of ['string', 12.34, false, {}, Symbol('s'), () => undefined, globalThis]) {
          const attempt = t.locks.request(res, { signal } as unknown as { signal: AbortSignal }, unreached);
          await assertRejects(attempt, 'TypeError', `signal ${typeof signal}`);
        }
      },
    },
    {
      name: 'Passing an already aborted signal aborts',
      async run(t) {
        const controller = new AbortController();
        controller.abort();
        const attempt = t.locks.request(t.uniqueName(), { signal: controller.signal }, unreached);
        await assertRejects(attempt, 'AbortError', 'rejects with AbortError');
      },
    },
    {
      name: 'An aborted request results in AbortError',
      async run(t) {
        const res = t.uniqueName();
        background(t.locks.request(res, () => neverSettled()));
        const controller = new AbortController();
        const promise = t.locks.request(res, { signal: controller.signal }, unreached);
        await assertEnqueued(t, res);
        const rejected = assertRejects(promise, 'AbortError', 'rejects with AbortError');
        controller.abort();
        await rejected;
      },
    },
    {
      name: 'Abort after a timeout',
      async run(t) {
        const res = t.uniqueName();
        background(t.locks.request(res, () => neverSettled()));
        const controller = new AbortController();
        const promise = t.locks.request(res, { signal: controller.signal }, () => undefined);
        await assertEnqueued(t, res);
        const rejected = assertRejects(promise, 'AbortError', 'rejects with AbortError');
        // A later turn of the event loop, after the request has waited a while.
        setTimeout(() => controller.abort(), 10);
        await rejected;
      },
    },
    {
      name: 'Signal that is not aborted',
      async run(t) {
        const controller = new AbortController();
        let gotLock = false;
        await t.locks.request(t.uniqueName(), { signal: controller.signal }, () => {
          gotLock = true;
        });
        assert(gotLock, 'granted when not aborted');
      },
    },
    {
      name: 'Synchronously signaled abort',
      async run(t) {
        const res = t.uniqueName();
        const controller = new AbortController();
        let gotLock = false;
        const p = t.locks.request(res, { signal: controller.signal }, () => {
          gotLock = true;
        });
        // Processed even though the lock is grantable.
        controller.abort();
        await assertRejects(p, 'AbortError', 'the request aborts');
        assert(!gotLock, 'the callback did not run');
        await t.locks.request(res, () => {
          gotLock = true;
        });
        assert(gotLock, 'a later request is not blocked');
      },
    },
    {
      name: 'Abort signaled after lock granted',
      async run(t) {
        const controller = new AbortController();
        const acquired = deferred();
        const release = deferred<string>();
        const released = t.locks.request(t.uniqueName(), { signal: controller.signal }, () => {
          acquired.resolve();
          return release.promise;
        });
        await acquired.promise;
        controller.abort();
        release.resolve('resolved ok');
        assertEquals(await released, 'resolved ok', 'the request does not reject');
      },
    },
    {
      name: 'Abort signaled after lock released',
      async run(t) {
        const controller = new AbortController();
        const acquired = deferred();
        const release = deferred<string>();
        const released = t.locks.request(t.uniqueName(), { signal: controller.signal }, () => {
          acquired.resolve();
          return release.promise;
        });
        await acquired.promise;
        release.resolve('resolved ok');
        controller.abort();
        assertEquals(await released, 'resolved ok', 'the request does not reject');
      },
    },
    {
      name: 'An aborted request results in AbortError (separate connections)',
      async run(t) {
        const res = t.uniqueName();
        const holder = await t.connect();
        const granted = deferred();
        background(
          holder.locks.request(res, () => {
            granted.resolve();
            return neverSettled();
          }),
        );
        await granted.promise;
        const controller = new AbortController();
        const reason = new Error('the user gave up');
        const promise = t.locks.request(res, { signal: controller.signal }, unreached);
        await untilQueued(t.client, res, 1);
        controller.abort(reason);
        await assertRejects(promise, { value: reason }, 'rejects with signal.reason');
        // The server queue is empty again.
        const state = await t.locks.query();
        assertEquals(state.pending.filter((lock) => lock.name === res).length, 0, 'pending');
      },
    },
  ],
};

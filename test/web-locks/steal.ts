import { assert, assertRejects, background, deferred, neverSettled, type WebLocksSuite } from './harness.js';

/** Port of `web-locks/steal.https.any.js`. */
export const stealSuite: WebLocksSuite = {
  name: 'steal',
  cases: [
    {
      name: 'Lock available',
      async run(t) {
        let called = false;
        await t.locks.request(t.uniqueName(), { steal: true }, (lock) => {
          called = true;
          assert(lock !== null, 'lock should be granted');
        });
        assert(called, 'callback should be called');
      },
    },
    {
      name: 'Lock not available',
      async run(t) {
        const res = t.uniqueName();
        background(t.locks.request(res, () => neverSettled()));
        let called = false;
        await t.locks.request(res, { steal: true }, (lock) => {
          called = true;
          assert(lock !== null, 'lock should be granted');
        });
        assert(called, 'callback should be called');
      },
    },
    {
      name: "Broken lock's release promise rejects",
      async run(t) {
        const res = t.uniqueName();
        const promise = t.locks.request(res, () => neverSettled());
        const assertion = assertRejects(promise, 'AbortError', "the initial request's promise rejects");
        await t.locks.request(res, { steal: true }, () => undefined);
        await assertion;
      },
    },
    {
      name: "Requested lock's release promise is deferred",
      async run(t) {
        const res = t.uniqueName();
        background(t.locks.request(res, () => neverSettled()));
        let requestGranted = false;
        const promise = t.locks.request(res, () => {
          requestGranted = true;
        });
        await t.locks.request(res, { steal: true }, () => {
          assert(!requestGranted, 'the steal overrides the request');
        });
        await promise;
        assert(requestGranted, 'the request is granted eventually');
      },
    },
    {
      name: 'Last caller wins',
      async run(t) {
        const res = t.uniqueName();
        background(t.locks.request(res, () => neverSettled()));
        let sawAbort = false;
        const firstSteal = t.locks.request(res, { steal: true }, () => neverSettled()).catch(() => {
          sawAbort = true;
        });
        await t.locks.request(res, { steal: true }, () => undefined);
        await firstSteal;
        assert(sawAbort, 'the first steal was aborted');
      },
    },
    {
      name: "Broken lock's release promise rejects (separate connections)",
      async run(t) {
        const res = t.uniqueName();
        const other = await t.connect();
        const granted = deferred();
        const promise = other.locks.request(res, () => {
          granted.resolve();
          return neverSettled();
        });
        await granted.promise;
        const assertion = assertRejects(promise, 'AbortError', "the other client's request rejects");
        let called = false;
        await t.locks.request(res, { steal: true }, (lock) => {
          called = lock !== null;
        });
        await assertion;
        assert(called, 'the thief was granted');
        // The thief released; the robbed client can lock again.
        assert((await other.locks.request(res, { ifAvailable: true }, (lock) => lock)) !== null, 'free again');
      },
    },
  ],
};

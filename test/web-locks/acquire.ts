import {
  assertArrayEquals,
  assertEquals,
  assertRejects,
  untypedRequest,
  type WebLocksSuite,
} from './harness.js';

/** Port of `web-locks/acquire.https.any.js`. */
export const acquireSuite: WebLocksSuite = {
  name: 'acquire',
  cases: [
    {
      name: 'navigator.locks.request requires a name and a callback',
      async run(t) {
        const request = untypedRequest(t.locks);
        await assertRejects(request(), 'TypeError', 'no arguments');
        await assertRejects(request(t.uniqueName()), 'TypeError', 'no callback');
      },
    },
    {
      name: 'mode must be "shared" or "exclusive"',
      async run(t) {
        const res = t.uniqueName();
        const request = untypedRequest(t.locks);
        await assertRejects(request(res, { mode: 'foo' }, () => undefined), 'TypeError', 'mode foo');
        await assertRejects(request(res, { mode: null }, () => undefined), 'TypeError', 'mode null');
        assertEquals(await t.locks.request(res, { mode: 'exclusive' }, (lock) => lock?.mode), 'exclusive', 'exclusive');
        assertEquals(await t.locks.request(res, { mode: 'shared' }, (lock) => lock?.mode), 'shared', 'shared');
      },
    },
    {
      name: "The 'steal' and 'ifAvailable' options are mutually exclusive",
      async run(t) {
        const attempt = t.locks.request(t.uniqueName(), { steal: true, ifAvailable: true }, () => undefined);
        await assertRejects(attempt, 'NotSupportedError', 'steal with ifAvailable');
      },
    },
    {
      name: "The 'steal' option must be used with exclusive locks",
      async run(t) {
        const attempt = t.locks.request(t.uniqueName(), { mode: 'shared', steal: true }, () => undefined);
        await assertRejects(attempt, 'NotSupportedError', 'shared steal');
      },
    },
    {
      name: "The 'signal' and 'steal' options are mutually exclusive",
      async run(t) {
        const { signal } = new AbortController();
        const attempt = t.locks.request(t.uniqueName(), { signal, steal: true }, () => undefined);
        await assertRejects(attempt, 'NotSupportedError', 'signal with steal');
      },
    },
    {
      name: "The 'signal' and 'ifAvailable' options are mutually exclusive",
      async run(t) {
        const { signal } = new AbortController();
        const attempt = t.locks.request(t.uniqueName(), { signal, ifAvailable: true }, () => undefined);
        await assertRejects(attempt, 'NotSupportedError', 'signal with ifAvailable');
      },
    },
    {
      name: 'callback must be a function',
      async run(t) {
        const res = t.uniqueName();
        const request = untypedRequest(t.locks);
        for (const callback of [undefined, null, 123, 'abc', [], {}, new Promise(() => undefined)]) {
          await assertRejects(request(res, callback), 'TypeError', `callback ${String(callback)}`);
        }
      },
    },
    {
      name: "navigator.locks.request's returned promise resolves after lock is released",
      async run(t) {
        const res = t.uniqueName();
        let release!: () => void;
        const holding = new Promise<void>((resolve) => (release = resolve));
        const order: string[] = [];
        const returned = t.locks.request(res, () => holding);
        void returned.then(() => order.push('returned'));
        void holding.then(() => order.push('holding'));
        release();
        await Promise.all([returned, holding]);
        assertArrayEquals(order, ['holding', 'returned'], 'order');
        // Released on the server too: another client gets it at once.
        const other = await t.connect();
        assertEquals(await other.locks.request(res, { ifAvailable: true }, (lock) => lock !== null), true, 'free');
      },
    },
    {
      name: 'Returned Promise rejects if callback throws synchronously',
      async run(t) {
        const failure = { name: 'test' };
        const p = t.locks.request(t.uniqueName(), () => {
          throw failure;
        });
        assertEquals(Promise.resolve(p), p, 'request() result is a Promise');
        await assertRejects(p, { value: failure }, 'result should reject');
      },
    },
    {
      name: 'Returned Promise rejects if callback throws asynchronously',
      async run(t) {
        const failure = { name: 'test' };
        const p = t.locks.request(t.uniqueName(), async () => {
          throw failure;
        });
        assertEquals(Promise.resolve(p), p, 'request() result is a Promise');
        await assertRejects(p, { value: failure }, 'result should reject');
      },
    },
  ],
};

import {
  assert,
  assertEquals,
  background,
  deferred,
  neverSettled,
  untilQueued,
  type WebLocksSuite,
} from './harness.js';
import type { LockClient, LockMode } from '@lockwire/client';

/** A frame holding `name` until `release()`; `released` settles with its request. */
async function frameHold(frame: LockClient, name: string, mode: LockMode = 'exclusive') {
  const granted = deferred();
  const release = deferred();
  const released = frame.locks.request(name, { mode }, () => {
    granted.resolve();
    return release.promise;
  });
  await granted.promise;
  return { release: () => release.resolve(), released };
}

/** Port of `web-locks/frames.https.html`: each frame is its own connection; removing it closes that connection. */
export const framesSuite: WebLocksSuite = {
  name: 'frames',
  cases: [
    {
      name: 'Window and Frame - shared mode',
      async run(t) {
        const res = t.uniqueName();
        const frame = await frameHold(await t.connect(), res, 'shared');
        await t.locks.request(res, { mode: 'shared' }, async () => {
          frame.release();
          await frame.released;
        });
      },
    },
    {
      name: 'Window and Frame - exclusive mode',
      async run(t) {
        const res = t.uniqueName();
        const frame = await frameHold(await t.connect(), res);
        let granted = false;
        const blocked = t.locks.request(res, () => void (granted = true));
        const available = await t.locks.request(res, { ifAvailable: true }, (lock) => lock !== null);
        assertEquals(available, false, 'not available');
        assert(!granted, 'blocked');
        frame.release();
        await blocked;
        assert(granted, 'granted once the frame released');
      },
    },
    {
      name: 'Frame and Frame - exclusive mode',
      async run(t) {
        const res = t.uniqueName();
        const frame1 = await frameHold(await t.connect(), res);
        const frame2 = await t.connect();
        let granted = false;
        const blocked = frame2.locks.request(res, () => void (granted = true));
        assertEquals(await frame2.locks.request(res, { ifAvailable: true }, (lock) => lock), null, 'fails');
        assert(!granted, 'blocked');
        frame1.release();
        await blocked;
        assert(granted, 'granted to the second frame');
      },
    },
    {
      name: 'Terminated Frame with held lock',
      async run(t) {
        const res = t.uniqueName();
        const frame = await t.connect();
        const held = await frameHold(frame, res);
        background(held.released);
        let granted = false;
        const blocked = t.locks.request(res, () => void (granted = true));
        assertEquals(await t.locks.request(res, { ifAvailable: true }, (lock) => lock), null, 'fails');
        assert(!granted, 'blocked');
        await frame.close();
        await blocked;
        assert(granted, 'granted once the frame is gone');
      },
    },
    {
      name: 'Removed Frame with pending request',
      async run(t) {
        const res = t.uniqueName();
        const frame1 = await frameHold(await t.connect(), res);
        const frame2 = await t.connect();
        background(frame2.locks.request(res, () => neverSettled()));
        await untilQueued(t.client, res, 1);
        const frame3 = await t.connect();
        let granted = false;
        const blocked = frame3.locks.request(res, () => void (granted = true));
        await untilQueued(t.client, res, 2);
        assertEquals(await frame3.locks.request(res, { ifAvailable: true }, (lock) => lock), null, 'fails');
        await frame2.close();
        frame1.release();
        await blocked;
        assert(granted, 'granted to the third frame');
      },
    },
    {
      name: 'Removed Frame as lock is granted',
      async run(t) {
        const res = t.uniqueName();
        const frame = await t.connect();
        const granted = deferred();
        background(
          frame.locks.request(res, () => {
            void frame.close();
            granted.resolve();
            return neverSettled();
          }),
        );
        await granted.promise;
        // Another frame's request is granted: the server released the closed frame's lock.
        const other = await t.connect();
        await other.locks.request(res, () => undefined);
        const state = await t.locks.query();
        assertEquals(state.held.filter((lock) => lock.name === res).length, 0, 'nothing held');
      },
    },
  ],
};

import { afterEach, describe, expect, it } from 'vitest';
import { LockClient } from '../src/node.js';
import { LockStateStore, type LockStateView } from '../src/react/lock-state-store.js';
import { defaultResponse, startFakeServer, type FakeServer } from './fake-server.js';
import { within } from './fixtures.js';

let fake: FakeServer | undefined;
const clients: LockClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await fake?.close();
  fake = undefined;
});

/** Resolves with the store's view once it is `status` (bounded). */
function viewIs<S extends LockStateView['status']>(
  store: LockStateStore,
  status: S,
): Promise<Extract<LockStateView, { status: S }>> {
  const matches = (view: LockStateView): view is Extract<LockStateView, { status: S }> => view.status === status;
  return within(
    new Promise((resolve) => {
      const check = () => {
        const view = store.getSnapshot();
        if (matches(view)) resolve(view);
      };
      store.subscribe(check);
      check();
    }),
    2000,
    `the view ${status}`,
  );
}

describe('useLockState (LockStateStore) when the watch ends in the same read as its reply', () => {
  it('turns error with the reason the watch ended, not ready for good', async () => {
    // Answers the watch and, in the same tick, sends a frame the client cannot read: it closes for good.
    fake = await startFakeServer({
      respond: (frame, connection) => {
        if (frame.op !== 'watch') return defaultResponse(frame);
        connection.reply(frame.id, { locks: [], truncated: false });
        connection.send({ type: 'nonsense' });
        return undefined;
      },
    });
    const client = await LockClient.connect(fake.url, { reconnect: false });
    clients.push(client);
    const closed = within(new Promise((resolve) => client.on('close', resolve)), 2000, 'the client to close');
    const store = new LockStateStore(client, 'doc:1');
    const seen: string[] = [];
    store.subscribe(() => seen.push(store.getSnapshot().status));
    await closed;
    const view = await viewIs(store, 'error');
    expect(view.error).toMatchObject({ code: 'protocol_error' });
    expect(seen).toEqual(['error']);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { LockClient } from '../src/node.js';
import { LockController, type LockHookState } from '../src/react/lock-controller.js';
import { defaultResponse, startFakeServer, type FakeServer } from './fake-server.js';
import { within } from './fixtures.js';

let fake: FakeServer | undefined;
const clients: LockClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await fake?.close();
  fake = undefined;
});

/** Resolves with the controller's state once it is `status` (bounded). */
function stateIs<S extends LockHookState['status']>(
  controller: LockController,
  status: S,
): Promise<Extract<LockHookState, { status: S }>> {
  const matches = (state: LockHookState): state is Extract<LockHookState, { status: S }> => state.status === status;
  return within(
    new Promise((resolve) => {
      const now = controller.getSnapshot();
      if (matches(now)) return resolve(now);
      const off = controller.subscribe(() => {
        const state = controller.getSnapshot();
        if (!matches(state)) return;
        off();
        resolve(state);
      });
    }),
    2000,
    `the state ${status}`,
  );
}

describe('useLock (LockController) when the lock is lost in the same read as its grant', () => {
  it('turns lost with the reason stolen, never held', async () => {
    // Grants every acquire with token 7 and steals it right behind the grant, in the same tick.
    fake = await startFakeServer({
      respond: (frame, connection) => {
        if (frame.op !== 'acquire') return defaultResponse(frame);
        connection.reply(frame.id, { acquired: true, token: 7, expiresAt: null });
        connection.send({ type: 'lost', key: frame.key, token: 7, reason: 'stolen' });
        return undefined;
      },
    });
    const client = await LockClient.connect(fake.url, { reconnect: false });
    clients.push(client);
    const controller = new LockController(client, 'doc:y', () => ({ trackPosition: false }));
    const seen: string[] = [];
    controller.subscribe(() => seen.push(controller.getSnapshot().status));
    controller.acquire();
    const lost = await stateIs(controller, 'lost');
    expect(lost.reason).toBe('stolen');
    expect(lost.error.code).toBe('stolen');
    expect(seen).toEqual(['waiting', 'lost']);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '@lockwire/protocol';
import { LockError } from '../server/src/errors.js';
import { createStubStore, stubServers } from '../server/test/server-harness.js';

// A store may settle a request `failed` while its call is still out (a Redis
// node that gave its requests up). The session answers it with that failure,
// whatever the call then resolves to: never `acquired: true` after it.

const { start, closeAll } = stubServers();

afterEach(closeAll);

const dropped = () => new LockError(ErrorCode.StoreUnavailable, 'lost contact with the lock store; the request was dropped');
const answer = { ok: false, error: { code: 'store_unavailable', message: 'lost contact with the lock store; the request was dropped' } };

describe('a request the store failed before its call resolved', () => {
  it('is answered with the failure, not acquired: true, when the acquire call then resolves granted', async () => {
    const stub = createStubStore();
    stub.behaviour.acquire = async (session, input) => {
      stub.listener().failed?.(session, input.ticket, dropped());
      return { status: 'granted', key: input.key, token: 7, expiresAt: null };
    };
    const client = await start(stub);
    expect(await client.request({ op: 'acquire', id: 'a', key: 'k' })).toEqual({ type: 'reply', id: 'a', ...answer });
    // Nothing else follows: by the ping's reply no grant was sent.
    expect(await client.request({ op: 'ping', id: 'p' })).toMatchObject({ ok: true });
    expect(client.inbox).toEqual([]);
  });

  it('is answered with the failure, not acquired: false, when the acquire call then resolves not granted', async () => {
    const stub = createStubStore();
    stub.behaviour.acquire = async (session, input) => {
      stub.listener().failed?.(session, input.ticket, dropped());
      return { status: 'not_granted' };
    };
    const client = await start(stub);
    expect(await client.request({ op: 'acquire', id: 'a', key: 'k', acquireTimeout: 0 })).toEqual({ type: 'reply', id: 'a', ...answer });
  });

  it('is answered with the failure, not free: true, when the wait call then resolves free', async () => {
    const stub = createStubStore();
    stub.behaviour.wait = async (session, input) => {
      stub.listener().failed?.(session, input.ticket, dropped());
      return 'free';
    };
    const client = await start(stub);
    expect(await client.request({ op: 'wait', id: 'w', key: 'k' })).toEqual({ type: 'reply', id: 'w', ...answer });
    // The session goes on, and the id is free again.
    stub.behaviour.wait = async () => 'free';
    expect(await client.request({ op: 'wait', id: 'w', key: 'k' })).toEqual({ type: 'reply', id: 'w', ok: true, free: true });
  });
});

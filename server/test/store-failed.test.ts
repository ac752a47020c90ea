import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '@lockwire/protocol';
import { LockError } from '../src/errors.js';
import type { AcquireInput, WaitInput } from '../src/store.js';
import { callArgs, createStubStore, stubServers } from './server-harness.js';

const { start, closeAll } = stubServers();

afterEach(closeAll);

const unavailable = () => new LockError(ErrorCode.StoreUnavailable, 'lost contact with the lock store');

describe("the store listener's failed", () => {
  it('answers a queued acquire and a pending wait with the error, after their queued, and the session goes on', async () => {
    const stub = createStubStore();
    const client = await start(stub);
    client.send({ op: 'acquire', id: 'a', key: 'k' });
    expect(await client.next()).toEqual({ type: 'queued', id: 'a', key: 'k', position: 1 });
    client.send({ op: 'wait', id: 'w', key: 'k' });
    // By the ping's reply the wait has reached the store.
    expect(await client.request({ op: 'ping', id: 'p' })).toMatchObject({ ok: true });
    const [session, acquire] = callArgs(stub.calls, 'acquire') as [string, AcquireInput];
    const [, wait] = callArgs(stub.calls, 'wait') as [string, WaitInput];
    stub.listener().failed?.(session, acquire.ticket, unavailable());
    stub.listener().failed?.(session, wait.ticket, unavailable());
    const error = { code: 'store_unavailable', message: 'lost contact with the lock store' };
    expect(await client.reply('a')).toEqual({ type: 'reply', id: 'a', ok: false, error });
    expect(await client.reply('w')).toEqual({ type: 'reply', id: 'w', ok: false, error });
    // Both ids are free again: the requests are no longer pending.
    stub.behaviour.acquire = async (_s, input) => ({ status: 'granted', key: input.key, token: 7, expiresAt: null });
    expect(await client.request({ op: 'acquire', id: 'a', key: 'k' })).toMatchObject({ ok: true, acquired: true, token: 7 });
  });

  it('answers a failure that came before the acquire call resolved right after the queued', async () => {
    const stub = createStubStore();
    stub.behaviour.acquire = async (session, input) => {
      stub.listener().failed?.(session, input.ticket, unavailable());
      return { status: 'queued', position: 1 };
    };
    const client = await start(stub);
    client.send({ op: 'acquire', id: 1, key: 'k' });
    expect(await client.next()).toEqual({ type: 'queued', id: 1, key: 'k', position: 1 });
    expect(await client.next()).toMatchObject({ type: 'reply', id: 1, ok: false, error: { code: 'store_unavailable' } });
  });
});

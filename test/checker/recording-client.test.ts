import { createLockServer, type LockServer } from '@lockwire/server';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkHistory, formatViolations } from './check.js';
import { HistoryRecorder, type HistoryEvent } from './history.js';
import { FencedResource } from './oracle.js';
import { RecordingClient } from './recording-client.js';

const WAIT_MS = 3000;

/** Resolves `promise`, or rejects after a bounded wait naming what was awaited. */
function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`)), WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('the recording client against a real server', () => {
  let server: LockServer;
  let recorder: HistoryRecorder;
  let resource: FencedResource;
  const clients: RecordingClient[] = [];

  const connect = async (name: string) => {
    const client = await RecordingClient.connect(server.url, { recorder, name });
    clients.push(client);
    return client;
  };
  const types = (client: string) =>
    recorder
      .history()
      .filter((event: HistoryEvent) => event.client === client && event.type !== 'write')
      .map((event) => event.type);
  const expectValid = (fifo: boolean) => {
    const result = checkHistory(recorder.history(), { fifo });
    expect(result.violations, formatViolations(result.violations)).toEqual([]);
    for (const client of clients) expect(client.protocolErrors).toEqual([]);
  };

  beforeEach(async () => {
    server = await createLockServer({ port: 0, heartbeatInterval: 0 });
    recorder = new HistoryRecorder();
    resource = new FencedResource({ recorder });
    clients.length = 0;
  });

  afterEach(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await server.close();
  });

  it('a request sent after the connection closed settles at once as unknown and is recorded so', async () => {
    const ana = await connect('ana');
    await within(ana.acquire('k'), 'the grant');
    ana.terminate();
    await within(ana.closed, 'the close');

    expect(await within(ana.release('k'), 'the late release')).toEqual({ outcome: 'unknown' });
    expect(await within(ana.ping(), 'the late ping')).toBe(false);
    expect(types('ana').slice(-4)).toEqual(['release', 'unknown', 'ping', 'unknown']);
  });

  it('records a handoff between two clients as a valid history', async () => {
    const a = await connect('a');
    const b = await connect('b');
    const first = await within(a.acquire('doc'), 'a grant');
    expect(first.outcome).toBe('granted');
    const waiting = b.startAcquire('doc');
    expect(await within(waiting.queued, 'the queued acknowledgement')).toBe(true);
    if (first.outcome === 'granted') expect(resource.write('a', 'doc', first.token)).toBe(true);
    expect(await within(a.release('doc'), 'the release answer')).toEqual({ outcome: 'released' });
    const second = await within(waiting.result, 'the handoff');
    expect(second.outcome).toBe('granted');
    if (second.outcome === 'granted' && first.outcome === 'granted') {
      expect(second.token).toBeGreaterThan(first.token);
      expect(resource.write('b', 'doc', second.token)).toBe(true);
      expect(resource.write('a', 'doc', first.token)).toBe(false);
    }
    await within(b.release('doc'), 'the second release');
    expect(types('a')).toEqual(['acquire', 'granted', 'release', 'released']);
    expect(types('b')).toEqual(['acquire', 'queued', 'granted', 'release', 'released']);
    expectValid(true);
  });

  it('records a steal as a lost push to the old holder', async () => {
    const a = await connect('a');
    const b = await connect('b');
    await within(a.acquire('doc'), 'a grant');
    const stolen = await within(b.acquire('doc', { steal: true }), 'the steal');
    expect(stolen.outcome).toBe('granted');
    const lost = await within(a.nextLost('doc'), 'the lost push');
    expect(lost.reason).toBe('stolen');
    expect(await within(a.ping(), 'the pong')).toBe(true);
    expectValid(false);
  });

  it('records an expired hold and the timed-out and cancelled waits', async () => {
    const a = await connect('a');
    const b = await connect('b');
    await within(a.acquire('doc', { holdTimeout: 60 }), 'a grant');
    expect(await within(b.acquire('doc', { acquireTimeout: 10 }), 'the timeout')).toEqual({ outcome: 'not-granted' });
    const cancelled = b.startAcquire('doc');
    await within(cancelled.queued, 'the queued acknowledgement');
    expect(await within(b.cancel(cancelled.id), 'the cancel answer')).toBe(true);
    expect(await within(cancelled.result, 'the cancelled acquire')).toEqual({ outcome: 'failed', code: 'cancelled' });
    const next = b.startAcquire('doc');
    expect((await within(a.nextLost('doc'), 'the expiry')).reason).toBe('expired');
    expect((await within(next.result, 'the grant after expiry')).outcome).toBe('granted');
    expectValid(true);
  });

  it("records a holder's close and the waiter's grant within the bound", async () => {
    const a = await connect('a');
    const b = await connect('b');
    await within(a.acquire('doc'), 'a grant');
    const waiting = b.startAcquire('doc');
    await within(waiting.queued, 'the queued acknowledgement');
    const pending = a.startAcquire('other-key');
    await within(a.terminate(), 'the close');
    expect((await within(waiting.result, 'the handoff')).outcome).toBe('granted');
    expect((await pending.result).outcome).not.toBe('failed');
    expect(types('a').slice(0, 3)).toEqual(['acquire', 'granted', 'acquire']);
    expect(types('a')).toContain('closed');
    expectValid(true);
  });

  it('records the end of a connection the server closed as unknown outcomes', async () => {
    const a = await connect('a');
    const b = await connect('b');
    await within(b.acquire('doc'), 'b grant');
    const waiting = a.startAcquire('doc');
    await within(waiting.queued, 'the queued acknowledgement');
    await within(server.close(), 'the server to drain');
    const outcome = await within(waiting.result, 'the drained acquire');
    expect(['unknown', 'failed']).toContain(outcome.outcome);
    await within(a.closed, 'the close');
    const closes = recorder.history().filter((event) => event.type === 'closed' && event.client === 'a');
    expect(closes).toMatchObject([{ kind: 'server' }]);
    expectValid(false);
  });
});

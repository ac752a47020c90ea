import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLockServer, type LockServer } from '@lockwire/server';
import { checkHistory, formatViolations } from '../checker/check.js';
import { HistoryRecorder, type AcquireGranted, type HistoryEvent, type LockLost } from '../checker/history.js';
import { FencedResource } from '../checker/oracle.js';
import { RecordingClient } from '../checker/recording-client.js';
import { ClientProcess } from './client-process.js';
import { within } from './within.js';

// Clients in their own OS processes, killed with SIGKILL or paused with
// SIGSTOP, against a memory-store server in this process (real time: the
// processes run on it).

const isGrant = (key: string) => (event: HistoryEvent): event is AcquireGranted => event.type === 'granted' && event.key === key;
const isQueued = (key: string) => (event: HistoryEvent) => event.type === 'queued' && event.key === key;

describe('memory store: client processes killed or paused', () => {
  let server: LockServer;
  let recorder: HistoryRecorder;
  let resource: FencedResource;
  const processes: ClientProcess[] = [];
  const clients: RecordingClient[] = [];

  beforeEach(async () => {
    server = await createLockServer({ port: 0, heartbeatInterval: 0 });
    recorder = new HistoryRecorder();
    resource = new FencedResource({ recorder });
  });
  afterEach(async () => {
    await Promise.all(processes.splice(0).map((p) => p.kill()));
    await Promise.all(clients.splice(0).map((c) => c.terminate()));
    await server.close();
  });

  const spawnClient = async (name: string) => {
    const client = await ClientProcess.start({ url: server.url, name, recorder, resource });
    processes.push(client);
    return client;
  };
  const connect = async (name: string) => {
    const client = await RecordingClient.connect(server.url, { recorder, name });
    clients.push(client);
    return client;
  };
  const expectValid = (options: Parameters<typeof checkHistory>[1] = {}) => {
    const result = checkHistory(recorder.history(), options);
    expect(result.ok, formatViolations(result.violations)).toBe(true);
  };

  it('a holder killed with SIGKILL has its lock granted to the next waiter within 100 ms', async () => {
    const holder = await spawnClient('holder');
    holder.acquire({ key: 'k' });
    const held = await within(holder.next(isGrant('k')), 5000, 'the holder is granted');
    const waiter = await connect('waiter');
    const next = waiter.startAcquire('k');
    expect(await within(next.queued, 2000, 'the waiter is queued')).toBe(true);

    const killedAt = recorder.now();
    await holder.kill();
    const granted = await within(next.result, 1000, 'the waiter is granted');
    const grantedAt = recorder.now();

    expect(granted).toEqual({ outcome: 'granted', token: expect.any(Number) as number });
    if (granted.outcome === 'granted') expect(granted.token).toBeGreaterThan(held.token);
    expect(grantedAt - killedAt).toBeLessThan(100);
    expectValid();
  });

  it('a waiter killed mid-acquire is never granted: the key goes to the waiter behind it', async () => {
    const holder = await connect('holder');
    expect(await holder.acquire('k')).toMatchObject({ outcome: 'granted' });
    for (let round = 0; round < 4; round++) {
      const doomed = await spawnClient(`doomed${round}`);
      doomed.acquire({ key: 'k' });
      // Even rounds: killed once queued; odd rounds: killed as soon as the acquire went out.
      if (round % 2 === 0) await within(doomed.next(isQueued('k')), 2000, 'the doomed client is queued');
      else await within(doomed.next((e) => e.type === 'acquire'), 2000, 'the doomed client sent its acquire');
      const behind = await connect(`behind${round}`);
      const next = behind.startAcquire('k');
      expect(await within(next.queued, 2000, 'the next waiter is queued')).toBe(true);
      await doomed.kill();
      const current = round === 0 ? holder : clients[clients.length - 2];
      expect(await current?.release('k')).toEqual({ outcome: 'released' });
      expect(await within(next.result, 1000, 'the waiter behind the killed one is granted')).toMatchObject({ outcome: 'granted' });
    }
    const status = await fetch(`${server.httpUrl}/v1/locks`).then((r) => r.json() as Promise<{ locks: { queue: unknown[]; holders: unknown[] }[] }>);
    expect(status.locks).toHaveLength(1);
    expect(status.locks[0]?.queue).toEqual([]);
    expectValid({ fifo: true });
  });

  it('a holder paused past its hold timeout writes with its old token after it resumes, and the fenced resource refuses it', async () => {
    const stale = await spawnClient('stale');
    // Writes at once, then again when its "work" is done, 600 ms after the grant: past its hold timeout.
    stale.acquire({ key: 'k', holdTimeout: 300, writeAfter: [0, 600] });
    const held = await within(stale.next(isGrant('k')), 5000, 'the first holder is granted');
    await within(stale.until(() => stale.writes[0]), 500, 'the holder writes at once');
    stale.pause();
    const successor = await connect('successor');
    const next = successor.startAcquire('k');
    expect(await within(next.queued, 2000, 'the successor is queued')).toBe(true);

    const granted = await within(next.result, 2000, 'the lock expires and the successor is granted');
    if (granted.outcome !== 'granted') throw new Error(`expected a grant, got ${JSON.stringify(granted)}`);
    expect(granted.token).toBeGreaterThan(held.token);
    expect(resource.write('successor', 'k', granted.token)).toBe(true);

    stale.cont();
    const lost = await within(stale.next((e): e is LockLost => e.type === 'lost' && e.key === 'k'), 2000, 'the stale holder hears lost');
    expect(lost).toMatchObject({ token: held.token, reason: 'expired' });

    const writes = await within(
      stale.until(() => (stale.writes.length >= 2 ? stale.writes : undefined)),
      2000,
      'the resumed holder writes again',
    );
    // Its first write, before the pause, was accepted; the one after it, with the same old token, refused.
    expect(writes.map((w) => [w.token, w.accepted])).toEqual([
      [held.token, true],
      [held.token, false],
    ]);
    expect(resource.highestToken('k')).toBe(granted.token);
    // The paused holder hears `lost` long after the successor's grant: only causal order is checked.
    expectValid({ lostOrderSlackMs: Infinity });
  });
});

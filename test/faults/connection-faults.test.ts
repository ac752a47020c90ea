import { afterEach, describe, expect, it } from 'vitest';
import { createLockServer, createManualClock, type LockServer } from '@lockwire/server';
import { checkHistory, formatViolations } from '../checker/check.js';
import { HistoryRecorder } from '../checker/history.js';
import { random } from '../checker/simulation.js';
import { RecordingClient } from '../checker/recording-client.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { ClientProcess } from './client-process.js';
import { until, within } from './within.js';

// Connection faults against a memory-store server in this process: a path
// that goes silent, a client that stops reading, and many clients dropping
// at once.

const HEARTBEAT_MS = 100;

describe('memory store: connection faults', () => {
  let server: LockServer | undefined;
  let proxy: TcpProxy | undefined;
  const processes: ClientProcess[] = [];
  const clients: RecordingClient[] = [];

  afterEach(async () => {
    await Promise.all(processes.splice(0).map((p) => p.kill()));
    await Promise.all(clients.splice(0).map((c) => c.terminate()));
    await proxy?.close();
    await server?.close();
    proxy = undefined;
    server = undefined;
  });

  const expectValid = (recorder: HistoryRecorder, options: Parameters<typeof checkHistory>[1] = {}) => {
    const result = checkHistory(recorder.history(), options);
    expect(result.ok, formatViolations(result.violations)).toBe(true);
  };

  it('a half-open connection is cut by the heartbeat and its lock granted to the next waiter within two heartbeat intervals', async () => {
    const live = await createLockServer({ port: 0, heartbeatInterval: HEARTBEAT_MS });
    server = live;
    const silent = await startTcpProxy({ targetPort: live.port });
    proxy = silent;
    const recorder = new HistoryRecorder();
    const holder = await RecordingClient.connect(`ws://127.0.0.1:${silent.port}/v1`, { recorder, name: 'holder' });
    const waiter = await RecordingClient.connect(live.url, { recorder, name: 'waiter' });
    clients.push(holder, waiter);
    const held = await holder.acquire('k');
    expect(held).toMatchObject({ outcome: 'granted' });
    const next = waiter.startAcquire('k');
    expect(await within(next.queued, 2000, 'the waiter is queued')).toBe(true);

    // Nothing crosses the proxy from here on, and nothing is closed: neither end can tell.
    const bound = 2 * HEARTBEAT_MS;
    recorder.record({ type: 'closed', client: 'holder', kind: 'half-open', boundMs: bound });
    const silencedAt = recorder.now();
    silent.hold();
    const granted = await within(next.result, 2000, 'the waiter is granted');
    const elapsed = recorder.now() - silencedAt;

    expect(granted).toMatchObject({ outcome: 'granted' });
    expect(elapsed).toBeLessThan(bound + 50);
    // The server cut its side; once the path carries again, the holder sees the close too.
    silent.resume();
    await within(holder.closed, 2000, 'the holder sees its connection closed');
    expectValid(recorder, { boundSlackMs: 50 });
  });

  it('a client that stops reading is cut by the heartbeat, and meanwhile the other clients keep their round trips as short as before', async () => {
    const heartbeat = 300;
    const live = await createLockServer({ port: 0, heartbeatInterval: heartbeat });
    server = live;
    const recorder = new HistoryRecorder();
    const slow = await ClientProcess.start({ url: live.url, name: 'slow', recorder });
    processes.push(slow);
    slow.watch('');
    slow.acquire({ key: 'held-by-slow' });
    await within(slow.next((e) => e.type === 'granted'), 2000, 'the slow client holds its key');
    const [waiter, busy1, busy2, prober] = await Promise.all(
      ['waiter', 'busy1', 'busy2', 'prober'].map((name) => RecordingClient.connect(live.url, { recorder, name })),
    );
    if (!waiter || !busy1 || !busy2 || !prober) throw new Error('clients');
    clients.push(waiter, busy1, busy2, prober);
    const next = waiter.startAcquire('held-by-slow');
    expect(await within(next.queued, 2000, 'the waiter is queued')).toBe(true);

    // Two clients flood the watched prefix with events; a third measures ping round trips.
    let flooding = true;
    let cycles = 0;
    const flood = async (client: RecordingClient, key: string) => {
      while (flooding) {
        const result = await client.acquire(key);
        if (result.outcome !== 'granted') return;
        await client.release(key);
        cycles++;
      }
    };
    const floods = [flood(busy1, 'flood:1'), flood(busy2, 'flood:2')];
    const roundTrips: number[] = [];
    let probed: () => void = () => {};
    let proberCut: (error: Error) => void = () => {};
    const probing = (async () => {
      while (flooding) {
        const sent = performance.now();
        if (!(await prober.ping())) {
          proberCut(new Error('the server closed the probing client, which kept reading and answering'));
          return;
        }
        roundTrips.push(performance.now() - sent);
        probed();
      }
    })();
    const probes = (count: number) => {
      const target = roundTrips.length + count;
      const reached = new Promise<void>((resolve, reject) => {
        probed = () => roundTrips.length >= target && resolve();
        proberCut = reject;
      });
      return within(reached, 15_000, `${count} round trips`);
    };
    const p99 = (samples: number[]) => [...samples].sort((a, b) => a - b)[Math.floor(samples.length * 0.99)] ?? Infinity;

    // Baseline: the same flood while the watcher reads.
    await probes(300);
    const baseline = roundTrips.splice(0);

    // The slow client stops reading: its events pile up at the server until the heartbeat cuts it.
    recorder.record({ type: 'closed', client: 'slow', kind: 'half-open', boundMs: 2 * heartbeat });
    const stoppedAt = recorder.now();
    slow.pause();
    const granted = await within(next.result, 3000, 'the slow client is cut and its key granted');
    const cutAfter = recorder.now() - stoppedAt;
    await probes(100);
    flooding = false;
    await Promise.all([...floods, probing]);
    slow.cont();

    expect(granted).toMatchObject({ outcome: 'granted' });
    expect(cutAfter).toBeLessThan(2 * heartbeat + 100);
    expect(cycles).toBeGreaterThan(100);
    // The server never waits on the stopped reader's socket: the others' round trips stay as short as before.
    expect(p99(roundTrips)).toBeLessThan(2 * p99(baseline) + 25);
    expect(Math.max(...roundTrips)).toBeLessThan(500);
    expectValid(recorder, { boundSlackMs: 100 });
  });

  it('fifty clients dropping at once and reconnecting leave no lock or waiter behind, round after round', async () => {
    const clock = createManualClock();
    const live = await createLockServer({ port: 0, clock, heartbeatInterval: 0 });
    server = live;
    const recorder = new HistoryRecorder();
    const rand = random(7);
    const keys = ['hot:a', 'hot:b', 'hot:c', 'hot:d', 'hot:e'];
    let grants = 0;

    for (let round = 0; round < 3; round++) {
      const group = await Promise.all(
        Array.from({ length: 50 }, (_, i) => RecordingClient.connect(live.url, { recorder, name: `r${round}c${i}` })),
      );
      clients.push(...group);
      const target = grants + 300;
      let reached: () => void = () => {};
      const enough = new Promise<void>((resolve) => (reached = resolve));
      const work = async (client: RecordingClient) => {
        for (;;) {
          const key = keys[Math.floor(rand() * keys.length)] ?? 'hot:a';
          const mode = rand() < 0.2 ? 'shared' : 'exclusive';
          const result = await client.acquire(key, { mode });
          if (result.outcome !== 'granted') return;
          if (++grants >= target) reached();
          if ((await client.release(key)).outcome !== 'released') return;
        }
      };
      const workers = group.map(work);
      await within(enough, 10_000, `round ${round} reaches ${target} grants`);

      // Every connection of the round is dropped in the same instant, mid-acquire or holding.
      await Promise.all(group.map((client) => client.terminate()));
      await Promise.all(workers);
      await until(
        async () => {
          const { locks } = (await fetch(`${live.httpUrl}/v1/locks`).then((r) => r.json())) as { locks: unknown[] };
          return locks.length === 0 && live.sessionCount() === 0 ? true : undefined;
        },
        2000,
        `round ${round}: every lock and waiter gone`,
      );
    }
    expect(grants).toBeGreaterThanOrEqual(900);
    expectValid(recorder, { fifo: true });
  });
});

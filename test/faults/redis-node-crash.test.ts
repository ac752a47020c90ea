import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkHistory, formatViolations } from '../checker/check.js';
import { HistoryRecorder, handoffGuardMs } from '../checker/history.js';
import { FencedResource } from '../checker/oracle.js';
import { RecordingClient, type AcquireResult } from '../checker/recording-client.js';
import { startLockwireProcess, type LockwireProcess } from '../helpers/lockwire-process.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { within } from './within.js';

// Three `lockwire serve --store redis` processes on one redis-server; one
// of them is killed with SIGKILL while its clients hold and wait.

const NODE_TTL = 1000;

const tokenOf = (result: AcquireResult): number => {
  if (result.outcome !== 'granted') throw new Error(`expected a grant, got ${JSON.stringify(result)}`);
  return result.token;
};

describe('Redis store: a node killed with SIGKILL', () => {
  let redis: RedisServer;
  const nodes: LockwireProcess[] = [];
  const clients: RecordingClient[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.terminate()));
    await Promise.all(nodes.splice(0).map((n) => n.kill()));
  });
  afterAll(async () => {
    await redis.stop();
  });

  it("the survivors release the dead node's locks to their waiters once its node TTL runs out, with higher tokens, and drop its queued requests", async () => {
    const started = await Promise.all(
      [0, 1, 2].map(() => startLockwireProcess({ store: 'redis', redisUrl: redis.url, nodeTtl: NODE_TTL, heartbeat: 0 })),
    );
    nodes.push(...started);
    const [doomed, n2, n3] = started;
    if (!doomed || !n2 || !n3) throw new Error('nodes');
    const recorder = new HistoryRecorder();
    const resource = new FencedResource({ recorder });
    const connect = async (node: LockwireProcess, name: string) => {
      const client = await RecordingClient.connect(node.url, { recorder, name });
      clients.push(client);
      return client;
    };

    // On the doomed node: two holders and one waiter.
    const h1 = await connect(doomed, 'h1');
    const h2 = await connect(doomed, 'h2');
    const q = await connect(doomed, 'q');
    // On the survivors: waiters for the doomed holders' keys, and the holder of the key q waits for.
    const w1 = await connect(n2, 'w1');
    const w2 = await connect(n3, 'w2');
    const x = await connect(n2, 'x');
    const w3 = await connect(n3, 'w3');

    const t1 = tokenOf(await h1.acquire('k1'));
    const t2 = tokenOf(await h2.acquire('k2'));
    resource.write('h1', 'k1', t1);
    resource.write('h2', 'k2', t2);
    tokenOf(await x.acquire('k3'));
    const next1 = w1.startAcquire('k1');
    const next2 = w2.startAcquire('k2');
    const doomedWaiter = q.startAcquire('k3');
    expect(await within(Promise.all([next1.queued, next2.queued, doomedWaiter.queued]), 5000, 'the waiters are queued')).toEqual([
      true,
      true,
      true,
    ]);
    const next3 = w3.startAcquire('k3');
    expect(await within(next3.queued, 5000, 'w3 is queued behind q')).toBe(true);

    // The node dies: its clients' connections end with it, the survivors notice by its liveness key.
    for (const name of ['h1', 'h2', 'q']) {
      recorder.record({ type: 'closed', client: name, kind: 'crash', boundMs: handoffGuardMs(NODE_TTL) });
    }
    await doomed.kill();
    // Node liveness runs on real timers in the node processes: this bound only guards against a hang.
    const [g1, g2] = await within(Promise.all([next1.result, next2.result]), NODE_TTL + 5000, "the dead node's keys are granted");
    expect(tokenOf(g1)).toBeGreaterThan(t1);
    expect(tokenOf(g2)).toBeGreaterThan(t2);
    expect(resource.write('w1', 'k1', tokenOf(g1))).toBe(true);
    expect(resource.write('w2', 'k2', tokenOf(g2))).toBe(true);

    // The dead node's waiter is gone: x's release goes straight to w3.
    expect(await x.release('k3')).toEqual({ outcome: 'released' });
    tokenOf(await within(next3.result, 3000, 'w3 is granted k3'));

    const result = checkHistory(recorder.history());
    expect(result.ok, formatViolations(result.violations)).toBe(true);
  });
});

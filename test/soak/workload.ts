/**
 * One epoch of soak traffic: workers that connect (each connection through a
 * TCP proxy of its own, so a fault can silence exactly it), acquire, write to
 * the fenced resource, release, cancel and disconnect at random over a few hot
 * keys and many cold ones; and a fault injector that kills connections,
 * makes them half-open, and kills Redis nodes.
 */
import { handoffGuardMs, type HistoryRecorder } from '../checker/history.js';
import type { FencedResource } from '../checker/oracle.js';
import { RecordingClient, type AcquireOptions } from '../checker/recording-client.js';
import type { LockwireProcess } from '../helpers/lockwire-process.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { onRedis, type Deployment } from './deployment.js';

/** Fault kinds the injector counts. */
export const FaultKind = { Kill: 'connection-kill', HalfOpen: 'half-open', NodeKill: 'node-kill' } as const;
export type FaultKind = (typeof FaultKind)[keyof typeof FaultKind];

export interface EpochSettings {
  epoch: number;
  workers: number;
  hotKeys: number;
  coldKeys: number;
  heartbeat: number;
  nodeTtl: number;
  /** Mean ms between faults. */
  faultEveryMs: number;
  /** Least ms between two node kills. */
  nodeKillEveryMs: number;
  /** How soon the server hands on the locks of a connection killed by the client side (recorded as its hang guard). */
  cleanBoundMs: number;
}

export interface EpochStats {
  operations: number;
  grants: number;
  faults: Record<FaultKind, number>;
}

export interface EpochContext {
  settings: EpochSettings;
  deployment: Deployment;
  recorder: HistoryRecorder;
  resource: FencedResource;
  rand: () => number;
  stats: EpochStats;
}

interface Connection {
  client: RecordingClient;
  proxy: TcpProxy;
  node: LockwireProcess;
  faulted: boolean;
  /**
   * Set once the client has seen its connection close (after the recording
   * client settled its pending requests): a request sent later would never
   * be answered, so none is sent.
   */
  ended: boolean;
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A running epoch: `stop()` ends the traffic and every connection, and resolves once all is quiet. */
export interface RunningEpoch {
  stop(): Promise<void>;
}

/** Starts the traffic and the faults of one epoch. */
export function startEpoch(ctx: EpochContext): RunningEpoch {
  const { settings, recorder, resource, rand, stats } = ctx;
  const live = new Set<Connection>();
  const faultsInFlight = new Set<Promise<void>>();
  let stopping = false;
  let wake: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (wake = resolve));
  let lastNodeKill = -Infinity;
  const pick = <T>(items: readonly T[]): T | undefined => items[Math.floor(rand() * items.length)];

  const open = async (name: string): Promise<Connection | undefined> => {
    const node = pick(ctx.deployment.nodes());
    if (!node) return undefined;
    const proxy = await startTcpProxy({ targetPort: node.port });
    try {
      const client = await RecordingClient.connect(`ws://127.0.0.1:${proxy.port}/v1`, {
        recorder,
        name,
        closeBoundMs: handoffGuardMs(settings.cleanBoundMs),
        connectTimeoutMs: 3000,
      });
      const connection: Connection = { client, proxy, node, faulted: false, ended: false };
      void client.closed.then(() => (connection.ended = true));
      live.add(connection);
      return connection;
    } catch {
      await proxy.close();
      return undefined;
    }
  };

  const randomAcquire = (): { key: string; options: AcquireOptions } => {
    const hot = rand() < 0.7;
    const key = hot ? `hot:${Math.floor(rand() * settings.hotKeys)}` : `cold:${Math.floor(rand() * settings.coldKeys)}`;
    const mode = rand() < 0.2 ? 'shared' : 'exclusive';
    const roll = rand();
    const acquireTimeout = roll < 0.3 ? null : roll < 0.45 ? 0 : 10 + Math.floor(rand() * 300);
    const holdTimeout = rand() < 0.6 ? null : 50 + Math.floor(rand() * 350);
    const steal = mode === 'exclusive' && acquireTimeout !== 0 && rand() < 0.03;
    return { key, options: { mode, acquireTimeout, holdTimeout, steal } };
  };

  /** One connection's life: operations until it ends or the epoch stops. */
  const drive = async (connection: Connection) => {
    const { client } = connection;
    const over = () => stopping || connection.ended;
    while (!over()) {
      if (rand() < 0.015) {
        stats.operations++;
        await client.close();
        return;
      }
      const { key, options } = randomAcquire();
      const pending = client.startAcquire(key, options);
      stats.operations++;
      let settled = false;
      if (options.acquireTimeout !== 0 && rand() < 0.1) {
        const delay = rand() * 60;
        void pending.queued.then(async (queued) => {
          if (!queued) return;
          await pause(delay);
          if (!settled && !over()) {
            stats.operations++;
            await client.cancel(pending.id);
          }
        });
      }
      const result = await pending.result;
      settled = true;
      if (result.outcome === 'unknown') return;
      if (result.outcome === 'failed') {
        // store_unavailable while a Redis node recovers: back off like a client would.
        await pause(20 + rand() * 50);
        continue;
      }
      if (result.outcome !== 'granted') continue;
      stats.grants++;
      const { token } = result;
      const stillHeld = () => !client.lost.some((lost) => lost.key === key && lost.token === token);
      resource.write(client.name, key, token);
      if (rand() < 0.5 && !over()) {
        stats.operations++;
        if (!(await client.ping())) return;
      }
      // The holder's work.
      await pause(rand() * 40);
      if (stillHeld()) resource.write(client.name, key, token);
      if (over()) return;
      if (stillHeld() && rand() < 0.97) {
        stats.operations++;
        const released = await client.release(key);
        if (released.outcome === 'unknown') return;
      }
    }
  };

  const worker = async (index: number) => {
    for (let n = 0; !stopping; n++) {
      const connection = await open(`e${settings.epoch}w${index}c${n}`);
      if (!connection) {
        await pause(50);
        continue;
      }
      try {
        await drive(connection);
      } finally {
        live.delete(connection);
        if (!connection.faulted) await connection.proxy.close();
      }
    }
  };

  const victim = (): Connection | undefined => pick([...live].filter((c) => !c.faulted));

  const injectOne = async () => {
    const roll = rand();
    const nodes = ctx.deployment.nodes();
    const now = performance.now();
    if (onRedis(ctx.deployment.store) && roll < 0.12 && now - lastNodeKill > settings.nodeKillEveryMs && nodes.length > 1) {
      const node = pick(nodes);
      if (!node) return;
      lastNodeKill = now;
      stats.faults[FaultKind.NodeKill]++;
      for (const connection of live) {
        if (connection.node !== node || connection.faulted) continue;
        recorder.record({ type: 'closed', client: connection.client.name, kind: 'crash', boundMs: handoffGuardMs(settings.nodeTtl) });
      }
      await ctx.deployment.replace(node);
      return;
    }
    const connection = victim();
    if (!connection) return;
    if (roll < 0.6) {
      stats.faults[FaultKind.Kill]++;
      connection.faulted = true;
      await connection.client.terminate();
      await connection.proxy.close();
      return;
    }
    // Half-open: the path goes silent; the server's heartbeat must find it.
    stats.faults[FaultKind.HalfOpen]++;
    connection.faulted = true;
    recorder.record({
      type: 'closed',
      client: connection.client.name,
      kind: 'half-open',
      boundMs: handoffGuardMs(2 * settings.heartbeat),
    });
    connection.proxy.hold();
    await pause(2 * settings.heartbeat + 200);
    await connection.proxy.close();
  };

  const injector = async () => {
    while (!stopping) {
      await Promise.race([pause(settings.faultEveryMs * (0.5 + rand())), stopped]);
      if (stopping) return;
      const fault = injectOne().catch(() => {});
      faultsInFlight.add(fault);
      void fault.finally(() => faultsInFlight.delete(fault));
    }
  };

  const running = [...Array.from({ length: settings.workers }, (_, i) => worker(i)), injector()];

  return {
    async stop() {
      stopping = true;
      wake();
      await Promise.all([...faultsInFlight]);
      // Every connection ends at once, without a goodbye: pending requests become unknown.
      await Promise.all(
        [...live].map(async (connection) => {
          await connection.client.terminate();
          await connection.proxy.close();
        }),
      );
      await Promise.all(running);
    },
  };
}

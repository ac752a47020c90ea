import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createDeadlines } from '../src/redis/command-deadlines.js';
import { CommandPool } from '../src/redis/command-pool.js';

// The keep-alive of a node's command connections, on fake clients and the
// fake timers: Redis closes a connection idle past its `timeout`, so none
// may carry nothing for longer than the keep-alive period, however the
// node's own commands fall between the rounds.

const KEEP_ALIVE = 1000;

/** A client that answers every command at once and records when each was sent. */
function fakeClient() {
  const sent: number[] = [];
  return {
    sent,
    connect: async () => {},
    destroy: () => {},
    sendCommand: (args: string[]) => {
      sent.push(Date.now());
      return Promise.resolve(args[0] === 'PING' ? 'PONG' : 'OK');
    },
  };
}

/** The longest stretch, within [from, to], in which `sent` has no command. */
function longestIdle(sent: number[], from: number, to: number): number {
  let longest = 0;
  let last = from;
  for (const at of [...sent.filter((t) => t >= from && t <= to), to]) {
    longest = Math.max(longest, at - last);
    last = at;
  }
  return longest;
}

describe('the keep-alive of a command pool', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('leaves no connection idle for longer than the period, whether unused or used now and then', async () => {
    const clients = [fakeClient(), fakeClient(), fakeClient()];
    const deadlines = createDeadlines(60_000);
    const pool = new CommandPool({ clients, make: fakeClient, deadlines, onHung: () => {}, keepAlive: KEEP_ALIVE });
    try {
      // Commands of one key at odd moments, each just after where a round of a whole period would fall.
      const key = 'lw:{k0061}:k';
      const lane = pool.laneOf(key);
      for (let t = 0; t < 20_000; t += 10) {
        if (t % 2300 === 1010) await pool.run(key, ['HGET', key, 'tok']);
        await vi.advanceTimersByTimeAsync(10);
      }
      const longest = clients.map((client) => longestIdle(client.sent, 0, 20_000));
      expect(longest.filter((idle) => idle > KEEP_ALIVE)).toEqual([]);
      // The used connection carried its own commands too.
      expect(clients[lane]?.sent.length).toBeGreaterThan(0);
    } finally {
      pool.close();
      deadlines.stop();
    }
  });

  it('sends nothing once closed', async () => {
    const clients = [fakeClient(), fakeClient()];
    const deadlines = createDeadlines(60_000);
    const pool = new CommandPool({ clients, make: fakeClient, deadlines, onHung: () => {}, keepAlive: KEEP_ALIVE });
    pool.close();
    deadlines.stop();
    await vi.advanceTimersByTimeAsync(5 * KEEP_ALIVE);
    expect(clients.map((client) => client.sent.length)).toEqual([0, 0]);
  });
});

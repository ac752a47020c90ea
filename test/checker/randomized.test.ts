import { describe, expect, it } from 'vitest';
import { checkHistory, formatViolations, Rule } from './check.js';
import type { AcquireGranted, HistoryEvent } from './history.js';
import { buildModel, type Hold } from './model.js';
import { random, simulate, type Simulation } from './simulation.js';

const SEEDS = Array.from({ length: 40 }, (_, i) => 1000 + i);

const options = (sim: Simulation, fifo = false) => ({ fifo, lostOrderSlackMs: sim.maxDelayMs });

/** A history change that a checker must notice, and the rule that should. */
interface Mutation {
  name: string;
  rule: Rule;
  apply: (history: HistoryEvent[], pick: () => number) => boolean;
}

const grantsOf = (history: readonly HistoryEvent[]) =>
  history.filter((e): e is AcquireGranted => e.type === 'granted');

const choose = <T>(items: readonly T[], pick: () => number): T | undefined =>
  items[Math.floor(pick() * items.length)];

function replace(history: HistoryEvent[], from: HistoryEvent, to: HistoryEvent): void {
  history[history.indexOf(from)] = to;
}

const mutations: Mutation[] = [
  {
    name: 'a token granted to a second client',
    rule: Rule.TokenOrder,
    apply(history, pick) {
      const grants = grantsOf(history);
      const pairs = grants.flatMap((a) => grants.filter((b) => b.key === a.key && b.client !== a.client).map((b) => [a, b] as const));
      const pair = choose(pairs, pick);
      if (!pair) return false;
      replace(history, pair[1], { ...pair[1], token: pair[0].token });
      return true;
    },
  },
  {
    name: 'a later grant given a lower token',
    rule: Rule.TokenOrder,
    apply(history, pick) {
      const holds = buildModel(history).holds;
      const pairs = holds.flatMap((a) =>
        holds.filter((b) => b.key === a.key && a.grantUpper < b.grantLower).map((b) => [a, b] as const),
      );
      const pair = choose(pairs, pick);
      if (!pair) return false;
      const [a, b] = pair;
      replace(history, b.grant, { ...(b.grant as AcquireGranted), token: a.token - 0.5 });
      return true;
    },
  },
  {
    name: 'a waiter granted while the holder still held the key',
    rule: Rule.ExclusiveOverlap,
    apply(history, pick) {
      const holds = buildModel(history).holds;
      const candidates: { b: Hold; at: number }[] = [];
      for (const a of holds) {
        for (const b of holds) {
          if (b.key !== a.key || b.client === a.client || !b.acquire.queued) continue;
          if (a.mode !== 'exclusive' && b.mode !== 'exclusive') continue;
          const from = Math.max(b.acquire.queued.at, a.grantUpper);
          if (from < a.surelyUntil && b.grantUpper > a.surelyUntil) candidates.push({ b, at: (from + a.surelyUntil) / 2 });
        }
      }
      const chosen = choose(candidates, pick);
      if (!chosen) return false;
      replace(history, chosen.b.grant, { ...chosen.b.grant, at: chosen.at });
      return true;
    },
  },
  {
    name: 'a write verdict flipped',
    rule: Rule.Fencing,
    apply(history, pick) {
      const write = choose(history.filter((e) => e.type === 'write'), pick);
      if (write?.type !== 'write') return false;
      replace(history, write, { ...write, accepted: !write.accepted });
      return true;
    },
  },
  {
    name: 'a timeout answered before its time',
    rule: Rule.GrantValidity,
    apply(history, pick) {
      const ops = buildModel(history).acquires.filter((op) => op.outcome === 'not-granted' && op.completion);
      const op = choose(ops, pick);
      if (!op?.completion) return false;
      const acquireTimeout = op.completion.at - op.invoked.at + 1;
      replace(history, op.invoked, { ...op.invoked, acquireTimeout });
      return true;
    },
  },
  {
    name: 'a timed-out acquire granted afterwards',
    rule: Rule.GrantValidity,
    apply(history, pick) {
      const timedOut = choose(history.filter((e) => e.type === 'not-granted'), pick);
      if (timedOut?.type !== 'not-granted') return false;
      const grant: HistoryEvent = { ...timedOut, type: 'granted', token: 1e9, at: timedOut.at };
      history.splice(history.indexOf(timedOut) + 1, 0, grant);
      return true;
    },
  },
];

describe('randomized histories', () => {
  it('histories of a correct server pass every rule, with and without faults', () => {
    let grants = 0;
    for (const seed of SEEDS) {
      for (const faults of [true, false]) {
        const sim = simulate({ seed, faults });
        grants += grantsOf(sim.history).length;
        const result = checkHistory(sim.history, options(sim, !faults));
        expect(result.violations, `seed ${seed} faults ${faults}\n${formatViolations(result.violations)}`).toEqual([]);
      }
    }
    expect(grants).toBeGreaterThan(SEEDS.length * 10);
  });

  for (const mutation of mutations) {
    it(`${mutation.name} is caught as ${mutation.rule}`, () => {
      let applied = 0;
      for (const seed of SEEDS) {
        const sim = simulate({ seed });
        const history = [...sim.history];
        if (!mutation.apply(history, random(seed * 7 + 1))) continue;
        applied++;
        const rules = checkHistory(history, options(sim)).violations.map((v) => v.rule);
        expect(rules, `seed ${seed}`).toContain(mutation.rule);
      }
      expect(applied).toBeGreaterThan(SEEDS.length / 2);
    });
  }

  it('swapping the grant order of two queued waiters is caught as fifo', () => {
    let applied = 0;
    for (const seed of SEEDS) {
      const sim = simulate({ seed, faults: false });
      const history: HistoryEvent[] = [...sim.history];
      const ops = buildModel(history).acquires.filter((op) => op.outcome === 'granted' && !op.invoked.steal);
      const pairs = ops.flatMap((a) =>
        ops
          .filter((b) => b.invoked.key === a.invoked.key && b.client !== a.client && a.queued && a.queued.at < b.invoked.at)
          .map((b) => [a, b] as const),
      );
      const pair = choose(pairs, random(seed));
      if (!pair?.[0].completion || !pair[1].completion) continue;
      const [a, b] = [pair[0].completion as AcquireGranted, pair[1].completion as AcquireGranted];
      replace(history, a, { ...a, token: b.token });
      replace(history, b, { ...b, token: a.token });
      applied++;
      const rules = checkHistory(history, options(sim, true)).violations.map((v) => v.rule);
      expect(rules, `seed ${seed}`).toContain(Rule.Fifo);
    }
    expect(applied).toBeGreaterThan(SEEDS.length / 2);
  });

  it.each([
    ['slow-close-release', Rule.ReleaseBound],
    ['late-lost', Rule.LostBeforeGrant],
  ] as const)('a server with the bug %s is caught as %s', (bug, rule) => {
    // The bug changes the history only when a waiter depends on it; count the runs it was caught in.
    let caught = 0;
    for (const seed of SEEDS) {
      const sim = simulate({ seed, bug, clients: 8, opsPerClient: 10 });
      const violations = checkHistory(sim.history, options(sim)).violations;
      if (violations.length > 0) {
        caught++;
        expect(violations.map((v) => v.rule), `seed ${seed}\n${formatViolations(violations)}`).toContain(rule);
      }
    }
    expect(caught).toBeGreaterThanOrEqual(3);
  });
});

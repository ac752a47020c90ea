import { describe, expect, it } from 'vitest';
import { checkHistory, Rule, type CheckOptions } from './check.js';
import type { HistoryEvent } from './history.js';
import {
  acquire,
  cancel,
  cancelReply,
  closed,
  failed,
  granted,
  hold,
  lost,
  notGranted,
  notHolder,
  ping,
  pong,
  queued,
  release,
  released,
} from './fixtures.js';

const rules = (history: HistoryEvent[], options?: CheckOptions) =>
  [...new Set(checkHistory(history, options).violations.map((v) => v.rule))].sort();

describe('rule 4: grants only to requests still waiting', () => {
  const holder = hold('h', 'k', 1, 0, 30);

  it('a timeout after its time and a confirmed cancel pass', () => {
    const history = [
      ...holder,
      acquire('a', 1, 1, 'k', { acquireTimeout: 10 }),
      queued('a', 1.5, 1, 'k'),
      notGranted('a', 11.5, 1, 'k'),
      acquire('a', 12, 2, 'k'),
      queued('a', 12.5, 2, 'k'),
      cancel('a', 13, 3, 2),
      failed('a', 13.5, 2, 'k', 'cancelled'),
      cancelReply('a', 13.6, 3, 2, true),
    ];
    expect(rules(history)).toEqual([]);
  });

  it('an acquire answered twice fails', () => {
    const history = [
      ...holder,
      acquire('a', 1, 1, 'k', { acquireTimeout: 10 }),
      queued('a', 1.5, 1, 'k'),
      notGranted('a', 11.5, 1, 'k'),
      granted('a', 31, 1, 'k', 2),
    ];
    expect(rules(history)).toEqual([Rule.GrantValidity]);
  });

  it('a grant of a request whose cancel was confirmed fails', () => {
    const history = [
      ...holder,
      acquire('a', 1, 1, 'k'),
      queued('a', 1.5, 1, 'k'),
      cancel('a', 2, 2, 1),
      granted('a', 31, 1, 'k', 2),
      cancelReply('a', 31.1, 2, 1, true),
      release('a', 32, 3, 'k'),
      released('a', 33, 3, 'k'),
    ];
    expect(rules(history)).toEqual([Rule.GrantValidity]);
  });

  it('a timeout answered before the acquire timeout could elapse fails', () => {
    const history = [...holder, acquire('a', 1, 1, 'k', { acquireTimeout: 10 }), queued('a', 1.5, 1, 'k'), notGranted('a', 6, 1, 'k')];
    expect(rules(history)).toEqual([Rule.GrantValidity]);
  });

  it('a not-granted answer to an acquire that waits indefinitely fails', () => {
    const history = [...holder, acquire('a', 1, 1, 'k'), queued('a', 1.5, 1, 'k'), notGranted('a', 6, 1, 'k')];
    expect(rules(history)).toEqual([Rule.GrantValidity]);
  });

  it('a hold expiring before its hold timeout could elapse fails', () => {
    const history = [acquire('a', 0, 1, 'k', { holdTimeout: 10 }), granted('a', 1, 1, 'k', 1), lost('a', 6, 'k', 1, 'expired')];
    expect(rules(history)).toEqual([Rule.GrantValidity]);
  });

  it('a lost push for a lock never granted fails', () => {
    expect(rules([...holder, lost('a', 3, 'k', 9, 'stolen')])).toEqual([Rule.GrantValidity]);
  });
});

describe('rule 4: FIFO among waiters (option fifo)', () => {
  const holder = hold('h', 'k', 1, 0, 4.5);

  const overtaken = [
    ...holder,
    acquire('a', 0.5, 1, 'k'),
    queued('a', 1, 1, 'k'),
    acquire('b', 2, 1, 'k'),
    queued('b', 2.5, 1, 'k'),
    granted('b', 5, 1, 'k', 3),
    release('b', 6, 2, 'k'),
    released('b', 7, 2, 'k'),
    granted('a', 7.5, 1, 'k', 4),
    release('a', 8, 2, 'k'),
    released('a', 9, 2, 'k'),
  ];

  it('a later waiter granted before an earlier one fails', () => {
    expect(rules(overtaken, { fifo: true })).toEqual([Rule.Fifo]);
  });

  it('queue order is not checked without the fifo option', () => {
    expect(rules(overtaken)).toEqual([]);
  });

  it('waiters granted in queue order pass', () => {
    const history = [
      ...holder,
      acquire('a', 0.5, 1, 'k'),
      queued('a', 1, 1, 'k'),
      acquire('b', 2, 1, 'k'),
      queued('b', 2.5, 1, 'k'),
      granted('a', 5, 1, 'k', 3),
      release('a', 6, 2, 'k'),
      released('a', 7, 2, 'k'),
      granted('b', 7.5, 1, 'k', 4),
      release('b', 8, 2, 'k'),
      released('b', 9, 2, 'k'),
    ];
    expect(rules(history, { fifo: true })).toEqual([]);
  });

  it('two requests sent before either was acknowledged may be granted in either order', () => {
    const history = [
      ...holder,
      acquire('a', 0.5, 1, 'k'),
      acquire('b', 1.5, 1, 'k'),
      queued('a', 2.2, 1, 'k'),
      queued('b', 2.5, 1, 'k'),
      granted('b', 5, 1, 'k', 3),
      release('b', 6, 2, 'k'),
      released('b', 7, 2, 'k'),
      granted('a', 7.5, 1, 'k', 4),
      release('a', 8, 2, 'k'),
      released('a', 9, 2, 'k'),
    ];
    expect(rules(history, { fifo: true })).toEqual([]);
  });

  it('a try-once request granted while an earlier waiter still waits fails', () => {
    const history = [
      ...holder,
      acquire('a', 0.5, 1, 'k', { acquireTimeout: 50 }),
      queued('a', 1, 1, 'k'),
      acquire('b', 5, 1, 'k', { acquireTimeout: 0 }),
      granted('b', 6, 1, 'k', 3),
      release('b', 7, 2, 'k'),
      released('b', 8, 2, 'k'),
      notGranted('a', 51, 1, 'k'),
    ];
    expect(rules(history, { fifo: true })).toEqual([Rule.Fifo]);
  });
});

describe('rule 5: a closed connection hands its locks on before the bound runs out', () => {
  const closedHolder = (kind: 'clean' | 'half-open', bound: number, grantAt: number) => [
    acquire('h', 0, 1, 'k'),
    granted('h', 1, 1, 'k', 1),
    acquire('w', 2, 1, 'k'),
    queued('w', 2.5, 1, 'k'),
    closed('h', 10, kind, bound),
    granted('w', grantAt, 1, 'k', 2),
    release('w', grantAt + 10, 2, 'k'),
    released('w', grantAt + 11, 2, 'k'),
  ];

  it('a waiter granted within the bound of a clean close passes', () => {
    expect(rules(closedHolder('clean', 100, 60))).toEqual([]);
  });

  it('a waiter granted after the bound of a clean close fails', () => {
    expect(rules(closedHolder('clean', 100, 150))).toEqual([Rule.ReleaseBound]);
  });

  it('a waiter granted after the bound of a half-open connection fails', () => {
    expect(rules(closedHolder('half-open', 30, 45))).toEqual([Rule.ReleaseBound]);
  });

  it('a waiter that gave up before the bound needs no grant', () => {
    const history = [
      acquire('h', 0, 1, 'k'),
      granted('h', 1, 1, 'k', 1),
      acquire('w', 2, 1, 'k', { acquireTimeout: 40 }),
      queued('w', 2.5, 1, 'k'),
      closed('h', 10, 'clean', 100),
      notGranted('w', 42.5, 1, 'k'),
    ];
    expect(rules(history)).toEqual([]);
  });

  it('a shared holder still holding keeps the key until one bound after its release', () => {
    const history = [
      acquire('h', 0, 1, 'k', { mode: 'shared' }),
      granted('h', 1, 1, 'k', 1),
      ...hold('s', 'k', 2, 1.5, 299, { mode: 'shared' }),
      acquire('w', 2, 1, 'k'),
      queued('w', 3, 1, 'k'),
      closed('h', 10, 'clean', 100),
      granted('w', 300.5, 1, 'k', 3),
    ];
    expect(rules(history)).toEqual([]);
  });

  it('an acquire without an answer counts as a possible holder', () => {
    const history = [
      acquire('h', 0, 1, 'k'),
      acquire('w', 2, 1, 'k'),
      queued('w', 2.5, 1, 'k'),
      closed('h', 10, 'clean', 100),
      granted('w', 200, 1, 'k', 2),
    ];
    expect(rules(history)).toEqual([Rule.ReleaseBound]);
  });
});

describe('rule 6: a holder hears lost before the next holder is granted', () => {
  const stolen = (lostAt: number, extra: HistoryEvent[] = []) => [
    acquire('a', 0, 1, 'k'),
    granted('a', 1, 1, 'k', 1),
    acquire('b', 5, 1, 'k', { steal: true }),
    granted('b', 6, 1, 'k', 2),
    ...extra,
    lost('a', lostAt, 'k', 1, 'stolen'),
    release('b', 20, 2, 'k'),
    released('b', 21, 2, 'k'),
  ];

  it('a lost push arriving before the thief hears its grant passes', () => {
    expect(rules(stolen(5.9))).toEqual([]);
  });

  it('a lost push arriving after the thief heard its grant fails', () => {
    expect(rules(stolen(9))).toEqual([Rule.LostBeforeGrant]);
  });

  it('arrival order within the slack passes', () => {
    expect(rules(stolen(9), { lostOrderSlackMs: 5 })).toEqual([]);
  });

  it('an answer received after the thief was granted, before lost, fails whatever the slack', () => {
    const history = stolen(9, [ping('a', 7, 2), pong('a', 8, 2)]);
    // The answer also proves the old hold lasted past the grant, hence the overlap.
    expect(rules(history, { lostOrderSlackMs: Infinity })).toEqual([Rule.ExclusiveOverlap, Rule.LostBeforeGrant]);
  });

  describe("with causalAnswers 'same-key' (the Redis store across nodes)", () => {
    const sameKey: CheckOptions = { causalAnswers: 'same-key', lostOrderSlackMs: 5 };

    it('an answer about another key before lost is no evidence: the arrival order within the slack passes', () => {
      const history = stolen(9, [acquire('a', 7, 2, 'other'), granted('a', 8, 2, 'other', 7)]);
      expect(rules(history, sameKey)).toEqual([]);
      // Taken as evidence by default.
      expect(rules(history, { lostOrderSlackMs: 5 })).toEqual([Rule.ExclusiveOverlap, Rule.LostBeforeGrant]);
    });

    it('an answer about the same key or a pong before lost still fails', () => {
      const sameKeyAnswer = stolen(9, [acquire('a', 7, 2, 'k', { acquireTimeout: 0 }), notGranted('a', 8, 2, 'k')]);
      expect(rules(sameKeyAnswer, sameKey)).toContain(Rule.LostBeforeGrant);
      const pongBefore = stolen(9, [ping('a', 7, 2), pong('a', 8, 2)]);
      expect(rules(pongBefore, sameKey)).toEqual([Rule.ExclusiveOverlap, Rule.LostBeforeGrant]);
    });
  });

  it('a holder never told while the next holder was granted fails', () => {
    const history = [
      acquire('a', 0, 1, 'k'),
      granted('a', 1, 1, 'k', 1),
      acquire('b', 5, 1, 'k', { steal: true }),
      granted('b', 6, 1, 'k', 2),
      ping('a', 7, 2),
      pong('a', 8, 2),
      closed('a', 20, 'clean'),
    ];
    expect(rules(history)).toContain(Rule.LostBeforeGrant);
  });

  it('a release answered not_holder without a lost push first fails', () => {
    const history = [acquire('a', 0, 1, 'k'), granted('a', 1, 1, 'k', 1), release('a', 20, 2, 'k'), notHolder('a', 21, 2, 'k')];
    expect(rules(history)).toEqual([Rule.LostBeforeGrant]);
  });

  it('a release answered not_holder after a lost push passes', () => {
    const history = [
      acquire('a', 0, 1, 'k', { holdTimeout: 10 }),
      granted('a', 1, 1, 'k', 1),
      release('a', 20, 2, 'k'),
      lost('a', 20.5, 'k', 1, 'expired'),
      notHolder('a', 21, 2, 'k'),
    ];
    expect(rules(history)).toEqual([]);
  });
});

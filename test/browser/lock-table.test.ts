import type { LockEvent, LockStatus } from '@lockwire/client';
import { describe, expect, it } from 'vitest';
import { LockTable } from '../../server/src/ui/lock-table.js';

const held = (key: string, session = 's1', token = 1): LockStatus => ({
  key,
  locked: true,
  mode: 'exclusive',
  holders: [{ session, mode: 'exclusive', token, since: 0, expiresAt: null, meta: null }],
  queue: [],
});

const event = (fields: Partial<LockEvent> & Pick<LockEvent, 'key' | 'event'>): LockEvent => ({
  session: 's1',
  mode: 'exclusive',
  meta: null,
  holders: 0,
  waiters: 0,
  at: 1,
  ...fields,
});

describe("the dashboard's lock table", () => {
  it('finds the keys of a prefix as one range in code-unit order', () => {
    const table = new LockTable();
    table.reset(['room:2', 'doc:1', 'room:10', 'roomy', '', '\ud800', 'room:'].map((key) => held(key)));
    const [start, end] = table.range('room:');
    const keys = Array.from({ length: end - start }, (_, i) => table.at(start + i)?.key);
    expect(keys).toEqual(['room:', 'room:10', 'room:2']);
    expect(table.range('')).toEqual([0, 7]);
    expect(table.at(0)?.key).toBe('');
    // A lone surrogate (0xD800) sorts after every ASCII key.
    expect(table.range('zzz')).toEqual([6, 6]);
    expect(table.at(6)?.key).toBe('\ud800');
  });

  it('follows a handoff from the queue and drops a key once it is free', () => {
    const table = new LockTable();
    table.reset([held('k', 'ana', 5)]);
    expect(table.apply(event({ key: 'k', event: 'queued', session: 'bo', holders: 1, waiters: 1 }))).toEqual({
      resync: false,
      expiryUnknown: false,
    });
    expect(table.waiters).toBe(1);
    table.apply(event({ key: 'k', event: 'released', session: 'ana', token: 5, holders: 0, waiters: 1 }));
    const granted = table.apply(event({ key: 'k', event: 'acquired', session: 'bo', token: 6, holders: 1, waiters: 0 }));
    expect(granted).toEqual({ resync: false, expiryUnknown: true });
    expect(table.get('k')?.holders.map((holder) => [holder.session, holder.token, holder.expiresAt])).toEqual([
      ['bo', 6, undefined],
    ]);
    expect([table.heldKeys, table.holders, table.waiters]).toEqual([1, 1, 0]);
    table.apply(event({ key: 'k', event: 'expired', session: 'bo', token: 6, holders: 0, waiters: 0 }));
    expect(table.get('k')).toBeUndefined();
    expect([table.size, table.heldKeys, table.holders, table.waiters]).toEqual([0, 0, 0, 0]);
  });

  it('asks for a resync when an event count disagrees with its copy, and a status replaces the row', () => {
    const table = new LockTable();
    table.reset([]);
    // A shared holder it never saw (e.g. beyond a truncated snapshot) shows in the counts.
    const applied = table.apply(event({ key: 'k', event: 'acquired', session: 'b', mode: 'shared', token: 2, holders: 2 }));
    expect(applied.resync).toBe(true);
    table.replace({ ...held('k', 'a', 1), mode: 'shared', holders: [
      { session: 'a', mode: 'shared', token: 1, since: 0, expiresAt: 50, meta: null },
      { session: 'b', mode: 'shared', token: 2, since: 1, expiresAt: null, meta: null },
    ] });
    expect(table.holders).toBe(2);
    expect(table.get('k')?.holders.map((holder) => holder.expiresAt)).toEqual([50, null]);
    table.replace({ key: 'k', locked: false, mode: null, holders: [], queue: [] });
    expect([table.size, table.holders]).toEqual([0, 0]);
  });
});

import { afterEach, beforeEach, expect, it } from 'vitest';
import type { LockClient } from '@lockwire/client';
import { startHarness, type Harness } from './fixtures.js';

// `request(DOMString name, LockOptions options, LockGrantedCallback callback)` converts its arguments as WebIDL
// does, as browsers' `navigator.locks.request` does.

let h: Harness;
let client: LockClient;
beforeEach(async () => {
  h = await startHarness();
  client = await h.connect();
});
afterEach(() => h.close());

const request = () => client.locks.request.bind(client.locks) as unknown as (...args: unknown[]) => Promise<unknown>;

it('takes a function as options for an empty dictionary', async () => {
  await expect(request()('fn-options', () => undefined, (lock: { mode: string } | null) => lock?.mode)).resolves.toBe('exclusive');
});

it('converts the name to a string, refusing a Symbol with a TypeError', async () => {
  await expect(request()(Symbol('s'), () => 'called')).rejects.toBeInstanceOf(TypeError);
  const name = { toString: () => 'named-by-object' };
  await expect(request()(name, (lock: { name: string } | null) => lock?.name)).resolves.toBe('named-by-object');
});

it('converts mode to a string before checking it', async () => {
  const mode = { toString: () => 'shared' };
  await expect(request()('mode-object', { mode }, (lock: { mode: string } | null) => lock?.mode)).resolves.toBe('shared');
  await expect(request()('mode-symbol', { mode: Symbol('shared') }, () => 'called')).rejects.toBeInstanceOf(TypeError);
  await expect(request()('mode-other', { mode: { toString: () => 'other' } }, () => 'called')).rejects.toBeInstanceOf(TypeError);
});

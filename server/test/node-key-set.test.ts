import { describe, expect, it } from 'vitest';
import { encodeKey, keyNames } from '../src/redis/key-codec.js';
import { NodeKeySet } from '../src/redis/node-key-set.js';
import type { RedisLink } from '../src/redis/redis-link.js';

// The order of a key's steps around its key-set SADD, on a link whose
// SADD the test answers (a cluster's: the steps wait for the reply).

describe("a node's key set", () => {
  it("lets a step that waited for the key's SADD go before a step of the key begun as the reply arrives", async () => {
    let answer: (reply: unknown) => void = () => {};
    const link = {
      mode: 'cluster',
      command: () => new Promise((resolve) => (answer = resolve)),
    } as unknown as RedisLink;
    const keySet = new NodeKeySet(keyNames('order'));
    const encoded = encodeKey('room');
    const order: string[] = [];
    const first = (async () => {
      const registering = keySet.register(link, encoded, 'n1');
      if (registering) await registering;
      order.push('first');
    })();
    // The SADD goes out at the end of the turn.
    await Promise.resolve();
    answer(1);
    // A second step of the key begins in the same turn as the reply, right behind its handling.
    queueMicrotask(() => {
      const registering = keySet.register(link, encoded, 'n1');
      if (registering) void registering.then(() => order.push('second'));
      else order.push('second');
    });
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual(['first', 'second']);
    // Once recorded, a step of the key waits for nothing.
    expect(keySet.register(link, encoded, 'n1')).toBeNull();
  });
});

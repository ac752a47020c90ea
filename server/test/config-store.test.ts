import { describe, expect, it } from 'vitest';
import { storeProblem } from '../src/config-store.js';
import { StoreStartError } from '../src/store.js';

describe('storeProblem', () => {
  const source = (key: string) => `--${key}`;

  it('redacts each URL of the setting where the store quotes it, and keeps the message on one line', () => {
    const config = { store: 'redis-cluster' as const, redisUrl: 'redis://a:pw1@10.0.0.1:7000, redis://a:pw1@10.0.0.2:7000' };
    const error = new StoreStartError(new Error('could not connect to Redis: redis://a:pw1@10.0.0.2:7000 refused\n  (twice)'));
    expect(storeProblem(error, config, source)).toBe(
      '--redisUrl "redis://a:REDACTED@10.0.0.1:7000,redis://a:REDACTED@10.0.0.2:7000": could not connect to Redis: redis://a:REDACTED@10.0.0.2:7000 refused (twice)',
    );
  });

  it('leaves alone failures that are not a store start, and the memory store', () => {
    const config = { store: 'redis' as const, redisUrl: 'redis://127.0.0.1:6379' };
    expect(storeProblem(new Error('could not connect to Redis within 4000 ms'), config, source)).toBeUndefined();
    expect(storeProblem(new StoreStartError(new Error('x')), { store: 'memory', redisUrl: '' }, source)).toBeUndefined();
  });
});

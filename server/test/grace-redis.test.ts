import { createRedisStore } from '../src/redis/redis-store.js';
import { describeGrace } from './grace-scenarios.js';
import { useRedisStores } from './redis-harness.js';

const stores = useRedisStores('grace');

describeGrace('redis store', async (clock) => createRedisStore({ url: stores.redis.url, namespace: stores.namespace(), clock }));

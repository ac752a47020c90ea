import { describeSessionsAlike } from './helpers/differential.js';
import { useRedisTarget } from './helpers/redis-target.js';

// The seeded programs of three sessions on two nodes contending for three
// keys (test/helpers/differential.ts), on two nodes of one redis-server: the
// Redis store must answer every request, tell every loss and show every
// key's events exactly as the memory store does, and leave the same table.

describeSessionsAlike(useRedisTarget(2), 150);

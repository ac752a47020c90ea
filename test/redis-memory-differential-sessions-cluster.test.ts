import { describeSessionsAlike } from './helpers/differential.js';
import { useRedisTarget } from './helpers/redis-target.js';

// The seeded programs of three sessions on two nodes contending for three
// keys (test/helpers/differential.ts), on two nodes of a Redis Cluster of
// three primaries, where a program's keys lie on two or three shards: the
// Redis store must answer every request, tell every loss and show every
// key's events exactly as the memory store does, and leave the same table.
// Events of different keys may reach a watcher in another order than the
// steps ran (docs/scaling.md, Guarantees and their limits); each key's
// events are compared on their own. A program takes about seven times as
// long here as on one redis-server: the `ping` barriers that settle each
// step wait for markers that come back through every primary over the
// cluster bus. So fewer programs run here.

describeSessionsAlike(useRedisTarget(2, { cluster: true }), 12);

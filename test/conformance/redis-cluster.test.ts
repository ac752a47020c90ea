import { useRedisTarget } from '../helpers/redis-target.js';
import { describeConformance } from './suite.js';

// The protocol conformance suite against two lockwire nodes on a Redis
// Cluster of three primaries: keys spread over the shards by hash slot.
describeConformance(useRedisTarget(2, { cluster: true }));

import { useRedisTarget } from '../helpers/redis-target.js';
import { describeConformance } from './suite.js';

// The protocol conformance suite against three lockwire nodes sharing one
// redis-server: contending clients are connected to different nodes.
describeConformance(useRedisTarget(3));

import { memoryTarget } from '../helpers/memory-target.js';
import { describeConformance } from './suite.js';

// The protocol conformance suite against one server with the memory store.
describeConformance(memoryTarget);

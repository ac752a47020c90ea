import { memoryTarget } from '../helpers/memory-target.js';
import { describeAcquire } from './acquire.js';
import { describeDisconnect } from './disconnect.js';
import { describeErrors } from './errors.js';
import { describeKeys } from './keys.js';
import { describeObserve } from './observe.js';
import { describeQueue } from './queue.js';
import { describeSteal } from './steal.js';
import { describeTimeouts } from './timeouts.js';
import { describeWaitCancel } from './wait-cancel.js';

// The protocol conformance suite against one server with the memory store.
describeAcquire(memoryTarget);
describeQueue(memoryTarget);
describeSteal(memoryTarget);
describeTimeouts(memoryTarget);
describeWaitCancel(memoryTarget);
describeObserve(memoryTarget);
describeErrors(memoryTarget);
describeKeys(memoryTarget);
describeDisconnect(memoryTarget);

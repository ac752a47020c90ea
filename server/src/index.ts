/**
 * @lockwire/server: the lockwire WebSocket lock server.
 *
 * `createLockServer()` starts one; `createMemoryStore()` is the default lock
 * table, and any `LockStore` can be passed in its place. `createLockMetrics()`
 * makes the metrics a server serves on `/metrics`, to share with a Redis
 * store's `observeScript` or to register further metrics on.
 */
export { createLockServer, type LockServer, type LockServerOptions, type ServerLimits } from './server.js';
export { createMemoryStore, type MemoryStore, type MemoryStoreOptions } from './memory-store.js';
export { createRedisStore, DEFAULT_NODE_TTL, type RedisStoreOptions } from './redis/redis-store.js';
export type { RedisTlsOptions } from './redis/redis-tls.js';
export { createLockMetrics, type LockMetrics, type LockMetricsOptions } from './metrics.js';
export { LockError, toWireError } from './errors.js';
export { systemClock, createManualClock, type Clock, type ManualClock, type TimerHandle } from './clock.js';
export { silentLogger, type Logger } from './logger.js';
export { StoreStartError } from './store.js';
export type {
  AcquireInput,
  AcquireOutcome,
  Grant,
  LockEvent,
  LockStore,
  LostLock,
  Meta,
  SessionEnd,
  SessionId,
  StoreLimits,
  StoreListener,
  StoreReadiness,
  Ticket,
  WaitInput,
  WatchHandle,
} from './store.js';

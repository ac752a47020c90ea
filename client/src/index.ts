/**
 * `@lockwire/client` for browsers and any runtime with a global `WebSocket`.
 * This entry imports nothing from Node; under Node the package resolves to
 * `node.js`, which connects with `ws`.
 */
export { LockClient } from './lock-client.js';
export type { AcquireOptions, ClientEvents, ClientState, ConnectOptions, WatchOptions } from './options.js';
export type { ReconnectOptions } from './reconnect.js';
export type { KeepaliveOptions } from './keepalive.js';
export { Lease } from './lease.js';
export type { LeaseState } from './lease.js';
export { Watch } from './watch.js';
export type { LockEvent } from './watch.js';
export type { AcquireLockOptions, WaitForLockOptions } from './prefect.js';
export { Lock, LockManager } from './web-locks.js';
export type { LockGrantedCallback, LockInfo, LockManagerSnapshot, LockOptions, WebLocksHost } from './web-locks.js';
export { ClientErrorCode, LeaseLostReason, LockError } from './errors.js';
export type { CloseInfo, LockErrorCode } from './errors.js';
export { createWebSocketTransport, webSocketTransport } from './transport.js';
export type { Transport, TransportFactory, TransportHandlers, WebSocketTransportOptions } from './transport.js';
export { ErrorCode, LockMode, LostReason } from '@lockwire/protocol';
export type { Limits, ListResult, LockStatus, HolderInfo, WaiterInfo } from '@lockwire/protocol';

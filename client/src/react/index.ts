/**
 * `@lockwire/client/react`: React hooks over a `LockClient`, built on
 * `useSyncExternalStore`. `react` (18 or 19) is an optional peer
 * dependency: only this entry imports it.
 */
export { LockClientProvider, useLock, useLockClient, useLockState } from './hooks.js';
export type { LockClientProviderProps, UseLockOptions, UseLockResult } from './hooks.js';
export { LockController } from './lock-controller.js';
export type { LockHookState, LockRequest } from './lock-controller.js';
export { LockStateStore } from './lock-state-store.js';
export type { HolderView, LockStateView } from './lock-state-store.js';

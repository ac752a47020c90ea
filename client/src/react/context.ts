import { createContext, createElement, useContext, type ReactNode } from 'react';
import type { LockClient } from '../lock-client.js';

const LockClientContext = createContext<LockClient | null>(null);

/** Props of {@link LockClientProvider}. */
export interface LockClientProviderProps {
  /** A connected client; every hook below uses it unless given its own `client`. */
  client: LockClient;
  children?: ReactNode;
}

/**
 * Makes `client` the lockwire client of the hooks below it. The provider
 * neither connects nor closes the client: its owner does both. Nest
 * providers to give parts of a page their own connection (each connection is
 * its own lock holder).
 */
export function LockClientProvider(props: LockClientProviderProps): ReactNode {
  return createElement(LockClientContext.Provider, { value: props.client }, props.children);
}

/**
 * The client a hook uses: `given` when passed, else the nearest
 * {@link LockClientProvider}'s.
 *
 * @throws Error when there is neither.
 */
export function useLockClient(given?: LockClient): LockClient {
  const fromContext = useContext(LockClientContext);
  const client = given ?? fromContext;
  if (!client) throw new Error('no lockwire client: pass { client } or render inside <LockClientProvider client={...}>');
  return client;
}

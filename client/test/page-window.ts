import { vi } from 'vitest';

/**
 * Makes this process look like a page to the browser transport: `socket` as
 * the global `WebSocket` (ws, or a fake, standing in for the browser's) and
 * a window that fires `pagehide`. Returns that window; dispatch
 * `new Event('pagehide')` on it to make the page leave. Undone by
 * `vi.unstubAllGlobals()`.
 */
export function stubPageWindow(socket: unknown): EventTarget {
  const page = new EventTarget();
  vi.stubGlobal('WebSocket', socket);
  vi.stubGlobal('onpagehide', null);
  vi.stubGlobal('addEventListener', page.addEventListener.bind(page));
  vi.stubGlobal('removeEventListener', page.removeEventListener.bind(page));
  return page;
}

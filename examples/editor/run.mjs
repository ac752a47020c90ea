// Exclusive editing in the browser: starts a lockwire server and prints the
// address of its editor demo. Open it in two tabs (or two browsers): only the
// tab holding doc:<name> may type; the other shows who is editing and takes
// over the moment that tab closes. Ctrl-C stops the server.
//
//   npm run build && node examples/editor/run.mjs [--port 7311]
import { parseArgs } from 'node:util';
import { createLockServer } from '@lockwire/server';

const { values } = parseArgs({ options: { port: { type: 'string', default: process.env.PORT ?? '0' } } });
const server = await createLockServer({ port: Number(values.port) });

console.log(`lockwire listening on ${server.url}`);
console.log(`editor demo: ${server.httpUrl}/demo/editor?doc=welcome`);
console.log(`  as a named user: ${server.httpUrl}/demo/editor?doc=welcome&user=Ana`);
console.log(`live dashboard: ${server.httpUrl}/`);

const stop = async () => {
  await server.close();
  console.log('stopped');
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);

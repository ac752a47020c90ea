#!/usr/bin/env node
// Entry point of the `lockwire` command; the CLI itself is compiled to dist/.
import { main } from '../dist/cli.js';

main(process.argv.slice(2)).then(
  (code) => {
    // Exit now rather than when the event loop empties: after a shutdown cut
    // short by --shutdown-timeout, store connections may still be winding down.
    process.exit(typeof code === 'number' ? code : 0);
  },
  (error) => {
    process.stderr.write(`lockwire: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exitCode = 1;
  },
);

#!/usr/bin/env node
// Entry point of the `lockwire` command; the CLI itself is compiled to dist/.
import { main } from '../dist/cli.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`lockwire: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exitCode = 1;
  },
);

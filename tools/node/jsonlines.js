'use strict';
// A line protocol shared by the Node helpers: one JSON request per stdin line, one JSON answer per stdout line
// (an exception becomes {"error": message}). A handler may return a promise (bench/node/forge.js: jose verifies
// asynchronously); requests are answered one at a time, in the order they came.
const readline = require('readline');

function serve(handle) {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  let pending = Promise.resolve();
  lines.on('line', (line) => {
    if (!line.trim()) {
      return;
    }
    pending = pending.then(async () => {
      let output;
      try {
        output = await handle(JSON.parse(line));
      } catch (err) {
        output = { error: String(err && err.message ? err.message : err) };
      }
      process.stdout.write(JSON.stringify(output) + '\n');
    });
  });
}

module.exports = { serve };

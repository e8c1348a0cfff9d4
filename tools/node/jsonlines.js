'use strict';
// A line protocol shared by the Node helpers: one JSON request per stdin line, one JSON answer per stdout line
// (an exception becomes {"error": message}).
const readline = require('readline');

function serve(handle) {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (!line.trim()) {
      return;
    }
    let output;
    try {
      output = handle(JSON.parse(line));
    } catch (err) {
      output = { error: String(err && err.message ? err.message : err) };
    }
    process.stdout.write(JSON.stringify(output) + '\n');
  });
}

module.exports = { serve };

'use strict';
// Shared bits of the Dubbo test peers (sofa-rpc-node + dubbo-remoting): argument parsing and a quiet logger.

const INTERFACE = 'org.apache.dubbo.samples.basic.api.DemoService';
const VERSION = '1.0.0';

// Parses `--key value` / `--flag` pairs into an object (keys keep their dashes).
function parseArgs(argv, defaults) {
  const out = Object.assign({}, defaults);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new Error('unexpected argument: ' + arg);
    const key = arg.slice(2);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) {
      out[key] = true;
    } else {
      out[key] = next;
      i++;
    }
  }
  return out;
}

// sofa-rpc-node wants a logger; keep stdout for our protocol lines, warnings/errors to stderr.
function quietLogger(verbose) {
  const noop = () => {};
  const err = (...a) => console.error(...a);
  return {
    debug: noop,
    info: verbose ? err : noop,
    warn: verbose ? err : noop,
    error: verbose ? err : noop,
  };
}

module.exports = { INTERFACE, VERSION, parseArgs, quietLogger };

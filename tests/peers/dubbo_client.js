'use strict';
// Dubbo consumer for the end-to-end tests, a real third-party peer (sofa-rpc-node + dubbo-remoting).
//
//   node dubbo_client.js --target 127.0.0.1:P --method sayHello --args '["x"]'
//        [--attachments '{"k":"v"}'] [--count N] [--concurrency C] [--timeout-ms T] [--version 1.0.0]
//
// One direct connection to the target (no registry). Prints ONE JSON line per call:
//   {"i":0,"ok":true,"result":...,"ms":3}   or   {"i":0,"ok":false,"error":"...","ms":3}
// and a summary line last: {"summary":true,"ok":N,"failed":M,"ms":total}.
// With --response-props each call line also has "responseProps": the response's attachments (or null).
// In string arguments and in the method name "{i}" is replaced by the call's index, so each caller can
// recognise its answer (and `--method 'hello{i}'` calls hello0, hello1, ...).
// Exit code 0 whatever the calls returned (2 on bad usage).

const { RpcClient } = require('sofa-rpc-node').client;
const { INTERFACE, VERSION, parseArgs, quietLogger } = require('./dubbo_common');

const opts = parseArgs(process.argv.slice(2), {
  method: 'sayHello',
  args: '[]',
  attachments: '{}',
  count: '1',
  concurrency: '1',
  'timeout-ms': '3000',
  version: VERSION,
  interface: INTERFACE,
});
if (!opts.target) {
  console.error('usage: node dubbo_client.js --target HOST:PORT --method M --args JSON [--attachments JSON] [--count N] [--concurrency C] [--timeout-ms T]');
  process.exit(2);
}

const args = JSON.parse(opts.args);
const attachments = JSON.parse(opts.attachments);
const count = Number(opts.count);
const concurrency = Math.max(1, Number(opts.concurrency));
const timeoutMs = Number(opts['timeout-ms']);

function substitute(value, i) {
  if (typeof value === 'string') return value.split('{i}').join(String(i));
  if (Array.isArray(value)) return value.map(v => substitute(v, i));
  return value;
}

function errorText(err) {
  if (!err) return 'unknown error';
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  if (typeof err === 'object') {
    try { return JSON.stringify(err); } catch (_) { /* fall through */ }
  }
  return String(err);
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function main() {
  const started = Date.now();
  const client = new RpcClient({ logger: quietLogger(opts.verbose), protocol: require('dubbo-remoting') });
  const consumer = client.createConsumer({
    interfaceName: opts.interface,
    version: opts.version,
    group: '',
    serverHost: opts.target,
    responseTimeout: timeoutMs,
  });
  const withProps = opts['response-props'] === true;
  if (withProps) {
    // The response attachments are decoded into ctx.res.responseProps; hand them to the caller's holder.
    consumer.use(async (ctx, next) => {
      await next();
      if (ctx.req.ctx) ctx.req.ctx.responseProps = (ctx.res && ctx.res.responseProps) || null;
    });
  }
  await consumer.ready();

  let next = 0;
  let ok = 0;
  let failed = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      const t0 = Date.now();
      const holder = {};
      const props = line => (withProps ? Object.assign(line, { responseProps: holder.responseProps || null }) : line);
      try {
        const result = await consumer.invoke(substitute(opts.method, i), substitute(args, i), {
          requestProps: Object.assign({}, attachments),
          responseTimeout: timeoutMs,
          ctx: holder,
        });
        ok++;
        emit(props({ i, ok: true, result: result === undefined ? null : result, ms: Date.now() - t0 }));
      } catch (err) {
        failed++;
        emit(props({ i, ok: false, error: errorText(err), ms: Date.now() - t0 }));
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  emit({ summary: true, ok, failed, ms: Date.now() - started });
  // Do not wait for sockets to close gracefully: the caller only needs the lines.
  process.exit(0);
}

main().catch(err => {
  emit({ summary: true, ok: 0, failed: count, fatal: errorText(err), ms: 0 });
  process.exit(1);
});

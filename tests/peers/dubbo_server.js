'use strict';
// Dubbo provider for the end-to-end tests, a real third-party peer (sofa-rpc-node + dubbo-remoting).
//
//   node dubbo_server.js --port P --name v1 [--delay-ms N] [--fail-method m] [--verbose]
//
// Serves org.apache.dubbo.samples.basic.api.DemoService:1.0.0 on 127.0.0.1:P:
//   sayHello(name)      -> "hello <name> from <server name>"
//   echoAttachments()   -> JSON text {"server": name, "attachments": {...request attachments...}}
//   fail()              -> an exception result (status OK, RESPONSE_WITH_EXCEPTION), as Java Dubbo sends
//   crash()             -> throws: a SERVER_ERROR (status 80) response with the message
//   hello0(name) .. hello15(name) -> like sayHello (many method names, for hashing on the method)
// --delay-ms delays every reply; --fail-method makes that method throw. Prints READY when listening,
// CONNECTION n per accepted connection and CALL <method> <json args> per invocation.

const net = require('net');
const { RpcServer } = require('sofa-rpc-node').server;
const { INTERFACE, VERSION, parseArgs, quietLogger } = require('./dubbo_common');

const opts = parseArgs(process.argv.slice(2), { name: 'server', 'delay-ms': '0' });
if (!opts.port) {
  console.error('usage: node dubbo_server.js --port P --name v1 [--delay-ms N] [--fail-method m]');
  process.exit(2);
}
const port = Number(opts.port);
const name = String(opts.name);
const delayMs = Number(opts['delay-ms']);
const failMethod = opts['fail-method'] || null;

// Bind loopback only (the stock server listens on every interface).
class LoopbackServer extends RpcServer {
  _startServer(listenPort) {
    const server = net.createServer();
    server.once('error', err => { this.emit('error', err); });
    server.on('connection', socket => { this._handleSocket(socket); });
    server.listen(listenPort, '127.0.0.1');
    return server;
  }

  // Expose the decoded request to the service methods as `this.req`.
  createContext(req) {
    return { req };
  }
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

async function before(method, args) {
  console.log(`CALL ${method} ${JSON.stringify(args)}`);
  if (delayMs > 0) await sleep(delayMs);
  if (failMethod && failMethod === method) {
    throw new Error(`${method} failed on purpose in ${name}`);
  }
}

const server = new LoopbackServer({
  logger: quietLogger(opts.verbose),
  port,
  protocol: require('dubbo-remoting'),
  version: VERSION,
  group: '',
  killTimeout: 1000,
});

const extraHellos = {};
for (let i = 0; i < 16; i++) {
  const method = `hello${i}`;
  extraHellos[method] = async function(who) {
    await before(method, [ who ]);
    return `hello ${who} from ${name}`;
  };
}

server.addService({ interfaceName: INTERFACE, version: VERSION }, {
  ...extraHellos,
  async sayHello(who) {
    await before('sayHello', [ who ]);
    return `hello ${who} from ${name}`;
  },
  async echoAttachments() {
    await before('echoAttachments', []);
    const attachments = (this && this.req && this.req.data && this.req.data.requestProps) || {};
    return JSON.stringify({ server: name, attachments });
  },
  async fail() {
    await before('fail', []);
    const err = new Error(`fail() raised in ${name}`);
    err.name = 'DemoException';
    return err; // returned, not thrown: encoded as an exception result with status OK
  },
  async crash() {
    await before('crash', []);
    throw new Error(`crash() in ${name}`);
  },
});

server.on('error', err => {
  console.error(`[${name}] server error: ${err && err.message}`);
});

let connections = 0;
server.on('connection', () => {
  connections += 1;
  console.log(`CONNECTION ${connections}`);
});

server.start().then(() => {
  console.log(`READY ${name} 127.0.0.1:${port}`);
}, err => {
  console.error(`[${name}] failed to start: ${err && err.message}`);
  process.exit(1);
});

for (const sig of [ 'SIGTERM', 'SIGINT' ]) {
  process.on(sig, () => process.exit(0));
}

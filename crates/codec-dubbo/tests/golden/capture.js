// Captures real dubbo2 frames between sofa-rpc-node's RpcClient and RpcServer (protocol
// dubbo-remoting, hessian2) through a recording TCP tap on loopback, and writes each frame as
// hex to this folder. Run: node crates/codec-dubbo/tests/golden/capture.js
// (needs `npm install --prefix tests/peers`).
'use strict';

const path = require('path');
const fs = require('fs');
const net = require('net');

const peers = path.resolve(__dirname, '../../../../tests/peers/node_modules');
const { RpcServer } = require(path.join(peers, 'sofa-rpc-node')).server;
const { RpcClient } = require(path.join(peers, 'sofa-rpc-node')).client;
const dubbo = require(path.join(peers, 'dubbo-remoting'));
const dubboProtocol = require(path.join(peers, 'dubbo-remoting/lib/protocol'));

const logger = { info() {}, warn() {}, error() {}, debug() {} };
const out = __dirname;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Splits a byte stream into dubbo frames.
function frames(buf) {
  const list = [];
  let off = 0;
  while (buf.length - off >= 16) {
    const len = 16 + buf.readInt32BE(off + 12);
    if (buf.length - off < len) break;
    list.push(buf.slice(off, off + len));
    off += len;
  }
  return list;
}

// A TCP tap: forwards both ways and records everything per direction.
function tap(listenPort, targetPort, log) {
  const server = net.createServer(down => {
    const up = net.connect(targetPort, '127.0.0.1');
    const rec = { c2s: [], s2c: [] };
    log.push(rec);
    down.on('data', d => { rec.c2s.push(d); up.write(d); });
    up.on('data', d => { rec.s2c.push(d); down.write(d); });
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    down.on('error', () => {});
    up.on('error', () => {});
  });
  return new Promise(resolve => server.listen(listenPort, '127.0.0.1', () => resolve(server)));
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

async function main() {
  const [serverPort, tapPort] = [await freePort(), await freePort()];
  const server = new RpcServer({ logger, port: serverPort, protocol: dubbo });
  server.addService({ interfaceName: 'org.apache.dubbo.demo.DemoService', version: '1.0.0' }, {
    async sayHello(name) { return 'hello ' + name; },
    async echo(...args) { return args; },
    async fail() { throw new Error('boom from service'); },
    async exception() {
      return { $class: 'java.lang.IllegalStateException', $: { detailMessage: 'bad state' } };
    },
    async nothing() { return null; },
  });
  await server.start();
  const log = [];
  const tapServer = await tap(tapPort, serverPort, log);

  const client = new RpcClient({ logger, protocol: dubbo });
  const consumer = client.createConsumer({
    interfaceName: 'org.apache.dubbo.demo.DemoService',
    version: '1.0.0',
    serverHost: `127.0.0.1:${tapPort}`,
  });
  await consumer.ready();
  const opts = { responseTimeout: 3000 };
  const names = [];
  const call = async (name, method, args) => {
    names.push(name);
    try {
      await consumer.invoke(method, args, opts);
    } catch (e) { /* recorded on the wire */ }
    await sleep(50);
  };
  await call('sayhello', 'sayHello', [ 'world' ]);
  await call('echo_types', 'echo', [
    42, 'x'.repeat(40), 'ü€😀 mixed', true, 3.25, new Date(1700000000000), Buffer.from([ 1, 2, 3 ]),
    [ 1, 'two', null ], { k: 'v', n: 7 },
    { $class: 'long', $: 1234567890123 },
    { $class: '[int', $: [ 1, 2, 3 ] },
    { $class: 'org.example.Point', $: { x: { $class: 'int', $: 1 }, y: { $class: 'int', $: 2 } } },
    { $class: 'java.util.List', $: [ { $class: 'org.example.Point', $: { x: { $class: 'int', $: 3 }, y: { $class: 'int', $: 4 } } } ] },
  ]);
  await call('fail', 'fail', []);
  await call('exception', 'exception', []);
  await call('nothing', 'nothing', []);
  await call('nomethod', 'noSuchMethod', [ 1 ]);

  // A heartbeat written by dubbo-remoting's own encoder, answered by the real server.
  const hbSock = net.connect(tapPort, '127.0.0.1');
  await new Promise(r => hbSock.once('connect', r));
  hbSock.write(dubboProtocol.heartbeatEncode(77, {}, { codecType: 'hessian2' }));
  await sleep(200);
  hbSock.destroy();

  const write = (name, buf) => fs.writeFileSync(path.join(out, name + '.hex'), buf.toString('hex') + '\n');
  // Classify every frame of every connection by request id and flags.
  const reqs = new Map();
  const resps = new Map();
  let hbReq = null;
  let hbResp = null;
  for (const rec of log) {
    for (const f of frames(Buffer.concat(rec.c2s))) {
      if (f[2] & 0x20) hbReq = f; else reqs.set(f.readInt32BE(8), f);
    }
    for (const f of frames(Buffer.concat(rec.s2c))) {
      if (f[2] & 0x20) hbResp = f; else resps.set(f.readInt32BE(8), f);
    }
  }
  // sofa-rpc-node numbers requests 1, 2, ... in call order on this client.
  const ids = [ ...reqs.keys() ].sort((a, b) => a - b);
  names.forEach((name, i) => {
    const id = ids[i];
    if (reqs.has(id)) write('request_' + name, reqs.get(id));
    if (resps.has(id)) write('response_' + name, resps.get(id));
  });
  if (hbReq) write('request_heartbeat', hbReq);
  if (hbResp) write('response_heartbeat', hbResp);
  console.log(`captured ${reqs.size} requests, ${resps.size} responses, heartbeat ${!!hbReq}/${!!hbResp}`);

  client.close && client.close();
  tapServer.close();
  await server.close();
  process.exit(0);
}

main().catch(e => { console.error(e); process.exit(1); });

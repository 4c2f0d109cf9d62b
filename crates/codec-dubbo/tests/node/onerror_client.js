// A real sofa-rpc-node RpcClient (protocol dubbo-remoting) calling a server at 127.0.0.1:PORT
// that answers with DubboCodec::on_error bytes. Prints one JSON line per call: whether the call
// rejected, the error message and how long it took. Usage: node onerror_client.js PORT CALLS
'use strict';

const path = require('path');
const peers = path.resolve(__dirname, '../../../../tests/peers/node_modules');
const { RpcClient } = require(path.join(peers, 'sofa-rpc-node')).client;
const dubbo = require(path.join(peers, 'dubbo-remoting'));

const logger = { info() {}, warn() {}, error() {}, debug() {} };

async function main() {
  const [ port, calls ] = [ process.argv[2], Number(process.argv[3] || 1) ];
  const client = new RpcClient({ logger, protocol: dubbo });
  const consumer = client.createConsumer({
    interfaceName: 'org.apache.dubbo.demo.DemoService',
    version: '1.0.0',
    serverHost: `127.0.0.1:${port}`,
  });
  await consumer.ready();
  for (let i = 0; i < calls; i++) {
    const start = Date.now();
    try {
      const res = await consumer.invoke('sayHello', [ 'call ' + i ], { responseTimeout: 5000 });
      console.log(JSON.stringify({ rejected: false, result: res, ms: Date.now() - start }));
    } catch (e) {
      console.log(JSON.stringify({ rejected: true, name: e.name, message: e.message, ms: Date.now() - start }));
    }
  }
  process.exit(0);
}

main().catch(e => { console.error(e); process.exit(1); });

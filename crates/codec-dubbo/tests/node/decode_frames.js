// Decodes dubbo2 frames with dubbo-remoting (hessian.js) and prints one JSON line per frame.
// Input on stdin: one hex frame per line. Used by tests/peers.rs to check that frames this codec
// rewrote are read back by the real library.
'use strict';

const path = require('path');
const peers = path.resolve(__dirname, '../../../../tests/peers/node_modules');
const protocol = require(path.join(peers, 'dubbo-remoting/lib/protocol'));

const input = require('fs').readFileSync(0, 'utf8');
for (const line of input.split('\n').filter(l => l.trim())) {
  try {
    const obj = protocol.decode(Buffer.from(line.trim(), 'hex'), {});
    const d = obj.data || {};
    console.log(JSON.stringify({
      packetType: obj.packetType,
      id: obj.packetId,
      methodName: d.methodName,
      args: d.args,
      requestProps: d.requestProps,
      responseProps: d.responseProps,
      appResponse: d.appResponse,
      error: d.error ? String(d.error.message || JSON.stringify(d.error)) : null,
    }));
  } catch (e) {
    console.log(JSON.stringify({ decodeError: String(e && e.message) }));
  }
}

// device.js — an MQTT device on MQTT.js (npm "mqtt", the client most
// browser and Node.js MQTT code uses), for TestServeMQTTJS:
//
//   node device.js URL CLIENT_ID TOKEN PROTOCOL_VERSION
//
// URL is mqtt://host:port or ws://host:port/mqtt. It connects with the
// token as its password, subscribes to its commands, publishes one
// telemetry message at QoS 1, prints "ready" once both are acknowledged,
// answers the first command on the topic the gateway names (the 5.0
// Response Topic with the Correlation Data, or devices/<id>/acks/<cmd id>),
// prints "command NAME PAYLOAD" and "ack sent", and exits. Every line is
// flushed as it happens; any error exits 1.
const mqtt = require('mqtt');

const [url, clientId, token, version] = process.argv.slice(2);
const v = Number(version);
const say = (s) => process.stdout.write(s + '\n');
const fail = (s) => { process.stderr.write(s + '\n'); process.exit(1); };
setTimeout(() => fail('timed out'), 30000).unref();

const c = mqtt.connect(url, {
  clientId, username: 'dev', password: token, protocolVersion: v, clean: true,
  reconnectPeriod: 0, connectTimeout: 10000, wsOptions: { protocol: 'mqtt' },
});
c.on('error', (e) => fail('error: ' + e.message));
c.on('connect', (ack) => {
  say('connected ' + (v === 5 ? 'reason=' + (ack.reasonCode || 0) : 'rc=' + (ack.returnCode || 0)));
  c.subscribe(`devices/${clientId}/commands/#`, { qos: 1 }, (err, granted) => {
    if (err) fail('subscribe: ' + err.message);
    say('subscribed qos=' + granted[0].qos);
    c.publish(`devices/${clientId}/telemetry`, JSON.stringify({ js: v, via: url.split(':')[0] }), { qos: 1 }, (err) => {
      if (err) fail('publish: ' + err.message);
      say('ready');
    });
  });
});
let done = false;
c.on('message', (topic, payload, packet) => {
  if (done) return;
  done = true;
  const cmd = JSON.parse(payload.toString());
  let ackTopic = `devices/${clientId}/acks/${cmd.id}`;
  const opts = { qos: 1 };
  if (v === 5) {
    const p = packet.properties || {};
    if (p.responseTopic !== ackTopic) fail('response topic ' + p.responseTopic + ', want ' + ackTopic);
    ackTopic = p.responseTopic;
    opts.properties = { correlationData: p.correlationData };
  }
  say(`command ${cmd.name} ${JSON.stringify(cmd.payload)} on ${topic}`);
  c.publish(ackTopic, JSON.stringify({ status: 'ok', result: { seen: cmd.payload, by: 'mqtt.js' } }), opts, (err) => {
    if (err) fail('ack: ' + err.message);
    say('ack sent');
    c.end(false, () => process.exit(0));
  });
});

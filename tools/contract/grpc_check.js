// Checks strata-cloud's gRPC port with grpc-js, a client that is not ours:
//   - grpc.health.v1.Health/Check answers SERVING for the empty name and for every strata.v1
//     service that reflection lists (so probes can ask per service);
//   - reflection lists the services and can describe each one (file_containing_symbol gives
//     a file that declares it), grpc.health.v1.Health and the reflection service included.
//
//   node grpc_check.js HOST:PORT
'use strict';
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const descriptor = require('protobufjs/ext/descriptor');

// The .proto files Debian ships with its Go gRPC sources (package golang-google-grpc-dev).
const GO_GRPC = '/usr/share/gocode/src/google.golang.org/grpc';
const HEALTH = `${GO_GRPC}/debian/missing-sources/grpc/grpc-proto/master/grpc/health/v1/health.proto`;
const REFLECTION = `${GO_GRPC}/reflection/grpc_reflection_v1alpha/reflection.proto`;

function load(file) {
  return grpc.loadPackageDefinition(loader.loadSync(file, { keepCase: true, defaults: true, enums: String }));
}

const target = process.argv[2];
if (!target) {
  console.error('usage: node grpc_check.js HOST:PORT');
  process.exit(2);
}
const creds = grpc.credentials.createInsecure();
const health = new (load(HEALTH).grpc.health.v1.Health)(target, creds);
const reflection = new (load(REFLECTION).grpc.reflection.v1alpha.ServerReflection)(target, creds);

function deadline() {
  return new Date(Date.now() + 5000);
}

function check(service) {
  return new Promise((resolve, reject) => {
    health.Check({ service }, { deadline: deadline() }, (err, res) => {
      if (err) reject(new Error(`Health/Check("${service}"): ${err.code} ${err.details}`));
      else resolve(res.status);
    });
  });
}

// One request on a fresh reflection stream; resolves with the response.
function reflect(request) {
  return new Promise((resolve, reject) => {
    const call = reflection.ServerReflectionInfo({ deadline: deadline() });
    call.on('data', (res) => {
      resolve(res);
      call.end();
    });
    call.on('error', (err) => reject(new Error(`reflection: ${err.code} ${err.details}`)));
    call.write(request);
  });
}

async function main() {
  let failures = 0;
  const fail = (message) => {
    failures += 1;
    console.log(`FAIL ${message}`);
  };

  const listed = await reflect({ list_services: '' });
  if (!listed.list_services_response) throw new Error(`reflection list_services: ${JSON.stringify(listed)}`);
  const services = listed.list_services_response.service.map((s) => s.name);
  console.log(`reflection lists: ${services.join(', ')}`);
  for (const name of ['strata.v1.DeviceRegistry', 'strata.v1.Telemetry', 'strata.v1.EdgeSync', 'grpc.health.v1.Health']) {
    if (!services.includes(name)) fail(`reflection does not list ${name}`);
  }

  for (const name of services) {
    const res = await reflect({ file_containing_symbol: name });
    if (res.error_response) {
      fail(`reflection cannot describe ${name}: ${res.error_response.error_message}`);
      continue;
    }
    const files = res.file_descriptor_response.file_descriptor_proto.map((b) => descriptor.FileDescriptorProto.decode(b));
    const declares = files.some((f) => (f.service || []).some((s) => `${f.package}.${s.name}` === name));
    if (declares) console.log(`ok   reflection describes ${name}`);
    else fail(`reflection's answer for ${name} declares no such service`);
  }

  for (const name of ['', ...services.filter((s) => s.startsWith('strata.'))]) {
    try {
      const status = await check(name);
      if (status === 'SERVING') console.log(`ok   health "${name}": SERVING`);
      else fail(`health "${name}": ${status}`);
    } catch (e) {
      fail(e.message);
    }
  }
  try {
    await check('strata.v1.NoSuchService');
    fail('health of an unknown service answered');
  } catch (e) {
    if (/^Health\/Check\("strata.v1.NoSuchService"\): 5 /.test(e.message)) console.log('ok   health of an unknown service: NOT_FOUND');
    else fail(e.message);
  }
  if (failures > 0) throw new Error(`${failures} gRPC contract check(s) failed`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e.message);
    process.exit(1);
  },
);

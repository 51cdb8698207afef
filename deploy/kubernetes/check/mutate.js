#!/usr/bin/env node
// Breaks a copy of a rendered overlay in one known way, for the negative tests of
// tools/k8s-check.sh: each mutation must make validate.js or wiring.js fail.
//
//   node mutate.js MUTATION IN OUT
//
//   unknown-field     a misspelt field: securityContext.readOnlyRootFS (validate.js)
//   wrong-type        containerPort "7000", a string (validate.js)
//   probe-port        the liveness probe's gRPC port 7001 (wiring.js)
//   probe-path        the readiness probe's path /ready, which strata-cloud does not serve (wiring.js)
//   port-name         the startup probe's port named "web", no containerPort has it (wiring.js)
//   second-runner     strata-ingest scaled to 2 replicas (wiring.js)
import { readFileSync, writeFileSync } from "node:fs";
import { parseAllDocuments, stringify } from "yaml";

const mutations = {
  "unknown-field": (c) => { c.securityContext = { ...c.securityContext, readOnlyRootFS: true }; },
  "wrong-type": (c) => { c.ports[0].containerPort = String(c.ports[0].containerPort); },
  "probe-port": (c) => { c.livenessProbe.grpc.port += 1; },
  "probe-path": (c) => { c.readinessProbe.httpGet.path = "/ready"; },
  "port-name": (c) => { c.startupProbe.httpGet.port = "web"; },
  "second-runner": (c, d) => { d.spec.replicas = 2; },
};

const [name, input, output] = process.argv.slice(2);
const mutate = mutations[name];
if (!mutate || !input || !output) {
  console.error(`usage: node mutate.js ${Object.keys(mutations).join("|")} IN OUT`);
  process.exit(2);
}
const objects = parseAllDocuments(readFileSync(input, "utf8")).map((d) => d.toJS()).filter(Boolean);
// The rule runner's Deployment (strata-ingest), or else the first strata-cloud Deployment.
const cloud = objects.filter((o) => o.kind === "Deployment" && o.spec.template.spec.containers.some((c) => c.name === "strata-cloud"));
const target = cloud.find((o) => o.metadata.name === "strata-ingest") ?? cloud[0];
if (!target) {
  console.error(`mutate: ${input} has no strata-cloud Deployment`);
  process.exit(2);
}
mutate(target.spec.template.spec.containers.find((c) => c.name === "strata-cloud"), target);
writeFileSync(output, objects.map((o) => stringify(o)).join("---\n"));

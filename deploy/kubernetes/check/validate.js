#!/usr/bin/env node
// Validates every object of rendered multi-document YAML (kubectl kustomize's output) against
// the Kubernetes API schemas of kubernetes-models (pinned in package.json), strictly:
//
//   1. the schema: types, required fields, enums, formats (kubernetes-models' generated
//      validator for the object's apiVersion and kind; an object of a kind it has no model
//      for is an error);
//   2. unknown fields: the Kubernetes OpenAPI schemas do not forbid additional properties,
//      so the generated validators accept `readOnlyRootFS: true` silently (the API server
//      would drop it, or refuse it under strict field validation). The validator runs on a
//      proxy of the object that records which fields each schema looks up; a field of an
//      object that its schema never looked up is not in that schema. Objects the schema walks
//      as maps (labels, data) or leaves free-form are not checked that way.
//
//   node validate.js FILE...     exit 0 when every object of every file passes, 1 otherwise
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

// kubernetes-models' module of a kind: kubernetes-models/<group>/<version>/<Kind>, the core
// group as kubernetes-models/v1/<Kind>.
async function modelOf(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) return null;
  try {
    const mod = await import(`kubernetes-models/${apiVersion}/${kind}`);
    const model = mod[kind];
    return model && model.apiVersion === apiVersion && model.kind === kind ? model : null;
  } catch {
    return null;
  }
}

// Wraps `value` so that every field lookup on it (and on what it contains) is recorded in
// `seen`: object -> { keys: Set of names looked up, enumerated: whether its keys were listed }.
function tracked(value, seen, proxies = new WeakMap()) {
  if (value === null || typeof value !== "object") return value;
  if (proxies.has(value)) return proxies.get(value);
  const record = { keys: new Set(), enumerated: false };
  seen.set(value, record);
  const note = (key) => {
    if (typeof key === "string") record.keys.add(key);
  };
  const proxy = new Proxy(value, {
    get(target, key) {
      note(key);
      return tracked(Reflect.get(target, key), seen, proxies);
    },
    has(target, key) {
      note(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      record.enumerated = true;
      return Reflect.ownKeys(target);
    },
    getOwnPropertyDescriptor(target, key) {
      note(key);
      const descriptor = Reflect.getOwnPropertyDescriptor(target, key);
      if (descriptor && "value" in descriptor) descriptor.value = tracked(descriptor.value, seen, proxies);
      return descriptor;
    },
  });
  proxies.set(value, proxy);
  return proxy;
}

// The fields of `value` (and below) that their schema never looked up, as JSON pointers.
function unknownFields(value, seen, path = "", out = []) {
  if (value === null || typeof value !== "object") return out;
  if (Array.isArray(value)) {
    value.forEach((item, i) => unknownFields(item, seen, `${path}/${i}`, out));
    return out;
  }
  const record = seen.get(value);
  if (!record) return out;  // never reached: its parent's field is reported instead
  // Listed (a map) or never looked into (free-form): the schema accepts any key here.
  const checked = !record.enumerated && record.keys.size > 0;
  for (const key of Object.keys(value)) {
    if (checked && !record.keys.has(key)) {
      out.push(`${path}/${key}`);
    } else {
      unknownFields(value[key], seen, `${path}/${key}`, out);
    }
  }
  return out;
}

async function validateObject(object) {
  if (object === null || typeof object !== "object" || Array.isArray(object)) return ["not a mapping"];
  const model = await modelOf(object.apiVersion, object.kind);
  if (!model) return [`no Kubernetes schema for apiVersion ${object.apiVersion} kind ${object.kind}`];
  const seen = new WeakMap();
  try {
    // The model's validate() on the tracked plain object (a model instance would copy it).
    model.prototype.validate.call(tracked(object, seen));
  } catch (e) {
    return [e.message];
  }
  return unknownFields(object, seen).map((p) => `unknown field ${p}`);
}

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node validate.js FILE...");
    return 2;
  }
  let failures = 0;
  for (const file of files) {
    let docs;
    try {
      docs = parseAllDocuments(readFileSync(file, "utf8"));
    } catch (e) {
      console.error(`${file}: ${e.message}`);
      failures++;
      continue;
    }
    const counts = new Map();
    const names = new Set();
    let objects = 0;
    for (const doc of docs) {
      if (doc.errors.length > 0) {
        console.error(`${file}: YAML: ${doc.errors.map((e) => e.message).join("; ")}`);
        failures++;
        continue;
      }
      const object = doc.toJS();
      if (object === null) continue;  // an empty document
      objects++;
      const name = `${object.kind}/${object.metadata?.namespace ?? ""}/${object.metadata?.name}`;
      const errors = await validateObject(object);
      if (names.has(name)) errors.push("defined twice");
      names.add(name);
      for (const error of errors) console.error(`${file}: ${name}: ${error}`);
      if (errors.length > 0) failures++;
      counts.set(object.kind, (counts.get(object.kind) ?? 0) + 1);
    }
    if (objects === 0) {
      console.error(`${file}: no objects`);
      failures++;
    }
    const summary = [...counts].map(([kind, n]) => `${n} ${kind}`).join(", ");
    console.log(`validate: ${file}: ${objects} objects (${summary})`);
  }
  if (failures > 0) {
    console.error(`validate: ${failures} invalid object(s)`);
    return 1;
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));

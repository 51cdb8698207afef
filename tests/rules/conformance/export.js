#!/usr/bin/env node
// Exports Google's CEL conformance suite, as the pinned @bufbuild/cel-spec ships it
// (package.json, package-lock.json), to one JSON document on stdout for
// tests/rules/cel_conformance_test.cpp. Run by run.sh:  node export.js > cases.json
//
// The document is an array with one case per line, in the suite's own order:
//
//   {"suite": "integer_math", "section": "int64_math", "name": "add_positive_positive",
//    "description": "",              the test's description, "" when it has none
//    "expr": "40 + 2",
//    "disable_check": false,         compile without the type checker
//    "check_only": false,            check only, do not evaluate
//    "container": "",                CEL's container for name resolution ("" when none)
//    "bindings": {"x": V, ...},      the variables' values, by name (sorted)
//    "type_env": [{"name": "x", "type": "int"}, ...],
//                                    declarations; "type" is a CEL type string built from
//                                    dyn, null_type, bool, int, uint, double, string, bytes,
//                                    type, list(T) and map(K, V), or null with "why" for
//                                    what is not (messages, wrappers, well-known types,
//                                    abstract types, type parameters, functions)
//    "expect": {"value": V}          the result must be exactly V
//            | {"error": true, "message": "..."}   an error (at check time or at run
//                                    time; the message is the suite's, informational)
//            | {"type_only": true}   check_only: only the deduced type is judged
//            | {"unsupported": "why"},             the expectation cannot be written as V
//    "expected_type": "int" | null,  the type the checker should deduce
//    "expected_type_source": "test" | "cel-go" | null}
//                                    "test": the case's own typed_result.deduced_type;
//                                    "cel-go": what cel-go's checker deduced, which the
//                                    package records for most cases (informational)
//
// V, a value:
//   {"null": true} {"bool": true} {"int": "-5"} {"uint": "5"}   (64-bit integers as decimal
//   strings) {"double": 1.5} or {"double": "NaN" | "Infinity" | "-Infinity" | "-0"}
//   {"string": "..."} {"bytes_hex": "00ff"} {"list": [V, ...]} {"map": [[V, V], ...]}
//   (entries in the suite's order) {"type": "int"} (a type value, by CEL name), and
//   {"unsupported": "message google.protobuf.Int32Value"} for what is outside these
//   (protobuf messages, Any, wrappers, timestamps and durations, enums, errors and unknowns
//   as bindings). A list or map holding an unsupported element is itself unsupported.
//
// Type strings use CEL's spelling: null_type, not cel-go's null (cel-go's strings are
// rewritten so). The output depends only on the pinned package: no clock, no environment.
"use strict";

const fs = require("fs");
const path = require("path");

const PACKAGE = "@bufbuild/cel-spec";

function pinnedVersion() {
  const ours = JSON.parse(fs.readFileSync(path.join(__dirname, "package.json"), "utf8"));
  return ours.devDependencies[PACKAGE];
}

function installedVersion(entry) {
  // The package's exports do not include its package.json: find it above the entry point.
  for (let dir = path.dirname(entry); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const file = path.join(dir, "package.json");
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
      if (pkg.name === PACKAGE) return pkg.version;
    }
  }
  return undefined;
}

const entry = require.resolve(`${PACKAGE}/testdata/conformance.js`);
if (installedVersion(entry) !== pinnedVersion()) {
  process.stderr.write(
    `export.js: ${PACKAGE} ${installedVersion(entry)} is installed, package.json pins ${pinnedVersion()}; run npm ci\n`,
  );
  process.exit(1);
}
// The serialized suite: cel.expr.conformance.test.SimpleTest messages in proto3 JSON form
// ("original"), nested conformance -> file (suite) -> section, with cel-go's deduced type.
const root = require(entry).tests;

// --- types (cel.expr.Type in proto3 JSON)

const PRIMITIVES = { BOOL: "bool", INT64: "int", UINT64: "uint", DOUBLE: "double", STRING: "string", BYTES: "bytes" };
const WELL_KNOWN = { ANY: "any", TIMESTAMP: "timestamp", DURATION: "duration" };

// Returns {name, why}: name is a CEL spelling of the type; why is null when the type is
// within what the runner can declare, else the reason it is not.
function typeOf(t) {
  if (t === undefined || t === null) return { name: "dyn", why: null };
  const has = (k) => Object.prototype.hasOwnProperty.call(t, k);
  if (has("dyn")) return { name: "dyn", why: null };
  if (has("null")) return { name: "null_type", why: null };
  if (has("primitive")) {
    const name = PRIMITIVES[t.primitive];
    return name ? { name, why: null } : { name: String(t.primitive), why: `primitive ${t.primitive}` };
  }
  if (has("listType")) {
    const e = typeOf(t.listType.elemType);
    return { name: `list(${e.name})`, why: e.why };
  }
  if (has("mapType")) {
    const k = typeOf(t.mapType.keyType);
    const v = typeOf(t.mapType.valueType);
    return { name: `map(${k.name}, ${v.name})`, why: k.why || v.why };
  }
  if (has("type")) {
    const inner = t.type && Object.keys(t.type).length > 0 ? typeOf(t.type) : null;
    return inner ? { name: `type(${inner.name})`, why: inner.why } : { name: "type", why: null };
  }
  if (has("messageType")) return { name: t.messageType, why: `message ${t.messageType}` };
  if (has("wrapper")) {
    const name = `wrapper(${PRIMITIVES[t.wrapper] || t.wrapper})`;
    return { name, why: name };
  }
  if (has("wellKnown")) {
    const name = WELL_KNOWN[t.wellKnown] || String(t.wellKnown);
    return { name, why: `well-known type ${name}` };
  }
  if (has("typeParam")) return { name: t.typeParam, why: `type parameter ${t.typeParam}` };
  if (has("abstractType")) {
    const params = (t.abstractType.parameterTypes || []).map((p) => typeOf(p).name);
    const name = params.length ? `${t.abstractType.name}(${params.join(", ")})` : t.abstractType.name;
    return { name, why: `abstract type ${name}` };
  }
  if (has("error")) return { name: "error", why: "error type" };
  if (has("function")) return { name: "function", why: "function type" };
  return { name: JSON.stringify(t), why: `unknown type ${JSON.stringify(t)}` };
}

// cel-go spells the null type "null"; CEL (and strata) "null_type".
function celGoType(s) {
  return s.replace(/\bnull\b/g, "null_type");
}

function declaration(d) {
  if (d.function) return { name: d.name, type: null, why: "function declaration" };
  if (!d.ident) return { name: d.name, type: null, why: `declaration ${JSON.stringify(d)}` };
  if (d.ident.value !== undefined) return { name: d.name, type: null, why: "constant declaration" };
  const t = typeOf(d.ident.type);
  return t.why ? { name: d.name, type: null, why: t.why } : { name: d.name, type: t.name };
}

// --- values (cel.expr.Value in proto3 JSON)

function unsupported(why) {
  return { unsupported: why };
}

function value(v) {
  if (v === undefined || v === null || typeof v !== "object") return unsupported("no value");
  const has = (k) => Object.prototype.hasOwnProperty.call(v, k);
  if (has("nullValue")) return { null: true };
  if (has("boolValue")) return { bool: v.boolValue === true };
  if (has("int64Value")) return { int: BigInt(v.int64Value).toString() };
  if (has("uint64Value")) return { uint: BigInt(v.uint64Value).toString() };
  if (has("doubleValue")) {
    const d = Number(v.doubleValue); // "NaN", "Infinity", "-Infinity" or a number
    if (Number.isNaN(d)) return { double: "NaN" };
    if (d === Infinity) return { double: "Infinity" };
    if (d === -Infinity) return { double: "-Infinity" };
    if (Object.is(d, -0)) return { double: "-0" }; // JSON.stringify(-0) would write 0
    return { double: d };
  }
  if (has("stringValue")) return { string: v.stringValue };
  if (has("bytesValue")) return { bytes_hex: Buffer.from(v.bytesValue, "base64").toString("hex") };
  if (has("typeValue")) return { type: v.typeValue };
  if (has("listValue")) {
    const values = (v.listValue.values || []).map(value);
    const bad = values.find((e) => e.unsupported !== undefined);
    return bad ? unsupported(`list of ${bad.unsupported}`) : { list: values };
  }
  if (has("mapValue")) {
    const entries = (v.mapValue.entries || []).map((e) => [value(e.key), value(e.value)]);
    for (const [k, x] of entries) {
      if (k.unsupported !== undefined) return unsupported(`map with key ${k.unsupported}`);
      if (x.unsupported !== undefined) return unsupported(`map of ${x.unsupported}`);
    }
    return { map: entries };
  }
  if (has("objectValue")) {
    const url = String(v.objectValue["@type"] || "");
    return unsupported(`message ${url.slice(url.lastIndexOf("/") + 1)}`);
  }
  if (has("enumValue")) return unsupported(`enum ${v.enumValue.type}`);
  return unsupported(`value ${JSON.stringify(v)}`);
}

// An ExprValue: a value, an error or an unknown.
function binding(b) {
  if (b && b.value !== undefined) return value(b.value);
  if (b && b.error !== undefined) return unsupported("error binding");
  if (b && b.unknown !== undefined) return unsupported("unknown binding");
  return unsupported("empty binding");
}

function messages(errorSet) {
  return ((errorSet && errorSet.errors) || []).map((e) => e.message || "").join("; ");
}

function valueExpectation(v) {
  const x = value(v);
  return x.unsupported !== undefined ? unsupported(x.unsupported) : { value: x };
}

function expectation(o) {
  if (o.disableMacros) return unsupported("disable_macros");
  if (o.locale) return unsupported(`locale ${o.locale}`);
  if (o.checkOnly) return { type_only: true };
  if (o.value !== undefined) return valueExpectation(o.value);
  if (o.typedResult !== undefined) {
    // A typed result without a value (checkOnly aside) is not something the suite does.
    return o.typedResult.result !== undefined
      ? valueExpectation(o.typedResult.result)
      : unsupported("typed_result without a result");
  }
  if (o.evalError !== undefined) return { error: true, message: messages(o.evalError) };
  if (o.anyEvalErrors !== undefined) {
    return { error: true, message: (o.anyEvalErrors.errors || []).map(messages).join(" | ") };
  }
  if (o.unknown !== undefined || o.anyUnknowns !== undefined) return unsupported("unknown result");
  // simple.proto: "An unspecified result defaults to a matcher for the true boolean value."
  return { value: { bool: true } };
}

function expectedType(t) {
  const o = t.original;
  if (o.typedResult && o.typedResult.deducedType) {
    return { expected_type: typeOf(o.typedResult.deducedType).name, expected_type_source: "test" };
  }
  if (typeof t.type === "string") return { expected_type: celGoType(t.type), expected_type_source: "cel-go" };
  return { expected_type: null, expected_type_source: null };
}

function exportCase(suite, section, t) {
  const o = t.original;
  const bindings = {};
  for (const name of Object.keys(o.bindings || {}).sort()) bindings[name] = binding(o.bindings[name]);
  return {
    suite,
    section,
    name: o.name,
    description: o.description || "",
    expr: o.expr,
    disable_check: o.disableCheck === true,
    check_only: o.checkOnly === true,
    container: o.container || "",
    bindings,
    type_env: (o.typeEnv || []).map(declaration),
    expect: expectation(o),
    ...expectedType(t),
  };
}

const cases = [];
for (const suite of root.suites || []) {
  for (const section of suite.suites || []) {
    for (const t of section.tests || []) cases.push(exportCase(suite.name, section.name, t));
  }
  // A file's tests sit in sections; none sit directly under a file in this release.
  if ((suite.tests || []).length > 0) {
    process.stderr.write(`export.js: suite ${suite.name} has tests outside a section; update export.js\n`);
    process.exit(1);
  }
}
if (cases.length === 0) {
  process.stderr.write("export.js: no cases found\n");
  process.exit(1);
}
process.stdout.write(`[\n${cases.map((c) => JSON.stringify(c)).join(",\n")}\n]\n`);
